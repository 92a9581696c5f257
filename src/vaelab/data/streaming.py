"""Your own ``torch.utils.data.Dataset`` (or ``DataLoader``) as a run's data.

``vaelab.train(config, data=(train, test))`` takes two map-style datasets (or two
``DataLoader`` s, whose ``.dataset`` is read; their batch size, sampler and workers are not
used: vaelab's own seeded permutation orders the batches, so a resume is exact). An item is an
image or ``(image, label)``: a tensor, numpy array or PIL image shaped ``(C, H, W)``,
``(H, W, C)`` or ``(H, W)`` with C in 1, 3, 4; ``uint8`` gray levels 0..255 (divided by 255)
or floats in [0, 1]; the label an integer >= 0.

* **Read once into memory** when both datasets fit within ``data.max_gigabytes`` (as float32):
  the items are stacked into arrays and go through the path of arrays given from Python
  (checked, kept in the run directory as ``data.npz``, so ``vaelab evaluate``, ``plot`` and
  ``train --resume`` work on the run from the command line).
* **Streamed** otherwise: the test split (and a validation split carved from the training
  dataset) must fit and is kept in ``data.npz``; each training batch is gathered item by item,
  by index, in vaelab's permutation (:class:`StreamedBatches`). The splits, seeds, dynamic
  binarisation, figures and resume (exact after SIGKILL) are those of the in-memory path: a
  streamed run gives the same numbers as the same data read into memory. Static binarisation
  draws each training example once with a generator seeded by ``(data.binarize_seed, index)``
  (so its draw differs from the in-memory one of the same seed). The run directory does not
  keep the training dataset: ``vaelab.resume(run_dir, data=(train, test))`` continues the run
  from Python; the command line says so. ``vaelab evaluate`` and ``vaelab plot`` work from the
  kept splits (the training-split probes, ``figures.split: train`` and the ``gmm`` sampler
  need the training dataset and say so). Not with ``data.test_split_seed`` (it pools the
  splits) or a conditional VAE (it needs every training label up front).

Every problem is a one-line :class:`~vaelab.errors.DataError` naming the item.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import DataConfig
from ..errors import ConfigError, DataError, option
from .batching import binarize

STREAMED_KEY = "streamed_train"
"""The key of a streamed run's ``data.npz`` holding ``[N, C, H, W]``: the training dataset's
size and image shape (the training images themselves are not kept)."""


def is_torch_data(obj: Any) -> bool:
    """True for a ``torch.utils.data.Dataset`` or ``DataLoader``."""
    from torch.utils.data import DataLoader, Dataset

    return isinstance(obj, (Dataset, DataLoader))


def map_dataset(obj: Any, which: str):
    """The map-style dataset behind ``obj`` (a ``DataLoader``'s ``.dataset``).

    Raises:
        DataError: an iterable-style dataset, or one without ``__len__`` or with no items.
    """
    from torch.utils.data import DataLoader, IterableDataset

    dataset = obj.dataset if isinstance(obj, DataLoader) else obj
    if isinstance(dataset, IterableDataset):
        raise DataError(f"data: the {which} dataset is an IterableDataset, which has no random access; vaelab draws "
                        "batches by index: give a map-style Dataset (__getitem__ and __len__)")
    try:
        n = len(dataset)
    except TypeError:
        raise DataError(f"data: the {which} dataset has no __len__; give a map-style Dataset (__getitem__ and "
                        "__len__)") from None
    if n == 0:
        raise DataError(f"data: the {which} dataset holds no items")
    return dataset


def _item(dataset, index: int, which: str, shape: tuple[int, ...] | None = None
          ) -> tuple[torch.Tensor, int | None]:
    """Item ``index`` of ``dataset`` as a float32 image ``(C, H, W)`` in [0, 1] and its label (or
    None). ``shape``: the image shape every item must have.

    Raises:
        DataError: the item is not an image or ``(image, label)``, or the image has another
            shape, dtype or range; naming the item.
    """
    where = f"data: {which} item {index}"
    try:
        item = dataset[index]
    except Exception as exc:  # the user's code: say where it failed, in one line
        raise DataError(f"{where} could not be read ({type(exc).__name__}: {exc})") from None
    label = None
    if isinstance(item, (tuple, list)):
        if not 1 <= len(item) <= 2:
            raise DataError(f"{where} has {len(item)} parts; an item is an image or (image, label)")
        if len(item) == 2:
            label = item[1]
        item = item[0]
    if not torch.is_tensor(item):
        try:
            item = torch.from_numpy(np.array(item))
        except (TypeError, ValueError) as exc:
            raise DataError(f"{where}: its image is a {type(item).__name__}, not an image ({exc}); return a "
                            "tensor, a numpy array or a PIL image") from None
    x = item.detach().cpu()
    if x.dim() == 2:
        x = x[None]
    elif x.dim() == 3 and x.shape[0] not in (1, 3, 4) and x.shape[-1] in (1, 3, 4):
        x = x.permute(2, 0, 1)
    if x.dim() != 3 or x.shape[0] not in (1, 3, 4):
        raise DataError(f"{where} has an image of shape {tuple(item.shape)}; give (C, H, W), (H, W, C) or (H, W) "
                        "with C in 1, 3, 4")
    if shape is not None and tuple(x.shape) != shape:
        raise DataError(f"{where} has an image of shape {tuple(x.shape)} (C, H, W), but item 0 of the training "
                        f"dataset has {shape}; every image must have the same shape")
    if x.dtype == torch.uint8:
        x = x.float().div_(255.0)
    elif x.dtype == torch.bool:
        x = x.float()
    elif x.is_floating_point():
        x = x.float()
        lo, hi = torch.aminmax(x)
        if not (torch.isfinite(lo) and torch.isfinite(hi)) or lo < 0 or hi > 1:
            raise DataError(f"{where} has values in [{lo.item():g}, {hi.item():g}], outside [0, 1] (or not finite); "
                            "rescale the images to [0, 1], or return uint8 gray levels 0..255")
    else:
        raise DataError(f"{where} has an image of dtype {x.dtype}; give uint8 gray levels 0..255 or floats in [0, 1]")
    return x, _label(label, where)


def _label(label: Any, where: str) -> int | None:
    if label is None:
        return None
    try:
        value = float(label.item() if torch.is_tensor(label) or isinstance(label, np.ndarray) else label)
    except (TypeError, ValueError, RuntimeError):
        raise DataError(f"{where} has the label {label!r}; a label is one integer >= 0") from None
    if not value.is_integer() or value < 0:
        raise DataError(f"{where} has the label {label!r}; a label is one integer >= 0")
    return int(value)


def read_items(dataset, indices, which: str, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The items ``indices`` of ``dataset``, one ``dataset[i]`` each: images ``(n, C, H, W)``
    float32 in [0, 1] and labels ``(n,)`` int64 (None when the items have none).

    Raises:
        DataError: see :func:`_item`, or items of which some have a label and some not.
    """
    indices = [int(i) for i in indices]
    images = torch.empty((len(indices), *shape), dtype=torch.float32)
    labels: list[int | None] = []
    for row, index in enumerate(indices):
        images[row], label = _item(dataset, index, which, shape)
        labels.append(label)
    if all(label is None for label in labels):
        return images, None
    if any(label is None for label in labels):
        first = indices[labels.index(None)]
        raise DataError(f"data: {which} item {first} has no label but others have; give every item a label or none")
    return images, torch.tensor(labels, dtype=torch.int64)


def item_shape(dataset, which: str = "training") -> tuple[int, int, int]:
    """The ``(C, H, W)`` of item 0 of ``dataset`` (every item must have it).

    Raises:
        DataError: item 0 is not an image or ``(image, label)`` vaelab can read.
    """
    return tuple(_item(dataset, 0, which)[0].shape)


def _image_shape(train, test) -> tuple[int, int, int]:
    shape = item_shape(train)
    _item(test, 0, "test", shape)  # the same shape, or a one-line error
    return shape


def prepare_datasets(data: tuple | list, path: Path, config: DataConfig) -> tuple[Path, Any]:
    """Read ``data = (train, test)`` (datasets or ``DataLoader`` s) for a run whose kept data
    file is ``path`` (``RUN_DIR/data.npz``): into memory and ``path`` when both fit within
    ``config.max_gigabytes``, else the test (and validation) split into ``path`` and the
    training dataset left to stream.

    Returns:
        ``(path, train)``: the training dataset to stream, or None when it was read whole.

    Raises:
        DataError: not two datasets, a dataset vaelab cannot read (see the module docstring),
            or a test split (with the validation split) larger than ``data.max_gigabytes``.
        ConfigError: streaming with ``data.test_split_seed``.
    """
    if not isinstance(data, (tuple, list)) or len(data) != 2 or not all(is_torch_data(d) for d in data):
        raise DataError("data with a torch Dataset or DataLoader must be (train, test), both Datasets or DataLoaders")
    train, test = (map_dataset(d, which) for d, which in zip(data, ("training", "test")))
    shape = _image_shape(train, test)
    per_example = 4 * math.prod(shape)  # float32
    limit = config.max_gigabytes * 1e9
    if (len(train) + len(test)) * per_example <= limit:
        from .files import save_arrays

        x_train, y_train = read_items(train, range(len(train)), "training", shape)
        x_test, y_test = read_items(test, range(len(test)), "test", shape)
        if (y_train is None) != (y_test is None):
            raise DataError("data: the training items have labels and the test items not, or the other way round; "
                            "give both datasets labels or neither")
        arrays = (x_train, x_test) if y_train is None else (x_train, x_test, y_train, y_test)
        return save_arrays(path, arrays), None
    if config.test_split_seed is not None:
        raise ConfigError(f"{option('data.test_split_seed')} pools the training and test examples, which a streamed "
                          f"training dataset cannot; drop it, or raise {option('data.max_gigabytes')} to read the data "
                          "into memory")
    _, val_index = split_indices(len(train), config)
    kept = (len(test) + (0 if val_index is None else len(val_index))) * per_example
    if kept > limit:
        raise DataError(f"data: the test split{' and the validation split' if val_index is not None else ''} hold "
                        f"{kept / 1e9:.2f} GB as float32, more than data.max_gigabytes = {config.max_gigabytes:g}; "
                        "they are kept in memory (only the training dataset streams): use a smaller test set or raise "
                        f"{option('data.max_gigabytes')}")
    x_test, y_test = read_items(test, range(len(test)), "test", shape)
    out = {"x_test": x_test.numpy(), STREAMED_KEY: np.array([len(train), *shape], dtype=np.int64)}
    if y_test is not None:
        out["y_test"] = y_test.numpy()
    if val_index is not None:
        x_val, y_val = read_items(train, val_index, "training", shape)
        out["x_val"] = x_val.numpy()
        if y_val is not None:
            out["y_val"] = y_val.numpy()
    _save_npz(path, out)
    return path, train


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, path)


def split_indices(n: int, config: DataConfig) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The rows of a training set of ``n`` examples that train and that validate: the
    validation split is ``data.validation_size`` rows of a permutation seeded by
    ``data.split_seed``, the rest train, then ``data.train_examples`` of them (the first, or
    drawn with ``data.subset_seed``). The same rows in memory and streamed.

    Raises:
        ConfigError: ``validation_size`` leaves no training examples.
    """
    train_index, val_index = torch.arange(n), None
    if config.validation_size:
        if config.validation_size >= n:
            raise ConfigError(f"data.validation_size={config.validation_size} leaves no training examples "
                              f"(the training set has {n}); use a smaller value")
        order = torch.randperm(n, generator=torch.Generator().manual_seed(config.split_seed))
        val_index, train_index = order[: config.validation_size], order[config.validation_size:]
    if config.subset_seed is not None and config.train_examples is not None and config.train_examples < len(train_index):
        pick = torch.randperm(len(train_index), generator=torch.Generator().manual_seed(config.subset_seed))
        train_index = train_index[pick[: config.train_examples].sort().values]
    return train_index[: config.train_examples], val_index


class StreamedSplit:
    """A training split read by index from a map-style dataset, a batch at a time.

    ``rows``: the dataset indices of the split's examples, in split order. ``static_seed``:
    with static binarisation, the seed of each example's one draw (seeded by the seed and the
    example's dataset index). ``dataset`` None: a run directory's streamed split without its
    dataset (every read is a one-line :class:`~vaelab.errors.DataError` saying how to give it).
    """

    def __init__(self, dataset, rows: torch.Tensor, image_shape: tuple[int, int, int], source: str,
                 static_seed: int | None = None):
        self.dataset, self.rows, self.image_shape = dataset, rows, tuple(image_shape)
        self.source, self.static_seed = source, static_seed

    def __len__(self) -> int:
        return len(self.rows)

    def _missing(self, what: str) -> DataError:
        return DataError(f"{what} needs the training split of {self.source}, which streamed from a torch Dataset "
                         "given from Python and is not kept in the run directory: evaluate with --no-probe (probe=False), "
                         "draw the test split's figures, or continue training from Python with "
                         "vaelab.resume(run_dir, data=(train, test))")

    def gather(self, positions: torch.Tensor) -> torch.Tensor:
        """Images ``(b, C, H, W)`` float32 of the split's examples ``positions`` (positions in
        the split, a 1-D integer tensor), read item by item.

        Raises:
            DataError: no dataset, or an item vaelab cannot read.
        """
        if self.dataset is None:
            raise self._missing("training")
        rows = self.rows[positions.cpu()]
        images, _ = read_items(self.dataset, rows.tolist(), "training", self.image_shape)
        if self.static_seed is not None:
            for i, row in enumerate(rows.tolist()):
                generator = torch.Generator().manual_seed((self.static_seed * 1_000_003 + row) % 2**63)
                images[i] = torch.bernoulli(images[i], generator=generator)
        return images

    def head(self, n: int | None) -> "StreamedSplit":
        return self if n is None else StreamedSplit(self.dataset, self.rows[:n], self.image_shape, self.source,
                                                    self.static_seed)

    @property
    def images(self) -> torch.Tensor:
        raise self._missing("reading the whole training split (probes, training-split figures, the gmm sampler)")

    @property
    def labels(self) -> torch.Tensor:
        raise self._missing("reading the training labels (probes, training-split figures, the gmm sampler)")


class StreamedBatches:
    """Batches of a :class:`StreamedSplit`, with the interface of
    :class:`~vaelab.data.InMemoryBatches` and its randomness: the pass's permutation and the
    dynamic binarisation come from ``generator`` in the same order, so a streamed run draws the
    same batches as the same data in memory. Each batch is read from the dataset when it is
    asked for (``batch``), then copied to ``device``."""

    def __init__(self, split: StreamedSplit, batch_size: int, *, shuffle: bool = False,
                 dynamic_binarize: bool = False, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu"):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.split, self.batch_size, self.shuffle = split, batch_size, shuffle
        self.dynamic_binarize, self.generator, self.device = dynamic_binarize, generator, torch.device(device)

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def permutation(self) -> torch.Tensor:
        """The order of one pass, as :meth:`InMemoryBatches.permutation` draws it."""
        n = len(self.split)
        device = self.generator.device if self.generator is not None else torch.device("cpu")
        if self.shuffle:
            return torch.randperm(n, generator=self.generator, device=device)
        return torch.arange(n, device=device)

    def batch(self, order: torch.Tensor, index: int, part: slice | None = None) -> torch.Tensor:
        """Batch ``index`` of the pass in ``order``: ``(b, C, H, W)`` on ``device``."""
        positions = order[index * self.batch_size: (index + 1) * self.batch_size]
        x = self.split.gather(positions).to(self.device)
        if self.dynamic_binarize:
            same = self.generator is not None and self.generator.device == x.device
            x = binarize(x, self.generator if same else None)
        return x if part is None else x[part]

    def batch_size_of(self, index: int) -> int:
        return min(self.batch_size, len(self.split) - index * self.batch_size)

    def batch_labels(self, order: torch.Tensor, index: int, part: slice | None = None) -> None:
        """None: a streamed split serves no labels (a conditional VAE needs them in memory)."""
        return None

