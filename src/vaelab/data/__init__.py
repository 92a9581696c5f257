"""Data: dataset registry and catalog, your own files (:mod:`.files`) and torch Datasets
(:mod:`.streaming`), file lookup and verification, one reader per file format, in-memory splits
and batching."""

from . import catalog  # noqa: F401  (registers the known datasets)
from .arrays import RawSplit, Splits
from .batching import InMemoryBatches
from .datasets import Dataset, Split, binarize_split, dataset_spec, load_dataset, resolve_binarize
from .files import is_user_dataset, save_arrays
from .streaming import StreamedBatches, StreamedSplit, is_torch_data, prepare_datasets
from .idx import parse_idx
from .registry import DataFile, DatasetSpec, cache_dir, dataset_names, get_spec, register_dataset

__all__ = [
    "DataFile", "Dataset", "DatasetSpec", "InMemoryBatches", "RawSplit", "Split", "Splits",
    "binarize_split", "cache_dir", "dataset_names", "dataset_spec", "get_spec", "is_user_dataset",
    "load_dataset", "parse_idx", "register_dataset", "resolve_binarize", "save_arrays",
    "StreamedBatches", "StreamedSplit", "is_torch_data", "prepare_datasets",
]
