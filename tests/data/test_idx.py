import gzip

import numpy as np
import pytest

from tests.conftest import idx_bytes, write_idx
from vaelab.data.idx import parse_idx, read_bytes
from vaelab.errors import DataError


def test_parse_images_and_labels():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    parsed = parse_idx(idx_bytes(images), expected_ndim=3)
    assert parsed.shape == (2, 3, 4) and parsed.dtype == np.uint8
    np.testing.assert_array_equal(parsed, images)
    labels = np.array([7, 1, 0], dtype=np.uint8)
    np.testing.assert_array_equal(parse_idx(idx_bytes(labels), expected_ndim=1), labels)


def test_bad_magic():
    data = bytearray(idx_bytes(np.zeros((2, 2, 2), np.uint8)))
    data[0] = 0x1F
    with pytest.raises(DataError, match=r"x.idx: bad IDX magic number 0x1f000803"):
        parse_idx(bytes(data), "x.idx")


def test_truncated_and_padded_files():
    data = idx_bytes(np.zeros((5, 4, 4), np.uint8))
    with pytest.raises(DataError, match=r"truncated \(header \(5, 4, 4\) needs 96 bytes, found 90\)"):
        parse_idx(data[:-6])
    with pytest.raises(DataError, match="longer than its header says"):
        parse_idx(data + b"\x00")
    with pytest.raises(DataError, match="truncated IDX header"):
        parse_idx(data[:9])


def test_wrong_number_of_dimensions():
    with pytest.raises(DataError, match="has 1 dimensions, expected 3"):
        parse_idx(idx_bytes(np.zeros(4, np.uint8)), "labels", expected_ndim=3)


def test_read_bytes_gzip_plain_and_truncated(tmp_path):
    array = np.ones((3, 2, 2), np.uint8)
    raw = write_idx(tmp_path / "a.gz", array)
    assert read_bytes(tmp_path / "a.gz") == raw
    write_idx(tmp_path / "a", array, compress=False)
    assert read_bytes(tmp_path / "a") == raw
    (tmp_path / "cut.gz").write_bytes(gzip.compress(raw * 50)[:-20])
    with pytest.raises(DataError, match="cut.gz is a corrupt or truncated gzip file"):
        read_bytes(tmp_path / "cut.gz")
    with pytest.raises(DataError, match="does not exist"):
        read_bytes(tmp_path / "missing.gz")
