"""CIFAR-10 python batches, from a synthetic cifar-10-python.tar.gz or its extracted folder."""

import io
import os
import pickle

import numpy as np
import pytest
import torch

from tests.data.conftest import BATCHES, cifar_batch, cifar_spec, make_cifar, tar_gz
from vaelab.config import DataConfig
from vaelab.data import get_spec, load_dataset
from vaelab.data.cifar import RestrictedUnpickler, central_crop, parse_batch, safe_unpickle
from vaelab.data.registry import cache_dir, fetch_files
from vaelab.errors import DataError


def test_archive_batches_become_nchw_splits(tiny_cifar):
    root, spec, arrays, _ = tiny_cifar
    ds = load_dataset(DataConfig(dataset=spec.name, data_dir=str(root)))
    assert ds.train.images.shape == (20, 3, 32, 32) and ds.test.images.shape == (4, 3, 32, 32)
    data, labels = arrays["data_batch_2"]
    # row = 1024 red, 1024 green, 1024 blue values, each plane row-major 32x32
    assert ds.train.images[4 + 1, 1, 2, 3] == data[1, 1024 + 2 * 32 + 3] / 255
    assert ds.train.labels[4:8].tolist() == labels and ds.train.labels.dtype == torch.int64
    assert ds.test.labels.tolist() == arrays["test_batch"][1]


def test_8x8_variant_is_the_central_crop_of_the_same_files(tiny_cifar):
    root, spec, arrays, archive = tiny_cifar
    pickles, _ = make_cifar()
    crop = cifar_spec("tiny-cifar10-8x8", archive, pickles, variant="cifar10-8x8", folders=("tiny-cifar10",))
    full = load_dataset(DataConfig(dataset=spec.name, data_dir=str(root)))
    small = load_dataset(DataConfig(dataset=crop.name, data_dir=str(root)))
    assert small.train.images.shape == (20, 3, 8, 8) and small.image_shape == (3, 8, 8)
    assert torch.equal(small.train.images, full.train.images[:, :, 12:20, 12:20])
    assert torch.equal(small.test.labels, full.test.labels)
    assert central_crop(np.arange(16).reshape(1, 1, 4, 4), 2).ravel().tolist() == [5, 6, 9, 10]


def test_extracted_batches_are_used_before_the_archive(tiny_cifar, tmp_path):
    root, spec, arrays, _ = tiny_cifar
    pickles, _ = make_cifar()
    extracted = tmp_path / "extracted" / "cifar-10-batches-py"  # what `tar xzf` leaves in DIR
    extracted.mkdir(parents=True)
    for name in BATCHES:
        (extracted / name).write_bytes(pickles[name])
    ds = load_dataset(DataConfig(dataset=spec.name, data_dir=str(tmp_path / "extracted")))
    assert ds.test.labels.tolist() == arrays["test_batch"][1]
    (extracted / "test_batch").write_bytes(pickles["data_batch_1"])  # wrong file under the name
    with pytest.raises(DataError, match=r"test_batch: checksum mismatch \(md5 of decompressed content"):
        load_dataset(DataConfig(dataset=spec.name, data_dir=str(tmp_path / "extracted")))


def test_archive_checksum_is_of_the_compressed_file(tiny_cifar, tmp_path):
    _, spec, _, _ = tiny_cifar
    assert spec.files["archive"].gunzip is False
    pickles, _ = make_cifar()
    other = tar_gz({f"cifar-10-batches-py/{b}": pickles[b] for b in reversed(BATCHES)})  # same batches
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(other)
    with pytest.raises(DataError, match=r"checksum mismatch \(sha256 of file bytes"):
        fetch_files(spec, ["test_batch"], tmp_path)


def test_archive_without_a_batch(tmp_path):
    pickles, _ = make_cifar()
    archive = tar_gz({f"cifar-10-batches-py/{b}": pickles[b] for b in BATCHES[:-1]})
    spec = cifar_spec("tiny-cifar10-incomplete", archive, pickles)
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(archive)
    with pytest.raises(DataError, match="cifar-10-python.tar.gz has no file cifar-10-batches-py/test_batch"):
        load_dataset(DataConfig(dataset=spec.name, data_dir=str(tmp_path)))


def test_missing_archive_names_it_and_the_extracted_alternative(tiny_cifar, tmp_path):
    _, spec, _, _ = tiny_cifar
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        fetch_files(spec, ["data_batch_1"], tmp_path / "empty", download=False)
    message = str(info.value)
    assert "cifar-10-python.tar.gz not found in" in message and "or the files extracted from it" in message


def test_download_keeps_only_the_archive_in_the_cache(tmp_path):
    pickles, arrays = make_cifar()
    archive = tar_gz({f"cifar-10-batches-py/{b}": pickles[b] for b in BATCHES})
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "cifar-10-python.tar.gz").write_bytes(archive)
    from dataclasses import replace
    from vaelab.data import register_dataset
    spec = register_dataset(replace(cifar_spec("tiny-cifar10-dl", archive, pickles), mirrors=(mirror.as_uri(),)))
    ds = load_dataset(DataConfig(dataset=spec.name))
    assert ds.test.labels.tolist() == arrays["test_batch"][1]
    assert sorted(os.listdir(cache_dir() / "datasets" / "tiny-cifar10-dl")) == ["cifar-10-python.tar.gz"]


def test_canonical_python2_string_opcodes_are_read_as_bytes():
    # Python 2 wrote str values with BINSTRING opcodes; encoding="bytes" turns them into bytes.
    pickled = b"\x80\x02}q\x00U\x05helloq\x01U\x03abcq\x02s."  # {'hello': 'abc'} from Python 2
    assert safe_unpickle(pickled, "x") == {b"hello": b"abc"}
    # numpy 1.x (and the canonical files) name the array constructor numpy.core.multiarray
    old_style = pickle.dumps(np.arange(6, dtype=np.uint8), protocol=2).replace(
        b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray\n_reconstruct" in old_style
    assert safe_unpickle(old_style, "x").tolist() == list(range(6))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_pickles_that_call_anything_are_refused(tmp_path):
    payload = pickle.dumps({b"data": _Evil()}, protocol=2)
    with pytest.raises(DataError, match=r"data_batch_1: refused to unpickle \(forbidden global posix.system\)"):
        parse_batch(payload, "data_batch_1")
    with pytest.raises(pickle.UnpicklingError, match="forbidden global builtins.eval"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(eval))).load()


@pytest.mark.parametrize("batch, message", [
    ([1, 2], "expected a pickled dict, found list"),
    ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, r"'data' is float32 \(2, 3072\), expected uint8"),
    ({b"data": np.zeros((2, 1024), np.uint8), b"labels": [0, 1]}, r"'data' is uint8 \(2, 1024\)"),
    ({b"labels": [0, 1]}, r"'data' is NoneType"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, r"'labels' must be 2 integers 0..9"),
    ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"'labels' must be 2 integers 0..9"),
])
def test_wrong_batch_content(batch, message):
    with pytest.raises(DataError, match=f"test_batch: {message}"):
        parse_batch(pickle.dumps(batch, protocol=2), "test_batch")


def test_truncated_pickle():
    data, _, _ = cifar_batch(2, seed=0)
    with pytest.raises(DataError, match="test_batch: not a readable pickle"):
        parse_batch(data[:-50], "test_batch")


def test_registered_cifar10_uses_canonical_archive_and_checksums():
    spec = get_spec("cifar10")
    assert spec.files["archive"].name == "cifar-10-python.tar.gz"
    assert spec.files["archive"].sha256 == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    assert spec.files["test_batch"].name == "cifar-10-batches-py/test_batch"
    assert spec.files["test_batch"].md5 == "40351d587109b95175f43aff81a1287e"
    assert spec.mirrors == ("https://www.cs.toronto.edu/~kriz/",)
    crop = get_spec("cifar10-8x8")
    assert crop.files == spec.files and crop.dirnames == spec.dirnames and crop.image_shape == (3, 8, 8)

