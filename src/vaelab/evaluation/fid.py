"""Fréchet distances between generated samples and test images (Heusel et al. 2017).

Both fit a Gaussian to features of each image set and report

    FID = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))      (Heusel et al. 2017, eq. 6)

computed by torchmetrics' ``FrechetInceptionDistance`` (sufficient statistics in float64).

* ``fid_classifier`` (default): the features are the penultimate layer (128 ReLU units) of
  vaelab's own CNN classifier trained on the dataset (``vaelab classifier train``), passed to
  torchmetrics as a custom feature extractor; no download, runs in seconds on a CPU. It is
  **not** comparable with published FIDs: those use Inception-v3 pool features (2048-D)
  trained on ImageNet photographs, upsampled to 299x299. A feature space trained on the digits
  themselves is far more sensitive to what distinguishes digits (class, stroke) and its scale
  differs, so compare ``fid_classifier`` values only with each other (same dataset, same cached
  classifier: the JSON records its sha256).
* ``fid_inception``: the standard score, computed only when torch-fidelity is installed and the
  Inception weights are on disk (vaelab never downloads them); gray images are repeated to 3
  channels.

Generated samples are the decoder means E[x|z] for z ~ p(z) (what sample figures show); the
reference images are the test split's gray levels (before any binarisation).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError, option
from ..models.classifier import Classifier
from ..models.priors import sample_prior
from ..models.vae import VAE
from ..runtime import flush_denormals

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
"""torch-fidelity's FID Inception-v3 weights (release v0.2.0), as its cache names them."""


class ClassifierFeatures(nn.Module):
    """The classifier's penultimate layer as a torchmetrics feature extractor: ``forward(x)``
    for ``x: (N, C, H, W)`` float in [0, 1] returns ``(N, hidden)``. Always in eval mode."""

    def __init__(self, classifier: Classifier):
        super().__init__()
        self.classifier = classifier.eval().requires_grad_(False)
        self.num_features = classifier.hidden  # torchmetrics reads it instead of a dummy forward

    def train(self, mode: bool = True) -> "ClassifierFeatures":
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier.features(x.float())


@torch.no_grad()
def _frechet(metric, real: torch.Tensor, fake: torch.Tensor, batch_size: int, device, prepare=lambda x: x) -> float:
    metric = metric.to(device)
    with flush_denormals():
        for images, is_real in ((real, True), (fake, False)):
            for x in images.split(batch_size):
                metric.update(prepare(x.to(device)), real=is_real)
        return float(metric.compute())


def fid_classifier(real: torch.Tensor, fake: torch.Tensor, classifier: Classifier, batch_size: int = 1000) -> float:
    """Fréchet distance in the classifier's feature space between ``real`` and ``fake`` images
    ``(N, C, H, W)`` in [0, 1] (each N >= 2). Identical sets give ~0.

    Raises:
        ConfigError: fewer than 2 images in a set, or image shapes that differ from the
            classifier's.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    _check_sets(real, fake, classifier.image_shape)
    device = next(classifier.parameters()).device
    metric = FrechetInceptionDistance(feature=ClassifierFeatures(classifier), normalize=True)
    return _frechet(metric, real, fake, batch_size, device)


def find_inception_weights(path: str | os.PathLike | None = None) -> Path:
    """The Inception weights file: ``path``, else ``$VAELAB_INCEPTION_WEIGHTS``, else
    torch-fidelity's download cache (``torch.hub.get_dir()/checkpoints/`` + the file name).

    Raises:
        ConfigError: torch-fidelity is not installed or no weights file is found, saying how to
            enable the Inception FID.
    """
    candidates = []
    for label, value in (("--inception-weights", path), ("VAELAB_INCEPTION_WEIGHTS", os.environ.get("VAELAB_INCEPTION_WEIGHTS"))):
        if value:
            candidates.append((label, Path(value).expanduser()))
    candidates.append(("torch-fidelity cache", Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE))
    found = next((p for _, p in candidates if p.is_file()), None)
    try:
        import torch_fidelity  # noqa: F401
        fidelity = True
    except ImportError:
        fidelity = False
    if fidelity and found is not None:
        return found
    missing = []
    if not fidelity:
        missing.append("torch-fidelity (`pip install torch-fidelity`)")
    if found is None:
        missing.append(f"the FID Inception weights {INCEPTION_WEIGHTS_FILE} (from torch-fidelity's v0.2.0 "
                       f"release; looked at {', '.join(str(p) for _, p in candidates)})")
    raise ConfigError(
        f"{option('fid', 'inception')} needs " + " and ".join(missing) + "; vaelab never downloads them: put "
        f"the file there or pass {option('inception_weights', 'PATH')}, or use {option('fid', 'classifier')} "
        "(fid_classifier, no download)"
    )


def fid_inception(real: torch.Tensor, fake: torch.Tensor, weights: str | os.PathLike | None = None,
                  batch_size: int = 100, device: torch.device | str = "cpu") -> float:
    """The standard Inception-v3 FID (2048-D pool features, torch-fidelity's TF-compatible
    weights) between image sets ``(N, C, H, W)`` in [0, 1]; 1-channel images are repeated to RGB.

    Raises:
        ConfigError: see :func:`find_inception_weights`.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    path = find_inception_weights(weights)
    _check_sets(real, fake, None)
    metric = FrechetInceptionDistance(feature=2048, normalize=True, feature_extractor_weights_path=str(path))
    rgb = (lambda x: x.expand(-1, 3, -1, -1)) if real.shape[1] == 1 else (lambda x: x)
    return _frechet(metric, real, fake, batch_size, device, rgb)


@torch.no_grad()
def generate_samples(model: VAE, n: int, seed: int = 0, batch_size: int = 1000,
                     device: torch.device | str | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` decoder means E[x|z], z ~ p(z) drawn with a CPU generator seeded with ``seed``:
    ``(n, C, H, W)`` on the CPU. A conditional VAE decodes E[x|z,y] with ``labels: (n,)``
    (default :func:`balanced_labels`)."""
    if model.conditional and labels is None:
        labels = balanced_labels(n, model.num_classes)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    p = model.prior_distribution()
    out = []
    try:
        with flush_denormals():
            for start in range(0, n, batch_size):
                z = sample_prior(p, min(batch_size, n - start), generator).to(device)  # any prior, mixtures too
                y = labels[start:start + batch_size].to(device) if labels is not None else None
                out.append(model.decode_mean(z, y).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(out)


def balanced_labels(n: int, num_classes: int) -> torch.Tensor:
    """``(n,)`` int64 labels 0, 1, ..., num_classes-1, 0, 1, ...: every class equally often (to
    one), the labels a conditional VAE's samples are drawn with."""
    return torch.arange(n) % num_classes


def _check_sets(real: torch.Tensor, fake: torch.Tensor, shape) -> None:
    for name, images in (("real", real), ("generated", fake)):
        if images.ndim != 4 or images.shape[0] < 2:
            raise ConfigError(f"a Fréchet distance needs at least 2 {name} images (N, C, H, W), got {tuple(images.shape)}")
        if shape is not None and tuple(images.shape[1:]) != tuple(shape):
            raise ConfigError(f"{name} images are {tuple(images.shape[1:])} but the classifier takes {tuple(shape)}")
