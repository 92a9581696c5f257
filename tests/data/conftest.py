"""Tiny synthetic files in exactly the canonical formats of Frey Faces (.mat v5 with ``ff``),
SVHN format 2 (.mat v5 with ``X``, ``y``) and CIFAR-10 python (tar.gz of protocol-2 pickles
with bytes keys), and test specs that use the real readers with these files' checksums."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from vaelab.data import DatasetSpec, get_spec, register_dataset


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def mat_bytes(variables: dict, **kwargs) -> bytes:
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, variables, **kwargs)
    return buffer.getvalue()


# --- Frey Faces -----------------------------------------------------------------------------


def frey_pixels(seed: int = 0) -> np.ndarray:
    """A random stand-in for the Frey pixel array: uint8 (1965, 560), row j = frame j."""
    return np.random.default_rng(seed).integers(0, 256, size=(1965, 560), dtype=np.uint8)


def write_frey(path: Path, pixels: np.ndarray, **kwargs) -> bytes:
    """Write ``pixels`` (1965, 560) as frey_rawface.mat: variable ff = pixels.T, (560, 1965)."""
    data = mat_bytes({"ff": pixels.T}, **kwargs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


@pytest.fixture
def tiny_frey(tmp_path) -> tuple[Path, DatasetSpec, np.ndarray]:
    """(data dir, spec, pixels): a synthetic frey_rawface.mat in DIR/tiny-frey-faces/, read by
    the real Frey reader under a spec whose checksum is that of the synthetic pixels."""
    pixels = frey_pixels()
    root = tmp_path / "data"
    write_frey(root / "tiny-frey-faces" / "frey_rawface.mat", pixels)
    real = get_spec("frey")
    faces = replace(real.files["faces"], sha256=sha256(pixels.tobytes()))
    spec = register_dataset(replace(real, name="tiny-frey", files={"faces": faces}, mirrors=(),
                                    folders=("tiny-frey", "tiny-frey-faces")))
    return root, spec, pixels


# --- SVHN -----------------------------------------------------------------------------------


def svhn_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """X uint8 (32, 32, 3, n) and y uint8 (n, 1) with labels 1..10 (10 is the digit 0)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)
    return x, y


@pytest.fixture
def tiny_svhn(tmp_path) -> tuple[Path, DatasetSpec, dict]:
    """(data dir, spec, {split: (X, y)}): synthetic train_32x32.mat (12) and test_32x32.mat (10)."""
    root = tmp_path / "data"
    (root / "tiny-svhn").mkdir(parents=True)
    real = get_spec("svhn")
    files, arrays = {}, {}
    for role, n in (("train", 12), ("test", 10)):
        x, y = arrays[role] = svhn_arrays(n, seed=n)
        data = mat_bytes({"X": x, "y": y})
        (root / "tiny-svhn" / real.files[role].name).write_bytes(data)
        files[role] = replace(real.files[role], sha256=sha256(data))
    spec = register_dataset(replace(real, name="tiny-svhn", files=files, mirrors=()))
    return root, spec, arrays


# --- CIFAR-10 -------------------------------------------------------------------------------


def cifar_batch(n: int, seed: int, label: str = "training batch") -> tuple[bytes, np.ndarray, list[int]]:
    """One batch pickled as the canonical files are: a dict with bytes keys, b"data" uint8
    (n, 3072), b"labels" a list of ints, protocol 2. Returns (bytes, data, labels)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, size=n)]
    batch = {b"batch_label": label.encode(), b"labels": labels, b"data": data,
             b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)]}
    return pickle.dumps(batch, protocol=2), data, labels


def tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


BATCHES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch")


def make_cifar(n: int = 4) -> tuple[dict[str, bytes], dict[str, tuple[np.ndarray, list[int]]]]:
    """The six batches ({name: pickle bytes}, {name: (data, labels)}), n images each."""
    pickles, arrays = {}, {}
    for i, name in enumerate(BATCHES):
        pickles[name], data, labels = cifar_batch(n, seed=i)
        arrays[name] = (data, labels)
    return pickles, arrays


def cifar_spec(name: str, archive: bytes, pickles: dict[str, bytes], variant: str = "cifar10",
               folders: tuple[str, ...] = ()) -> DatasetSpec:
    """Register ``variant``'s spec under ``name`` with the checksums of these synthetic files."""
    real = get_spec(variant)
    files = {"archive": replace(real.files["archive"], sha256=sha256(archive))}
    files.update({b: replace(real.files[b], md5=md5(pickles[b])) for b in BATCHES})
    return register_dataset(replace(real, name=name, files=files, mirrors=(), folders=folders or (name,)))


@pytest.fixture
def tiny_cifar(tmp_path) -> tuple[Path, DatasetSpec, dict, bytes]:
    """(data dir, spec, {batch: (data, labels)}, archive bytes): a synthetic
    cifar-10-python.tar.gz in DIR/tiny-cifar10/."""
    pickles, arrays = make_cifar()
    archive = tar_gz({f"cifar-10-batches-py/{b}": pickles[b] for b in BATCHES})
    root = tmp_path / "data"
    (root / "tiny-cifar10").mkdir(parents=True)
    (root / "tiny-cifar10" / "cifar-10-python.tar.gz").write_bytes(archive)
    return root, cifar_spec("tiny-cifar10", archive, pickles), arrays, archive

