"""Reader of CIFAR-10's python version (Krizhevsky 2009), with a safe unpickler.

``cifar-10-python.tar.gz`` holds ``cifar-10-batches-py/data_batch_1`` .. ``data_batch_5``
(training) and ``test_batch``, each a Python 2 pickle of a dict with ``b"data"``, uint8
``(10000, 3072)`` (each row the red, green then blue 32x32 planes, row-major), and
``b"labels"``, a list of 10000 ints 0..9.

A pickle can run arbitrary code when loaded, so batches are read with
:class:`RestrictedUnpickler`, which only resolves the few globals a numpy array needs and
refuses every other one.

``cifar10-8x8`` keeps the **central 8x8 crop** of every image (rows and columns 12..19), the
small colour patches of one study.
"""

from __future__ import annotations

import codecs
import io
import pickle

import numpy as np

from ..errors import DataError
from .arrays import Fetch, RawSplit, Splits

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


class ForbiddenGlobal(pickle.UnpicklingError):
    """A pickle referenced a global that :class:`RestrictedUnpickler` does not allow."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler for plain data: builtins (dict, list, int, bytes, str) and numpy arrays.

    Only the globals that pickled numpy arrays reference are resolved; any other global (the
    way a malicious pickle calls ``os.system``) raises :class:`ForbiddenGlobal`.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        # protocol-2 pickles written by Python 3 encode bytes as _codecs.encode(str, "latin1")
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise ForbiddenGlobal(f"forbidden global {module}.{name}") from None


def safe_unpickle(data: bytes, source: str):
    """Load a pickle of plain data (see :class:`RestrictedUnpickler`); Python 2 strings are
    returned as ``bytes``.

    Raises:
        DataError: the pickle is corrupt or references anything beyond plain data.
    """
    try:
        return RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()
    except ForbiddenGlobal as exc:
        raise DataError(f"{source}: refused to unpickle ({exc}); the file is not a CIFAR-10 batch") from None
    except Exception as exc:  # noqa: BLE001 - any failure of a corrupt pickle is a data error
        raise DataError(f"{source}: not a readable pickle ({type(exc).__name__}: {exc}); fetch it again") from None


def parse_batch(data: bytes, source: str) -> RawSplit:
    """Images uint8 ``(N, 3, 32, 32)`` and labels ``(N,)`` of one CIFAR-10 batch pickle.

    Raises:
        DataError: not a dict with ``data`` uint8 ``(N, 3072)`` and ``labels`` N ints 0..9.
    """
    batch = safe_unpickle(data, source)
    if not isinstance(batch, dict):
        raise DataError(f"{source}: expected a pickled dict, found {type(batch).__name__}; fetch it again")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    images, labels = batch.get("data"), batch.get("labels")
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 3072:
        found = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images).__name__
        raise DataError(f"{source}: 'data' is {found}, expected uint8 (N, 3072); fetch it again")
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        labels = np.empty(0)
    if labels.shape != (len(images),) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise DataError(
            f"{source}: 'labels' must be {len(images)} integers 0..9, found {type(batch.get('labels')).__name__} "
            f"of shape {labels.shape}; fetch it again"
        )
    return RawSplit(images.reshape(-1, 3, 32, 32), labels)


def central_crop(images: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` pixels of ``images: (N, C, H, W)``."""
    h, w = images.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(images[..., top:top + size, left:left + size])


def read_cifar10(spec, fetch: Fetch, config=None, crop: int | None = None) -> Splits:
    """CIFAR-10 as uint8 ``(N, 3, 32, 32)`` (50000 train, 10000 test), or its central
    ``crop`` x ``crop`` patches."""
    roles = [*TRAIN_BATCHES, TEST_BATCH]
    data = fetch(roles)
    batches = {role: parse_batch(data[role], spec.files[role].name) for role in roles}
    splits = []
    for names in (TRAIN_BATCHES, (TEST_BATCH,)):
        images = np.concatenate([batches[n].images for n in names])
        if crop is not None:
            images = central_crop(images, crop)
        splits.append(RawSplit(images, np.concatenate([batches[n].labels for n in names])))
    return Splits(*splits)


def read_cifar10_8x8(spec, fetch: Fetch, config=None) -> Splits:
    """CIFAR-10's central 8x8 crops, uint8 ``(N, 3, 8, 8)``."""
    return read_cifar10(spec, fetch, config, crop=8)
