"""Training the dataset classifier (``vaelab classifier train``) and using its predictions.

The network is :class:`vaelab.models.classifier.Classifier`; trained weights go to the cache
(:func:`vaelab.models.classifier.classifier_paths`) with their sha256 and config, and are
reused by the classifier-feature FID, the samples' class histogram and the perceptual loss.
"""

from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from typing import Any

import torch
import torch.nn.functional as F

from .. import __version__
from ..config import DataConfig
from ..models.classifier import ClassifierConfig
from ..data import load_dataset
from ..errors import ConfigError, option
from ..models.classifier import (Classifier, ClassifierInfo, classifier_paths, load_classifier,
                                 save_classifier, train_command)
from ..runtime import flush_denormals, resolve_device


@torch.inference_mode()
def predict(classifier: Classifier, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Class logits ``(N, n_classes)`` for ``images: (N, C, H, W)`` in [0, 1]."""
    device = next(classifier.parameters()).device
    with flush_denormals():
        return torch.cat([classifier(x.to(device)).float().cpu() for x in images.split(batch_size)])


def accuracy(classifier: Classifier, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    """Fraction of ``images`` whose arg-max prediction equals ``labels``."""
    was_training = classifier.training
    classifier.eval()
    predictions = predict(classifier, images, batch_size).argmax(1)
    classifier.train(was_training)
    return (predictions == labels).double().mean().item()


def class_histogram(logits: torch.Tensor) -> tuple[list[int], float]:
    """Counts of the arg-max class of ``logits: (N, n_classes)`` and the entropy, in nats, of the
    resulting class frequencies: log(n_classes) when every class is equally frequent, 0 when all
    samples fall in one class (complete mode dropping)."""
    counts = torch.bincount(logits.argmax(1), minlength=logits.shape[1])
    p = counts.double() / counts.sum()
    entropy = -(p[p > 0] * p[p > 0].log()).sum().item()
    return counts.tolist(), entropy


def class_confidence(logits: torch.Tensor) -> float:
    """Mean over the samples of the classifier's top-class probability, max softmax of
    ``logits: (N, n_classes)``: near 1 when every sample looks clearly like one class, lower
    for samples with artefacts or between classes (1/n_classes at the least)."""
    return logits.double().softmax(1).max(1).values.mean().item()


def train_classifier(config: ClassifierConfig | dict[str, Any] | None = None, *, force: bool = False,
                     device: str = "auto", directory=None, verbose: bool = True) -> tuple[Classifier, ClassifierInfo]:
    """Train the dataset classifier described by ``config`` and cache it, or return the cached
    one when there is a valid one and ``force`` is false.

    Adam with a cosine learning-rate decay to 0 over ``config.epochs`` epochs, cross-entropy,
    batches drawn by permutation; the test accuracy is measured after every epoch.

    Raises:
        ConfigError: an invalid config.
        DataError: the dataset cannot be found.
    """
    if not isinstance(config, ClassifierConfig):
        config = ClassifierConfig.from_dict(config)
    say = print if verbose else (lambda *a, **k: None)
    weights_path, _ = classifier_paths(config.dataset, directory, config.recipe)
    if weights_path.exists() and not force:
        net, info = load_classifier(config.dataset, directory, recipe=config.recipe)
        say(f"a {config.dataset} classifier ({config.recipe} recipe) is already cached at {weights_path} (test accuracy "
            f"{info.test_accuracy:.4f}); pass {option('force')} to train a new one")
        return net, info
    device = resolve_device(device)
    dataset = load_dataset(DataConfig(dataset=config.dataset, data_dir=config.data_dir,
                                      train_examples=config.train_examples))
    if dataset.spec.kind != "image":
        raise ConfigError(f"dataset {config.dataset} holds points, not images; the classifier needs images")
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    net = Classifier.from_config(config, dataset.image_shape, len(dataset.spec.classes)).to(device)
    images, labels = dataset.train.images.to(device), dataset.train.labels.to(device)
    steps_per_epoch = math.ceil(len(images) / config.batch_size)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.learning_rate, fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / (steps_per_epoch * config.epochs))))
    say(f"training a {config.dataset} classifier ({len(images)} images, {config.epochs} epochs) on {device}")
    history, start = [], time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        net.train()
        order = torch.randperm(len(images), generator=generator).to(device)
        total = 0.0
        with flush_denormals():
            for idx in order.split(config.batch_size):
                loss = F.cross_entropy(net(images[idx]), labels[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                total += loss.item() * len(idx)
        test_accuracy = accuracy(net, dataset.test.images, dataset.test.labels)
        history.append({"epoch": epoch, "train_loss": total / len(images), "test_accuracy": test_accuracy,
                        "seconds": time.perf_counter() - start})
        say(f"epoch {epoch}/{config.epochs}  train cross-entropy {total / len(images):.4f}  "
            f"test accuracy {test_accuracy:.4f}  ({time.perf_counter() - start:.0f} s)")
    extra = {
        "data_sha256": ({role: f.sha256 for role, f in dataset.spec.files.items()} if dataset.spec.sha256 is None
                        else {"data": dataset.spec.sha256}),
        "history": history,
        "train_seconds": time.perf_counter() - start,
        "vaelab": __version__, "torch": torch.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    info = save_classifier(net.cpu(), config.dataset, config, history[-1]["test_accuracy"], extra, directory)
    use = ("used automatically by `vaelab evaluate` and the perceptual loss" if config.recipe == "default" else
           f"used by `vaelab evaluate --classifier {config.recipe}`")
    say(f"saved to {weights_path} (sha256 {info.sha256[:16]}...); {use}. "
        f"Retrain with `{train_command(config.dataset, config.recipe)} --force`.")
    if config.train_examples is not None:
        import sys

        print(f"warning: this classifier learned from only {config.train_examples} training images, and it is "
              f"cached as the {config.dataset} classifier behind FID, class histograms and the perceptual loss; "
              f"for comparable numbers retrain it on the whole set: `{train_command(config.dataset)} --force`",
              file=sys.stderr)
    return net.eval().requires_grad_(False), info
