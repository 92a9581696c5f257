"""Data: dataset registry, file lookup and verification, in-memory splits and batching."""

from .batching import InMemoryBatches
from .datasets import Dataset, Split, binarize_split, load_dataset
from .idx import parse_idx
from .registry import DataFile, DatasetSpec, cache_dir, dataset_names, get_spec, register_dataset

__all__ = [
    "DataFile", "Dataset", "DatasetSpec", "InMemoryBatches", "Split", "binarize_split",
    "cache_dir", "dataset_names", "get_spec", "load_dataset", "parse_idx", "register_dataset",
]
