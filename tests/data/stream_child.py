"""Your own torch Dataset, too large for ``data.max_gigabytes``, streamed: the datasets and
config of tests/data/test_streaming.py, and ``python -m tests.data.stream_child OUT NAME``, the
run the SIGKILL test kills (each item takes 2 ms to read, so it is killed mid-run)."""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

EPOCHS = 6
MAX_GIGABYTES = 0.0002
"""200 kB: the 96 training images (301 kB as float32) stream, the 40 test images (125 kB) fit."""


class CountingDataset(Dataset):
    """Items ``(image uint8 (28, 28), label)`` read one index at a time: counts every read and
    refuses any other key (a list, a slice, a tensor: no bulk access)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, delay: float = 0.0):
        self.images, self.labels, self.delay = images, labels, delay
        self.reads = 0

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index):
        if not isinstance(index, int):
            raise TypeError(f"one index at a time, got {type(index).__name__}")
        self.reads += 1
        if self.delay:
            time.sleep(self.delay)
        return torch.from_numpy(self.images[index]), int(self.labels[index])


def arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` blurry blobs (uint8 (n, 28, 28)) and labels 0..9."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:28, :28]
    centres = 6 + 16 * rng.random((n, 2))
    blobs = np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 18.0)
    return (255 * blobs).astype(np.uint8), np.arange(n) % 10


def datasets(delay: float = 0.0) -> tuple[CountingDataset, CountingDataset]:
    return CountingDataset(*arrays(96, 0), delay=delay), CountingDataset(*arrays(40, 1))


def config(output_dir, name: str, **data) -> dict:
    return {"output_dir": str(output_dir), "name": name, "model": {"latent_dim": 2, "hidden": [16]},
            "data": {"binarize": "dynamic", "max_gigabytes": MAX_GIGABYTES, **data},
            "training": {"epochs": EPOCHS, "batch_size": 8, "progress": False, "logger": "csv",
                         "checkpoint_every_steps": 2},
            "figures": {"draw_at_end": False}}


if __name__ == "__main__":
    import vaelab

    train, test = datasets(delay=0.002)
    vaelab.train(config(sys.argv[1], sys.argv[2]), verbose=False, data=(DataLoader(train, batch_size=8), test))
