"""Reading the IDX format of MNIST and Fashion-MNIST, gzip-compressed or not.

IDX (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic number ``0x00 0x00 TT
ND`` (TT the element type, 0x08 for unsigned bytes; ND the number of dimensions), ND big-endian
uint32 sizes, then the elements in row-major order.

:func:`read_idx` is the reader of the datasets stored as four IDX files (``train_images``,
``train_labels``, ``test_images``, ``test_labels``).
"""

from __future__ import annotations

import gzip
import io
import hashlib
import math
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .arrays import Fetch, RawSplit, Splits

# IDX type code -> numpy big-endian dtype
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


MAX_DECOMPRESSED = 1 << 30
"""Decompressed-size limit of a gzip file whose exact size is not known (1 GiB)."""


def read_bytes(path: Path, gunzip: bool = True, max_size: int | None = None) -> bytes:
    """The file's content, decompressed if it is gzip (detected by its magic bytes) and
    ``gunzip`` is true. Decompression stops past ``max_size`` bytes (the file's known size;
    default :data:`MAX_DECOMPRESSED`), so a gzip bomb cannot exhaust memory.

    Raises:
        DataError: the file is missing, unreadable, a truncated/corrupt gzip stream, or
            decompresses to more than the limit.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    if not gunzip or raw[:2] != b"\x1f\x8b":
        return raw
    limit = MAX_DECOMPRESSED if max_size is None else max_size
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as stream:
            data = stream.read(limit + 1)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(
            f"{path} is a corrupt or truncated gzip file ({exc}); delete it and fetch it again"
        ) from None
    if len(data) > limit:
        raise DataError(
            f"{path} decompresses to more than {limit:,} bytes, the most this file can hold; it is not "
            "the dataset's file (or is damaged): delete it and fetch it again"
        )
    return data


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_idx(data: bytes, source: str = "<bytes>", expected_ndim: int | None = None) -> np.ndarray:
    """Parse decompressed IDX bytes into an array of the file's shape and dtype.

    Args:
        data: the decompressed file content.
        source: the file name, used in error messages.
        expected_ndim: if given, the number of dimensions the file must have
            (3 for images, 1 for labels).

    Returns:
        ``np.ndarray`` of shape ``(N, ...)`` (read-only view of ``data``).

    Raises:
        DataError: bad magic number, unknown type code, wrong number of dimensions,
            or a size that disagrees with the header (truncated or padded file).
    """
    if len(data) < 4:
        raise DataError(f"{source}: not an IDX file (only {len(data)} bytes); fetch it again")
    zero, type_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    if zero != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{source}: bad IDX magic number 0x{data[:4].hex()} (expected 0x0000TTNN, e.g. "
            "0x00000803 for images); the file is not IDX data or is corrupt, fetch it again"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataError(
            f"{source}: IDX file has {ndim} dimensions, expected {expected_ndim}; "
            "images and labels may be swapped"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{source}: truncated IDX header ({len(data)} bytes); fetch it again")
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected = header + math.prod(shape) * dtype.itemsize  # python ints: no overflow
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "longer than its header says"
        raise DataError(
            f"{source}: IDX file is {what} (header {shape} needs {expected} bytes, found "
            f"{len(data)}); fetch it again"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def read_idx(spec, fetch: Fetch, config=None) -> Splits:
    """Images ``(N, 1, H, W)`` uint8 and labels ``(N,)`` of the train and test IDX files.

    Raises:
        DataError: a file is not valid IDX or has the wrong number of dimensions, or images
            and labels disagree in count.
    """
    data = fetch(["train_images", "train_labels", "test_images", "test_labels"])
    splits = []
    for split in ("train", "test"):
        images = parse_idx(data[f"{split}_images"], spec.files[f"{split}_images"].name, expected_ndim=3)
        labels = parse_idx(data[f"{split}_labels"], spec.files[f"{split}_labels"].name, expected_ndim=1)
        splits.append(RawSplit(images[:, None], labels))
    return Splits(*splits)
