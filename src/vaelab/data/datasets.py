"""Loading a dataset into memory as tensors, with splits and binarisation.

Each split is one float32 tensor ``(N, C, H, W)`` in ``[0, 1]`` (point data: in the range it
was generated in) with labels ``(N,)`` int64, whatever the dataset's file format; batches are
drawn by indexing (see :mod:`vaelab.data.batching`), never by a per-sample DataLoader. The one
exception is a training split streamed from your own torch Dataset
(:class:`~vaelab.data.streaming.StreamedSplit`), read by index a batch at a time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import DataConfig
from ..errors import ConfigError, DataError, option
from .arrays import Splits
from .files import is_user_dataset, user_spec
from .registry import DatasetSpec, fetch_files, get_spec
from .streaming import STREAMED_KEY, StreamedSplit, split_indices


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
    else test. ``binarize`` is the binarisation in effect (see :func:`resolve_binarize`):
    with ``"dynamic"`` the training images are gray and each batch must be drawn afresh.
    """

    spec: DatasetSpec
    train: Split | StreamedSplit
    test: Split
    validation: Split | None = None
    binarize: str = "none"

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.test.images.shape[1:])  # the test split is always in memory

    @property
    def eval_name(self) -> str:
        return "val" if self.validation is not None else "test"

    @property
    def eval(self) -> Split:
        return self.validation if self.validation is not None else self.test


def read_splits(spec: DatasetSpec, config: DataConfig, data_dir=None) -> Splits:
    """The raw train and test arrays of ``spec``, from its reader, checked against the spec.

    Raises:
        DataError: a file is missing, corrupt or fails its checksum, or the arrays disagree
            with the spec (image shape) or with each other (image and label counts).
    """
    def fetch(roles):
        return fetch_files(spec, roles, data_dir)

    try:
        splits = spec.reader(spec, fetch, config)
        for split, (images, labels) in zip(("train", "test"), splits):
            if tuple(images.shape[1:]) != tuple(spec.image_shape):
                raise DataError(
                    f"{spec.name} {split}: images are {tuple(images.shape[1:])}, expected "
                    f"{tuple(spec.image_shape)}; the files are not the expected ones, fetch them again"
                )
            if len(images) != len(labels):
                raise DataError(
                    f"{spec.name} {split}: {len(images)} images but {len(labels)} labels; fetch the files again"
                )
    except DataError as exc:
        if spec.files and "fetch" in str(exc) and "vaelab download" not in str(exc):
            raise DataError(f"{exc} (`vaelab download {spec.name}` fetches a verified copy into the cache)") from None
        raise
    return splits


def _to_split(images: np.ndarray, labels: np.ndarray) -> Split:
    """uint8 gray levels are divided by 255; float arrays are taken as they are."""
    x = torch.from_numpy(np.array(images, dtype=np.float32))
    if images.dtype == np.uint8:
        x.div_(255.0)
    return Split(x, torch.from_numpy(np.asarray(labels).astype(np.int64)))


def resolve_binarize(spec: DatasetSpec, config: DataConfig) -> str:
    """The binarisation in effect for ``spec`` under ``config``.

    A dataset whose name implies a binarisation (``binarized-mnist``: dynamic) uses it when
    ``data.binarize`` is left at ``none`` (the default) or names the same mode; any other mode
    is a conflict and an error, not a silent override. Point data cannot be binarised.

    Raises:
        ConfigError: the conflict or a binarisation of point data, with the fix.
    """
    mode = config.binarize
    if spec.binarize is not None and mode not in ("none", spec.binarize):
        raise ConfigError(
            f"data.binarize={mode} conflicts with data.dataset={spec.name}, which means "
            f"{spec.binarize} binarisation; leave {option('data.binarize')} unset, or use a dataset without implied "
            f"binarisation (e.g. {option('data.dataset', spec.dirnames[0])} {option('data.binarize', mode)})"
        )
    if spec.binarize is not None:
        mode = spec.binarize
    if spec.kind == "points" and mode != "none":
        raise ConfigError(
            f"data.binarize={mode} applies to images; {spec.name} is point data: use {option('data.binarize', 'none')}"
        )
    return mode


def binarize_split(split: Split, seed: int) -> Split:
    """A single Bernoulli draw of every pixel with probability equal to its gray level."""
    generator = torch.Generator().manual_seed(seed)
    return Split(torch.bernoulli(split.images, generator=generator), split.labels)


_USER_SPECS: dict[tuple, DatasetSpec] = {}


def dataset_spec(config: DataConfig) -> DatasetSpec:
    """The spec of ``config.dataset``: a registered dataset, or your own file or image folder
    (:func:`vaelab.data.files.user_spec`, read once and cached while the file is unchanged).

    Raises:
        DataError: an unknown name, or a file or folder that is missing or invalid.
    """
    if not is_user_dataset(config.dataset):
        if config.image_size is not None:
            raise ConfigError(f"data.image_size resizes the images of your own image folder; "
                              f"{config.dataset} is a built-in dataset: drop {option('data.image_size')}")
        return get_spec(config.dataset)
    path = Path(config.dataset).expanduser().resolve()
    stat = path.stat() if path.exists() else None
    key = (str(path), stat and stat.st_mtime_ns, stat and stat.st_size, tuple(config.image_size or ()),
           config.max_classes, config.max_gigabytes)
    if key not in _USER_SPECS or path.is_dir():  # a folder's mtime misses changes inside it
        _USER_SPECS.clear()  # keep one: the arrays can be large
        _USER_SPECS[key] = user_spec(path, config.image_size, config.max_classes, config.max_gigabytes)
    return _USER_SPECS[key]


def load_dataset(config: DataConfig, data_dir=None, stream=None) -> Dataset:
    """Load the dataset named by ``config`` with its splits and static binarisation applied.

    ``binarize='static'`` binarises every split once with ``config.binarize_seed``;
    ``'dynamic'`` binarises the evaluation splits once the same way (so evaluation numbers are
    comparable across epochs) and leaves the training images gray, to be drawn afresh per batch.
    The mode comes from :func:`resolve_binarize` (``binarized-mnist`` implies ``dynamic``).

    ``config.dataset`` may be your own ``.npz``/``.pt``/``.safetensors`` file or image folder
    (:mod:`vaelab.data.files`). With ``test_split_seed`` the training and test examples are
    pooled and a test split of the original size drawn at random (both keep the file order);
    the validation split is then carved from the new training split (:func:`split_indices`).

    A streamed run's kept file (:mod:`vaelab.data.streaming`) gives its kept test and validation
    splits and a :class:`StreamedSplit` of ``stream``, the training dataset (without it, one
    that says how to give it when read).

    Raises:
        DataError: the dataset is unknown, missing or corrupt (your own data: one line naming
            the problem), or ``stream`` does not fit the run's kept data.
        ConfigError: ``validation_size`` leaves no training examples, or the binarisation
            conflicts with the dataset.
    """
    spec = dataset_spec(config)
    mode = resolve_binarize(spec, config)
    if spec.streamed_train is not None:
        return _load_streamed(spec, config, mode, stream)
    if stream is not None:
        raise DataError(f"data= gives the training dataset of a run that streamed it; {spec.name} holds the run's "
                        "whole data: resume it without data=")
    data_dir = data_dir if data_dir is not None else config.data_dir
    train, test = (_to_split(*split) for split in read_splits(spec, config, data_dir))
    if config.test_split_seed is not None:  # a random test split of the pooled examples, same size
        images, labels = torch.cat([train.images, test.images]), torch.cat([train.labels, test.labels])
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(config.test_split_seed))
        test_idx, train_idx = order[: len(test)].sort().values, order[len(test):].sort().values
        train, test = Split(images[train_idx], labels[train_idx]), Split(images[test_idx], labels[test_idx])
    train_idx, val_idx = split_indices(len(train), config)
    validation = None if val_idx is None else Split(train.images[val_idx], train.labels[val_idx])
    if len(train_idx) < len(train):
        train = Split(train.images[train_idx], train.labels[train_idx])
    if mode == "static":
        train = binarize_split(train, config.binarize_seed)
    return _with_eval_splits(spec, config, mode, train, test, validation)


def _with_eval_splits(spec: DatasetSpec, config: DataConfig, mode: str, train, test: Split,
                      validation: Split | None) -> Dataset:
    """The dataset with its evaluation splits cut to ``eval_examples`` and binarised once."""
    test = test.head(config.eval_examples)
    if validation is not None:
        validation = validation.head(config.eval_examples)
    if mode in ("static", "dynamic"):
        test = binarize_split(test, config.binarize_seed + 1)
        if validation is not None:
            validation = binarize_split(validation, config.binarize_seed + 2)
    return Dataset(spec=spec, train=train, test=test, validation=validation, binarize=mode)


def _load_streamed(spec: DatasetSpec, config: DataConfig, mode: str, stream) -> Dataset:
    """A streamed run's data: the kept test (and validation) split of ``spec.source`` and the
    training split of ``stream`` (the rows :func:`split_indices` gives, as in memory).

    Raises:
        DataError: ``stream`` has another size or image shape than the run's training dataset.
    """
    with np.load(spec.source, allow_pickle=False) as kept:
        arrays = {k: kept[k] for k in kept.files}
    n, *shape = (int(v) for v in arrays[STREAMED_KEY])
    test = _to_split(arrays["x_test"], arrays.get("y_test", np.zeros(len(arrays["x_test"]), np.int64)))
    validation = None
    if "x_val" in arrays:
        validation = _to_split(arrays["x_val"], arrays.get("y_val", np.zeros(len(arrays["x_val"]), np.int64)))
    train_idx, _ = split_indices(n, config)
    dataset = None
    if stream is not None:
        from .streaming import item_shape, map_dataset

        dataset = map_dataset(stream, "training")
        if len(dataset) != n or item_shape(dataset) != tuple(shape):
            raise DataError(f"data: the training dataset has {len(dataset)} items of shape {item_shape(dataset)}, but "
                            f"the run trained on {n} of shape {tuple(shape)}; give the dataset it started with")
    train = StreamedSplit(dataset, train_idx, tuple(shape), str(Path(spec.source).parent),
                          static_seed=config.binarize_seed if mode == "static" else None)
    return _with_eval_splits(spec, config, mode, train, test, validation)
