"""Datasets that need no files: the toy 2-D square and scikit-learn's 8x8 digits.

``toy2d``: points uniform in a square, ``[0, 1]^2`` (``data.toy2d_range: unit``, the default)
or ``[-1, 1]^2`` (``symmetric``), stored as ``(N, 1, 1, 2)`` float32 so that every dataset has
the same ``(N, C, H, W)`` layout. The label of a point is its quadrant around the square's
centre, for colouring: 0 lower left, 1 lower right, 2 upper left, 3 upper right (a point on
a dividing line goes to the upper/right side). Train and test points come from two independent
streams seeded by ``(toy2d_seed, 0)`` and ``(toy2d_seed, 1)``, so changing the size of one split
leaves the other unchanged.

``digits``: the 1797 8x8 handwritten digits bundled with scikit-learn
(:func:`sklearn.datasets.load_digits`, the test set of the UCI "Optical Recognition of
Handwritten Digits" data), gray levels 0..16 scaled to ``[0, 1]``, ``(N, 1, 8, 8)``. The split
is fixed: a permutation seeded with 0 puts 360 digits (20 %) in the test set and 1437 in the
training set.
"""

from __future__ import annotations

import hashlib

import numpy as np

from ..errors import DataError
from .arrays import Fetch, RawSplit, Splits

TOY2D_RANGES = {"unit": (0.0, 1.0), "symmetric": (-1.0, 1.0)}
QUADRANTS = ("lower left", "lower right", "upper left", "upper right")

DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0
DIGITS_SHA256 = "8f26b2bd9d135c256808f68f14fdabddde6d9c7f869ae419704b051f0f14b3b3"
"""sha256 of scikit-learn's digits images as uint8 ``(1797, 64)`` in their bundled order."""


def toy2d_points(n: int, low: float, high: float, seed: int, stream: int) -> RawSplit:
    """``n`` points uniform in ``[low, high]^2`` as float32 ``(n, 1, 1, 2)``, quadrant labels."""
    rng = np.random.default_rng([seed, stream])
    points = rng.uniform(low, high, size=(n, 2)).astype(np.float32)
    centre = (low + high) / 2
    labels = (points[:, 0] >= centre).astype(np.int64) + 2 * (points[:, 1] >= centre)
    return RawSplit(points.reshape(n, 1, 1, 2), labels)


def read_toy2d(spec, fetch: Fetch, config) -> Splits:
    """The toy 2-D square: sizes, range and seed from ``config`` (a DataConfig)."""
    low, high = TOY2D_RANGES[config.toy2d_range]
    return Splits(toy2d_points(config.toy2d_train_size, low, high, config.toy2d_seed, stream=0),
                  toy2d_points(config.toy2d_test_size, low, high, config.toy2d_seed, stream=1))


def read_digits(spec, fetch: Fetch, config=None) -> Splits:
    """scikit-learn's 8x8 digits as float32 ``(N, 1, 8, 8)`` in [0, 1], fixed seeded split.

    Raises:
        DataError: scikit-learn is missing, or its bundled digits differ from the ones vaelab
            was checked against (checksum).
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits dataset needs scikit-learn: pip install scikit-learn") from None
    bunch = load_digits()
    pixels = bunch.data.astype(np.uint8)  # (1797, 64), integers 0..16
    digest = hashlib.sha256(np.ascontiguousarray(pixels).tobytes()).hexdigest()
    if digest != DIGITS_SHA256:
        raise DataError(
            f"scikit-learn's bundled digits have sha256 {digest[:16]}..., expected {DIGITS_SHA256[:16]}...; "
            "this scikit-learn ships different data: install the version in constraints.txt"
        )
    images = (pixels.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    labels = bunch.target.astype(np.int64)
    order = np.random.default_rng(DIGITS_SPLIT_SEED).permutation(len(images))
    test, train = order[:DIGITS_TEST_SIZE], order[DIGITS_TEST_SIZE:]
    return Splits(RawSplit(images[train], labels[train]), RawSplit(images[test], labels[test]))
