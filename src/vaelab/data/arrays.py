"""What a dataset reader returns: raw arrays per split, before they become tensors.

A reader (one per file format, see :mod:`vaelab.data.catalog`) is a function
``reader(spec, fetch, config) -> Splits`` where ``fetch(roles)`` returns the verified bytes of
the spec's files (see :func:`vaelab.data.registry.fetch_files`) and ``config`` is the
:class:`vaelab.config.DataConfig` (for generated datasets). :func:`vaelab.data.load_dataset`
turns the arrays into float32 tensors, checks their shapes against the spec, and carves the
validation split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

Fetch = Callable[[Sequence[str]], dict[str, bytes]]
"""``fetch(roles) -> {role: bytes}``: verified content of the named files of a spec."""


class RawSplit(NamedTuple):
    """One split as read from disk.

    ``images``: ``(N, C, H, W)``, either ``uint8`` gray levels 0..255 (divided by 255 on
    loading) or ``float32`` already on the model's scale. ``labels``: ``(N,)`` integers.
    """

    images: np.ndarray
    labels: np.ndarray


class Splits(NamedTuple):
    """The fixed train and test splits of a dataset."""

    train: RawSplit
    test: RawSplit
