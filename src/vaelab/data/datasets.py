"""Loading a dataset into memory as tensors, with splits and binarisation.

Each split is one float32 tensor ``(N, C, H, W)`` in ``[0, 1]`` with labels ``(N,)`` int64;
batches are drawn by indexing (see :mod:`vaelab.data.batching`), never by a per-sample
DataLoader.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..config import DataConfig
from ..errors import ConfigError, DataError
from .idx import parse_idx
from .registry import DatasetSpec, fetch_file, get_spec


@dataclass
class Split:
    """One split: ``images`` (N, C, H, W) float32 in [0, 1]; ``labels`` (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def head(self, n: int | None) -> "Split":
        """The first ``n`` examples (all when ``n`` is None)."""
        return self if n is None else Split(self.images[:n], self.labels[:n])


@dataclass
class Dataset:
    """A loaded dataset: its spec and its splits (``validation`` may be None).

    ``eval`` is the split evaluated after every epoch: validation when there is one,
    else test.
    """

    spec: DatasetSpec
    train: Split
    test: Split
    validation: Split | None = None

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.images.shape[1:])

    @property
    def eval_name(self) -> str:
        return "val" if self.validation is not None else "test"

    @property
    def eval(self) -> Split:
        return self.validation if self.validation is not None else self.test


def load_split_arrays(spec: DatasetSpec, split: str, data_dir=None) -> tuple[np.ndarray, np.ndarray]:
    """Raw ``uint8`` images ``(N, H, W)`` and labels ``(N,)`` of ``split`` ('train' or 'test').

    Raises:
        DataError: a file is missing, corrupt or fails its checksum, or images and labels
            disagree in count or shape.
    """
    images_file, labels_file = spec.files[f"{split}_images"], spec.files[f"{split}_labels"]
    images = parse_idx(fetch_file(spec, f"{split}_images", data_dir), images_file.name, expected_ndim=3)
    labels = parse_idx(fetch_file(spec, f"{split}_labels", data_dir), labels_file.name, expected_ndim=1)
    if images.shape[1:] != spec.image_shape[1:]:
        raise DataError(f"{images_file.name}: images are {images.shape[1:]}, expected {spec.image_shape[1:]}")
    if len(images) != len(labels):
        raise DataError(
            f"{spec.name} {split}: {len(images)} images but {len(labels)} labels; fetch the files again"
        )
    return images, labels


def _to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    x = torch.from_numpy(np.array(images, dtype=np.float32)).div_(255.0).unsqueeze(1)
    return Split(x, torch.from_numpy(labels.astype(np.int64)))


def binarize_split(split: Split, seed: int) -> Split:
    """A single Bernoulli draw of every pixel with probability equal to its gray level."""
    generator = torch.Generator().manual_seed(seed)
    return Split(torch.bernoulli(split.images, generator=generator), split.labels)


def load_dataset(config: DataConfig, data_dir=None) -> Dataset:
    """Load the dataset named by ``config`` with its splits and static binarisation applied.

    ``binarize='static'`` binarises every split once with ``config.binarize_seed``;
    ``'dynamic'`` binarises the evaluation splits once the same way (so evaluation numbers are
    comparable across epochs) and leaves the training images gray, to be drawn afresh per batch.

    Raises:
        DataError: the dataset is unknown, missing or corrupt.
        ConfigError: ``validation_size`` leaves no training examples.
    """
    spec = get_spec(config.dataset)
    data_dir = data_dir if data_dir is not None else config.data_dir
    train = _to_split(*load_split_arrays(spec, "train", data_dir))
    test = _to_split(*load_split_arrays(spec, "test", data_dir))
    validation = None
    if config.validation_size:
        if config.validation_size >= len(train):
            raise ConfigError(
                f"data.validation_size={config.validation_size} leaves no training examples "
                f"({spec.name} has {len(train)}); use a smaller value"
            )
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.split_seed))
        val_idx, train_idx = order[: config.validation_size], order[config.validation_size:]
        validation = Split(train.images[val_idx], train.labels[val_idx])
        train = Split(train.images[train_idx], train.labels[train_idx])
    train = train.head(config.train_examples)
    test = test.head(config.eval_examples)
    if validation is not None:
        validation = validation.head(config.eval_examples)
    if config.binarize == "static":
        train = binarize_split(train, config.binarize_seed)
    if config.binarize in ("static", "dynamic"):
        test = binarize_split(test, config.binarize_seed + 1)
        if validation is not None:
            validation = binarize_split(validation, config.binarize_seed + 2)
    return Dataset(spec=spec, train=train, test=test, validation=validation)
