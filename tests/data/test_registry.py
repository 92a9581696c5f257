import gzip
import shutil

import pytest

from tests.conftest import make_tiny_dataset
from vaelab.data.registry import cache_dir, fetch_file, get_spec, search_dirs
from vaelab.errors import DataError


def test_lookup_order_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    spec = make_tiny_dataset(tmp_path / "good")
    name = spec.files["train_images"].name
    bad = tmp_path / "bad" / spec.name
    shutil.copytree(tmp_path / "good" / spec.name, bad)
    (bad / name).write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x00"))
    monkeypatch.setenv("VAELAB_DATA_DIR", str(tmp_path / "bad"))
    labels = [label for label, _ in search_dirs(spec, tmp_path / "good")]
    assert labels == ["--data-dir", "VAELAB_DATA_DIR", "cache"]
    assert fetch_file(spec, "train_images", tmp_path / "good")  # the option wins over the variable
    with pytest.raises(DataError, match=f"{name}: checksum mismatch"):
        fetch_file(spec, "train_images")  # then the variable, before the cache
    monkeypatch.delenv("VAELAB_DATA_DIR")
    shutil.copytree(tmp_path / "good", cache_dir() / "datasets")
    assert fetch_file(spec, "train_images", download=False)  # then the cache


def test_recompressed_or_uncompressed_copies_are_accepted(tiny_data, tmp_path):
    root, spec = tiny_data
    expected = fetch_file(spec, "test_images", root)
    other = tmp_path / "other"
    other.mkdir()
    name = spec.files["test_images"].name
    raw = gzip.decompress((root / spec.name / name).read_bytes())
    (other / name).write_bytes(gzip.compress(raw, compresslevel=1, mtime=12345))  # flat layout
    assert fetch_file(spec, "test_images", other) == expected
    (other / name).unlink()
    (other / name[:-3]).write_bytes(raw)  # not compressed at all
    assert fetch_file(spec, "test_images", other) == expected


def test_missing_files_give_one_line_with_remedies(tmp_path):
    spec = make_tiny_dataset(tmp_path / "elsewhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as info:
        fetch_file(spec, "train_images", empty, download=False)
    message = str(info.value)
    assert "\n" not in message
    assert "train-images-idx3-ubyte.gz not found in" in message
    assert "--data-dir" in message and "VAELAB_DATA_DIR" in message and "vaelab download" in message


def test_nonexistent_data_dir_is_an_error(tmp_path):
    with pytest.raises(DataError, match="does not exist; fix the path"):
        fetch_file(get_spec("mnist"), "train_images", tmp_path / "nope")


def test_download_verifies_and_caches(tmp_path):
    spec = make_tiny_dataset(tmp_path / "mirror")
    from dataclasses import replace
    from vaelab.data import register_dataset
    spec = register_dataset(replace(spec, mirrors=((tmp_path / "mirror" / spec.name).as_uri(),)))
    data = fetch_file(spec, "train_labels")
    cached = cache_dir() / "datasets" / spec.name / spec.files["train_labels"].name
    assert cached.is_file() and gzip.decompress(cached.read_bytes()) == data
    # a corrupt cached copy is deleted and fetched again
    cached.write_bytes(b"garbage")
    assert fetch_file(spec, "train_labels") == data
    assert gzip.decompress(cached.read_bytes()) == data


def test_download_with_wrong_checksum_is_rejected(tmp_path):
    spec = make_tiny_dataset(tmp_path / "mirror")
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "mirror" / spec.name, bad)
    make_tiny_dataset(tmp_path / "other", seed=5)  # different content ...
    shutil.copy(tmp_path / "other" / spec.name / spec.files["test_images"].name, bad)
    from dataclasses import replace
    from vaelab.data import register_dataset
    spec = register_dataset(replace(spec, mirrors=(bad.as_uri(),)))  # ... served under spec's name
    with pytest.raises(DataError, match="download failed: .*checksum mismatch"):
        fetch_file(spec, "test_images")
    assert not (cache_dir() / "datasets" / spec.name / spec.files["test_images"].name).exists()


def test_unknown_dataset_suggests():
    with pytest.raises(DataError, match="did you mean mnist"):
        get_spec("mnsit")


def test_a_file_needs_a_checksum_and_a_member_a_known_archive():
    from vaelab.data import DataFile, DatasetSpec
    with pytest.raises(ValueError, match="needs a sha256 or an md5"):
        DataFile("x.bin")
    with pytest.raises(ValueError, match="names archive 'tarball', which is not one of its files"):
        DatasetSpec("x", {"a": DataFile("a", md5="0" * 32, archive="tarball")}, (1, 2, 2), ("0",))


def test_tar_members_with_a_leading_dot_slash():
    import io
    import tarfile
    from vaelab.data.registry import read_tar_members
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:  # uncompressed tar works too
        info = tarfile.TarInfo("./d/f")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    assert read_tar_members(buffer.getvalue(), ["d/f"], "t.tar") == {"d/f": b"abc"}
    with pytest.raises(DataError, match="t.tar is a corrupt or truncated archive"):
        read_tar_members(b"not a tar at all" * 40, ["d/f"], "t.tar")
