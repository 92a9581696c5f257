"""Shared fixtures: a tiny synthetic IDX dataset registered as ``tiny-mnist``, the real data
directory (``VAELAB_DATA_DIR``) for the real-data tests, and runs without the end-of-run
figures unless a test asks for them.

The tests' models are tiny: one torch thread per process (this one and every child it starts)
trains them fastest, and keeps the suite's processes from competing for the cores (on a busy
2-core machine two threads each made a tiny run up to 30x slower). ``OMP_NUM_THREADS`` set
before running the tests wins.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported; inherited by child processes
if "HYPOTHESIS_STORAGE_DIRECTORY" not in os.environ:  # Hypothesis' caches, outside the checkout
    import tempfile

    os.environ["HYPOTHESIS_STORAGE_DIRECTORY"] = os.path.join(tempfile.gettempdir(), "vaelab-tests-hypothesis")

import gzip  # noqa: E402
import hashlib  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vaelab.data import DataFile, DatasetSpec, register_dataset  # noqa: E402

TINY_SHAPE = (28, 28)
REAL_DATA_DIR = os.environ.get("VAELAB_DATA_DIR")  # read before the fixtures below unset it


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX bytes (magic 0x0000 08 ND, big-endian sizes)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> bytes:
    """Write ``array`` as an IDX file (gzip when ``compress``); return the decompressed bytes."""
    from vaelab.io import atomic_write_bytes

    data = idx_bytes(array)
    # atomic: worker processes of a sweep test re-create the dataset while others read it
    atomic_write_bytes(path, gzip.compress(data, mtime=0) if compress else data)
    return data


def make_tiny_dataset(root: Path, name: str = "tiny-mnist", n_train: int = 96, n_test: int = 40,
                      seed: int = 0) -> DatasetSpec:
    """Write a synthetic MNIST-like dataset (blurry blobs, labels 0-9) under ``root/name`` and
    register it. Returns its spec (checksums of the written files)."""
    rng = np.random.default_rng(seed)
    files = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        yy, xx = np.mgrid[: TINY_SHAPE[0], : TINY_SHAPE[1]]
        centres = 6 + 16 * rng.random((n, 2))
        blobs = np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2) / 18.0)
        images = (255 * blobs).astype(np.uint8)
        prefix = "t10k" if split == "test" else "train"
        for role, array, kind in (("images", images, "idx3"), ("labels", labels, "idx1")):
            fname = f"{prefix}-{role}-{kind}-ubyte.gz"
            data = write_idx(root / name / fname, array)
            files[f"{split}_{role}"] = DataFile(fname, hashlib.sha256(data).hexdigest())
    return register_dataset(DatasetSpec(name=name, files=files, image_shape=(1, *TINY_SHAPE),
                                        classes=tuple(str(i) for i in range(10))))


@pytest.fixture(autouse=True)
def no_figures_unless_asked(request, monkeypatch):
    """Runs trained in the test process skip the end-of-run figures and TensorBoard (a tiny run
    takes 0.1 s instead of 2 s); the tests of what they write are marked ``figures``. Tests that
    train in child processes turn them off in their configs (``figures.draw_at_end: false``,
    ``training.logger: csv``)."""
    if request.node.get_closest_marker("figures"):
        return
    from vaelab.plots.callbacks import Figures, TensorBoard

    monkeypatch.setattr(Figures, "on_fit_end", lambda self, trainer, summary: None)
    monkeypatch.setattr(TensorBoard, "on_train_start", lambda self, trainer: None)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own empty cache directory and no VAELAB_DATA_DIR unless it asks."""
    monkeypatch.setenv("VAELAB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("VAELAB_DATA_DIR", raising=False)


@pytest.fixture
def tiny_data(tmp_path) -> tuple[Path, DatasetSpec]:
    """A tiny synthetic dataset on disk: (data directory, spec)."""
    root = tmp_path / "data"
    return root, make_tiny_dataset(root)


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real data directory from VAELAB_DATA_DIR; the test is skipped when none is configured."""
    value = REAL_DATA_DIR
    if not value or not (Path(value) / "mnist").is_dir():
        pytest.skip("no real data directory configured (set VAELAB_DATA_DIR to a folder holding mnist/)")
    return Path(value)
