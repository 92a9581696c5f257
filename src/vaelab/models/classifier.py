"""A small CNN classifier of the dataset's images, and its cached, checksummed weights.

The classifier gives vaelab a feature space trained on the data itself (no Inception weights,
no network access): its penultimate layer is the feature space of ``fid_classifier``, its
predictions give the class histogram of generated samples, and its ReLU feature maps are the
perceptual reconstruction term (:mod:`vaelab.objectives.perceptual`). It lives here, beside the
other networks, so that objectives can use it; training it is
:func:`vaelab.evaluation.classifier.train_classifier` (``vaelab classifier train``).

Architecture for ``x: (B, C, H, W)`` in [0, 1] (channels ``c1..c4``, default 16 16 32 32)::

    conv3x3 c1 -> relu1 -> conv3x3 c2 -> relu2 -> maxpool 2
    -> conv3x3 c3 -> relu3 -> conv3x3 c4 -> relu4 -> maxpool 2
    -> flatten -> linear hidden -> features (ReLU) -> dropout -> linear n_classes (logits)

Cache layout (``vaelab.data.cache_dir()/classifiers/``): ``<dataset>.safetensors`` (weights; its
metadata holds the config and test accuracy) and ``<dataset>.json`` (the sha256 of the weights
file, the config, the test accuracy, the dataset files' checksums, versions). Loading verifies the
checksum, so a truncated or replaced file is refused with a message saying how to retrain.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from ..data import cache_dir
from ..errors import CheckpointError, ConfigError
from ..io import atomic_write_bytes, atomic_write_text, safetensors_bytes
from ..schema import at_least, config_field, positive, positive_list, probability, section_from_dict

FORMAT = "vaelab-classifier-1"
LAYER_NAMES = ("relu1", "relu2", "relu3", "relu4", "features")


RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    "independent": {"channels": [32, 32, 64, 64], "hidden": 256, "dropout": 0.5, "seed": 2},
}
"""Named classifier recipes, each cached separately per dataset. ``default`` is the network of
the perceptual loss (and of sample quality unless told otherwise); ``independent`` has other
widths, dropout and seed and is never used by a loss, so it can score the samples of models
trained against the default one without favouring them."""


@dataclass
class ClassifierConfig:
    """The small CNN behind classifier-feature FID, sample class histograms and the perceptual
    loss (``vaelab classifier train``)."""

    recipe: str = config_field(
        "default", "which cached classifier to train: default (also the perceptual loss's network) or independent "
        "(other widths and seed, used by no loss: for sample quality of perceptual-loss models); the other "
        "options override the recipe's values", choices=tuple(RECIPES))
    dataset: str = config_field("mnist", "dataset whose training split the classifier learns")
    epochs: int = config_field(4, "passes over the training set", check=at_least(1))
    batch_size: int = config_field(128, "training examples per step", check=at_least(1))
    learning_rate: float = config_field(2e-3, "Adam learning rate (cosine decay to 0 over the epochs)", check=positive)
    channels: list[int] = config_field(None, "output channels of the four 3x3 convolutions",
                                 factory=lambda: [16, 16, 32, 32], check=positive_list)
    hidden: int = config_field(128, "width of the penultimate layer (the FID feature space)", check=at_least(1))
    dropout: float = config_field(0.25, "dropout before the last layer", check=probability)
    seed: int = config_field(1, "seed of the initialisation and data order", check=at_least(0))
    train_examples: int | None = config_field(
        None, "use only the first N training images (quick runs; default all)", check=at_least(1))
    data_dir: str | None = config_field(None, "directory holding the dataset files (default: $VAELAB_DATA_DIR)")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "ClassifierConfig":
        """Build and validate (see :meth:`Config.from_dict`): the recipe's values (:data:`RECIPES`),
        then ``values``.

        Raises:
            ConfigError: unknown keys, wrong types or out-of-range values, or an unknown recipe.
        """
        values = dict(values or {})
        recipe = values.get("recipe", "default")
        if recipe not in RECIPES:
            raise ConfigError(f"unknown classifier recipe {recipe!r}; use one of {', '.join(RECIPES)}")
        return section_from_dict(cls, {**RECIPES[recipe], **values})


class Classifier(nn.Module):
    """The CNN above. ``forward(x) -> logits (B, n_classes)``; :meth:`features` gives the
    penultimate activations ``(B, hidden)``; :meth:`feature_maps` the named intermediate ones."""

    def __init__(self, image_shape: tuple[int, int, int] = (1, 28, 28), n_classes: int = 10,
                 channels: list[int] | tuple[int, ...] = (16, 16, 32, 32), hidden: int = 128,
                 dropout: float = 0.25):
        super().__init__()
        c, h, w = image_shape
        if len(channels) != 4:
            raise ConfigError(f"the classifier needs 4 channel counts, got {list(channels)}")
        if h < 4 or w < 4:
            raise ConfigError(f"the classifier needs images of at least 4x4 pixels, got {h}x{w}")
        c1, c2, c3, c4 = channels
        self.image_shape, self.n_classes, self.hidden = tuple(image_shape), n_classes, hidden
        self.body = nn.Sequential(OrderedDict([
            ("conv1", nn.Conv2d(c, c1, 3, padding=1)), ("relu1", nn.ReLU()),
            ("conv2", nn.Conv2d(c1, c2, 3, padding=1)), ("relu2", nn.ReLU()),
            ("pool1", nn.MaxPool2d(2)),
            ("conv3", nn.Conv2d(c2, c3, 3, padding=1)), ("relu3", nn.ReLU()),
            ("conv4", nn.Conv2d(c3, c4, 3, padding=1)), ("relu4", nn.ReLU()),
            ("pool2", nn.MaxPool2d(2)),
            ("flatten", nn.Flatten()),
            ("fc", nn.Linear(c4 * (h // 4) * (w // 4), hidden)), ("features", nn.ReLU()),
        ]))
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, n_classes))

    @classmethod
    def from_config(cls, config: ClassifierConfig, image_shape: tuple[int, int, int], n_classes: int) -> "Classifier":
        return cls(image_shape, n_classes, config.channels, config.hidden, config.dropout)

    @staticmethod
    def _standardise(x: torch.Tensor) -> torch.Tensor:
        return x * 2.0 - 1.0  # [0, 1] -> [-1, 1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations for ``x: (B, C, H, W)`` in [0, 1]: ``(B, hidden)``, >= 0."""
        return self.body(self._standardise(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``(B, n_classes)`` for ``x: (B, C, H, W)`` in [0, 1]."""
        return self.head(self.features(x))

    def feature_maps(self, x: torch.Tensor, names: list[str] | tuple[str, ...]) -> dict[str, torch.Tensor]:
        """The activations after the named layers (see :data:`LAYER_NAMES`), e.g.
        ``relu2: (B, c2, H, W)``, ``relu4: (B, c4, H/2, W/2)``; the forward pass stops at the
        deepest one asked for.

        Raises:
            ConfigError: an unknown layer name (listing the valid ones).
        """
        check_layer_names(names)
        wanted, out = set(names), {}
        h = self._standardise(x)
        for name, layer in self.body.named_children():
            h = layer(h)
            if name in wanted:
                out[name] = h
                if len(out) == len(wanted):
                    break
        return out


def check_layer_names(names) -> None:
    """Raises ConfigError when a name is not one of :data:`LAYER_NAMES` or none is given."""
    bad = [n for n in names if n not in LAYER_NAMES]
    if bad or not names:
        import difflib

        hints = [f"{n!r}" + (f" (did you mean {c[0]}?)" if (c := difflib.get_close_matches(n, LAYER_NAMES, 1)) else "")
                 for n in bad]
        what = f"unknown classifier layer {', '.join(hints)}" if bad else "no classifier layer given"
        raise ConfigError(f"{what}; valid layers: {', '.join(LAYER_NAMES)}")


# --- the cache ---------------------------------------------------------------------------


@dataclass
class ClassifierInfo:
    """What the JSON sidecar of a cached classifier records."""

    dataset: str
    sha256: str
    config: dict[str, Any]
    image_shape: tuple[int, int, int]
    n_classes: int
    test_accuracy: float
    extra: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "dataset": self.dataset, "sha256": self.sha256, "config": self.config,
                "image_shape": list(self.image_shape), "n_classes": self.n_classes,
                "test_accuracy": self.test_accuracy, **self.extra}


def classifier_dir() -> Path:
    """``vaelab.data.cache_dir() / "classifiers"``."""
    return cache_dir() / "classifiers"


def classifier_paths(dataset: str, directory: str | Path | None = None, recipe: str = "default") -> tuple[Path, Path]:
    """(weights, sidecar) paths of ``dataset``'s classifier of ``recipe`` in ``directory``
    (default the cache): ``<dataset>.safetensors`` for the default recipe,
    ``<dataset>-<recipe>.safetensors`` for another.

    Your own data (a path) is cached as ``<stem>-<first 12 hex of the sha256 of its absolute path>``.
    """
    directory = Path(directory) if directory is not None else classifier_dir()
    from ..data.files import is_user_dataset

    if is_user_dataset(dataset):
        path = Path(dataset).expanduser().resolve()
        dataset = f"{path.stem}-{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    stem = dataset if recipe == "default" else f"{dataset}-{recipe}"
    return directory / f"{stem}.safetensors", directory / f"{stem}.json"


def train_command(dataset: str, recipe: str = "default") -> str:
    return f"vaelab classifier train --dataset {dataset}" + ("" if recipe == "default" else f" --recipe {recipe}")


def save_classifier(net: Classifier, dataset: str, config: ClassifierConfig, test_accuracy: float,
                    extra: dict[str, Any] | None = None, directory: str | Path | None = None) -> ClassifierInfo:
    """Write ``net`` and its sidecar atomically (in the slot of ``config.recipe``); return the
    recorded :class:`ClassifierInfo`."""
    weights_path, info_path = classifier_paths(dataset, directory, config.recipe)
    config_dict = {k: v for k, v in config.__dict__.items() if k != "data_dir"}
    meta = {"format": FORMAT, "dataset": dataset, "config": json.dumps(config_dict),
            "image_shape": json.dumps(list(net.image_shape)), "n_classes": str(net.n_classes),
            "test_accuracy": repr(float(test_accuracy))}
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    payload = safetensors_bytes(tensors, metadata=meta)
    info = ClassifierInfo(dataset, hashlib.sha256(payload).hexdigest(), config_dict, net.image_shape,
                          net.n_classes, float(test_accuracy), dict(extra or {}))
    atomic_write_bytes(weights_path, payload)
    atomic_write_text(info_path, json.dumps(info.to_dict(), indent=2))
    return info


def load_classifier(dataset: str, directory: str | Path | None = None,
                    device: torch.device | str = "cpu", recipe: str = "default") -> tuple[Classifier, ClassifierInfo]:
    """The cached classifier of ``dataset`` and ``recipe``, checksum-verified, frozen, in eval mode.

    Raises:
        CheckpointError: none is cached (naming the command that trains one), or its files are
            corrupt, do not match their checksum, or do not fit the recorded config.
        ConfigError: an unknown recipe.
    """
    if recipe not in RECIPES:
        raise ConfigError(f"unknown classifier recipe {recipe!r}; use one of {', '.join(RECIPES)}")
    weights_path, info_path = classifier_paths(dataset, directory, recipe)
    retrain = f"retrain it with `{train_command(dataset, recipe)} --force`"
    what = f"{dataset} classifier" if recipe == "default" else f"{dataset} classifier of recipe {recipe}"
    if not weights_path.is_file() or not info_path.is_file():
        raise CheckpointError(
            f"no {what} in {weights_path.parent}; train one with `{train_command(dataset, recipe)}` "
            "(a few minutes on a CPU)"
        )
    try:
        record = json.loads(info_path.read_text())
        expected = record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise CheckpointError(f"{info_path} is damaged; {retrain}") from None
    payload = weights_path.read_bytes()
    found = hashlib.sha256(payload).hexdigest()
    if found != expected:
        raise CheckpointError(
            f"{weights_path}: checksum mismatch (sha256 {found[:16]}..., recorded {expected[:16]}...); "
            f"the file is corrupt or was replaced: {retrain}"
        )
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
        recorded = {k: v for k, v in json.loads(meta["config"]).items() if k != "recipe"}
        config = ClassifierConfig.from_dict({**recorded, "recipe": recipe, "data_dir": None})
        image_shape = tuple(json.loads(meta["image_shape"]))
        net = Classifier.from_config(config, image_shape, int(meta["n_classes"]))
        net.load_state_dict(state)
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError, ConfigError) as exc:
        raise CheckpointError(f"{weights_path} is not a usable vaelab classifier ({exc}); {retrain}") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{weights_path} is not a vaelab classifier (format {meta.get('format')!r}); {retrain}")
    net.requires_grad_(False)
    info = ClassifierInfo(dataset, expected, record.get("config", {}), image_shape, net.n_classes,
                          float(record.get("test_accuracy", float("nan"))),
                          {k: v for k, v in record.items() if k not in (
                              "format", "dataset", "sha256", "config", "image_shape", "n_classes", "test_accuracy")})
    return net.to(device).eval(), info
