"""Readers of MATLAB ``.mat`` (level 5) datasets: Frey Faces and SVHN format 2.

Both are read with :func:`scipy.io.loadmat` (a data-only format: no code is executed).

Frey Faces (Frey, Colmenarez & Huang 1998; a VAE benchmark since Kingma & Welling 2014):
``frey_rawface.mat`` holds one variable ``ff``, uint8, shape ``(560, 1965)``; column ``j`` is
frame ``j`` of a short video, flattened row-major to ``(28, 20)``. There is no official split.
Because the frames are consecutive video, a random split would put near-duplicates of every
test frame in the training set; vaelab holds out **the last 200 frames** (1765..1964) as the
test set and trains on the first 1765 (the 200 is the test size of Tomczak & Welling 2018,
who split at random). ``validation_size`` then carves a validation split from the 1765 as for
any dataset. Labels are all 0 (one class, "face").

SVHN format 2 (Netzer et al. 2011): ``train_32x32.mat`` and ``test_32x32.mat`` each hold ``X``,
uint8 ``(32, 32, 3, N)`` (height, width, channel, example), and ``y``, ``(N, 1)`` with labels
1..10 where 10 stands for the digit 0. vaelab returns ``(N, 3, 32, 32)`` and labels 0..9 (the
digit itself). The ``extra_32x32.mat`` set is not used.
"""

from __future__ import annotations

import io

import numpy as np

from ..errors import DataError
from .arrays import Fetch, RawSplit, Splits

FREY_SHAPE = (560, 1965)
"""Shape of ``ff``: 28*20 pixels by 1965 frames."""
FREY_IMAGE = (28, 20)
FREY_TEST_FRAMES = 200
"""The test split is the last 200 frames of the video (see the module docstring)."""


def load_mat(data: bytes, source: str) -> dict[str, np.ndarray]:
    """The variables of a MATLAB level-5 file (headers and globals dropped).

    Raises:
        DataError: the bytes are not a readable level-5 ``.mat`` file (e.g. v7.3/HDF5).
    """
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        variables = loadmat(io.BytesIO(data))
    except NotImplementedError:
        raise DataError(
            f"{source} is a MATLAB v7.3 (HDF5) file; expected a level-5 .mat file as distributed: "
            "fetch the original file again"
        ) from None
    except Exception as exc:  # noqa: BLE001 - scipy raises many types on garbage (IndexError, ...)
        what = exc if isinstance(exc, MatReadError) else f"{type(exc).__name__}: {exc}"
        raise DataError(f"{source} is not a readable .mat file ({what}); fetch it again") from None
    return {k: v for k, v in variables.items() if not k.startswith("__")}


def _variable(variables: dict[str, np.ndarray], name: str, source: str, expected: str) -> np.ndarray:
    if name not in variables:
        found = ", ".join(sorted(variables)) or "none"
        raise DataError(
            f"{source}: no variable {name!r} (expected {name} {expected}; found variables: {found}); "
            "the file is not the canonical one: fetch it again"
        )
    return variables[name]


def _wrong(source: str, name: str, expected: str, value: np.ndarray) -> DataError:
    return DataError(
        f"{source}: variable {name!r} is {value.dtype} {value.shape}, expected {expected}; "
        "the file is not the canonical one: fetch it again"
    )


# --- Frey Faces ---------------------------------------------------------------------------


def frey_pixels(data: bytes, source: str = "frey_rawface.mat") -> np.ndarray:
    """The Frey Faces pixel array as C-contiguous uint8 ``(1965, 560)`` (``ff.T``): one row per
    frame, each row a 28x20 image flattened row-major.

    Raises:
        DataError: not a .mat file, no variable ``ff``, or ``ff`` is not uint8 ``(560, 1965)``
            (one line naming the file, what was expected, what was found and the fix).
    """
    expected = f"uint8 {FREY_SHAPE}"
    ff = _variable(load_mat(data, source), "ff", source, expected)
    if ff.dtype != np.uint8 or ff.shape != FREY_SHAPE:
        raise _wrong(source, "ff", expected, ff)
    return np.ascontiguousarray(ff.T)


def frey_digest_content(data: bytes, source: str) -> bytes:
    """The bytes Frey's checksum covers: the pixel array ``ff.T`` (not the .mat container, which
    faithful copies re-encode)."""
    return frey_pixels(data, source).tobytes()


def read_frey(spec, fetch: Fetch, config=None) -> Splits:
    """Frey Faces as uint8 ``(N, 1, 28, 20)``: frames 0..1764 train, the last 200 test."""
    pixels = frey_pixels(fetch(["faces"])["faces"], spec.files["faces"].name)
    images = pixels.reshape(-1, 1, *FREY_IMAGE)  # (1965, 1, 28, 20)
    labels = np.zeros(len(images), dtype=np.int64)
    cut = len(images) - FREY_TEST_FRAMES
    return Splits(RawSplit(images[:cut], labels[:cut]), RawSplit(images[cut:], labels[cut:]))


# --- SVHN ---------------------------------------------------------------------------------


def svhn_arrays(data: bytes, source: str) -> RawSplit:
    """Images uint8 ``(N, 3, 32, 32)`` and labels 0..9 of one SVHN format-2 file.

    Raises:
        DataError: missing ``X`` or ``y``, wrong dtype or shape, disagreeing counts, or labels
            outside 1..10.
    """
    variables = load_mat(data, source)
    x_expected, y_expected = "uint8 (32, 32, 3, N)", "integer (N, 1) with values 1..10"
    x = _variable(variables, "X", source, x_expected)
    y = _variable(variables, "y", source, y_expected)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3):
        raise _wrong(source, "X", x_expected, x)
    if y.dtype.kind not in "uif" or y.size != x.shape[3] or (y.ndim == 2 and y.shape[1] != 1) or y.ndim > 2:
        raise DataError(
            f"{source}: variable 'y' is {y.dtype} {y.shape}, expected {y_expected.replace('N', str(x.shape[3]))}"
            "; the file is not the canonical one: fetch it again"
        )
    labels = y.reshape(-1).astype(np.int64)
    if labels.size and (labels.min() < 1 or labels.max() > 10):
        raise DataError(
            f"{source}: labels range over {labels.min()}..{labels.max()}, expected 1..10 (10 is the "
            "digit 0); the file is not SVHN format 2: fetch it again"
        )
    images = np.ascontiguousarray(x.transpose(3, 2, 0, 1))  # (H, W, C, N) -> (N, C, H, W)
    return RawSplit(images, labels % 10)  # label 10 is the digit 0


def read_svhn(spec, fetch: Fetch, config=None) -> Splits:
    """SVHN format 2 as uint8 ``(N, 3, 32, 32)`` with labels 0..9 (the official train/test)."""
    data = fetch(["train", "test"])
    return Splits(*(svhn_arrays(data[role], spec.files[role].name) for role in ("train", "test")))
