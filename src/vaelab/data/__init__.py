"""Data: dataset registry and catalog, file lookup and verification, one reader per file
format, in-memory splits and batching."""

from . import catalog  # noqa: F401  (registers the known datasets)
from .arrays import RawSplit, Splits
from .batching import InMemoryBatches
from .datasets import Dataset, Split, binarize_split, load_dataset, resolve_binarize
from .idx import parse_idx
from .registry import DataFile, DatasetSpec, cache_dir, dataset_names, get_spec, register_dataset

__all__ = [
    "DataFile", "Dataset", "DatasetSpec", "InMemoryBatches", "RawSplit", "Split", "Splits",
    "binarize_split", "cache_dir", "dataset_names", "get_spec", "load_dataset", "parse_idx",
    "register_dataset", "resolve_binarize",
]
