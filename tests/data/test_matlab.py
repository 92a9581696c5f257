"""Frey Faces and SVHN format 2, read from synthetic .mat files written as the canonical ones."""

import re

import numpy as np
import pytest
import torch

from tests.data.conftest import mat_bytes, svhn_arrays, write_frey
from vaelab.config import DataConfig
from vaelab.data import get_spec, load_dataset
from vaelab.data.matlab import frey_pixels, svhn_arrays as parse_svhn
from vaelab.data.registry import fetch_file
from vaelab.errors import DataError


def test_frey_frames_are_row_major_28x20_and_the_test_set_is_the_last_200(tiny_frey):
    root, spec, pixels = tiny_frey
    ds = load_dataset(DataConfig(dataset=spec.name, data_dir=str(root)))
    assert ds.train.images.shape == (1765, 1, 28, 20) and ds.test.images.shape == (200, 1, 28, 20)
    assert ds.image_shape == (1, 28, 20) and ds.train.images.dtype == torch.float32
    frames = torch.from_numpy(pixels.reshape(1965, 1, 28, 20).astype(np.float32) / 255)
    assert torch.equal(ds.train.images, frames[:1765])  # first 1765 frames, in video order
    assert torch.equal(ds.test.images, frames[1765:])  # last 200 frames
    assert ds.train.images[3, 0, 1, 0] == pixels[3, 20] / 255  # row 1, column 0 of frame 3
    assert ds.train.labels.dtype == torch.int64 and set(ds.test.labels.tolist()) == {0}


def test_frey_checksum_covers_the_pixels_not_the_container(tiny_frey, tmp_path):
    _, spec, pixels = tiny_frey
    other = tmp_path / "reencoded"
    write_frey(other / "frey_rawface.mat", pixels, do_compression=True)  # different bytes, same pixels
    assert frey_pixels(fetch_file(spec, "faces", other)).tobytes() == pixels.tobytes()
    changed = pixels.copy()
    changed[100, 7] ^= 1
    write_frey(other / "frey_rawface.mat", changed)
    with pytest.raises(DataError, match=r"checksum mismatch \(sha256 of the pixel array ff.T"):
        fetch_file(spec, "faces", other)


@pytest.mark.parametrize("variables, found", [
    ({"faces": np.zeros((560, 1965), np.uint8)}, r"no variable 'ff' \(expected ff uint8 \(560, 1965\); "
                                                  r"found variables: faces\)"),
    ({"ff": np.zeros((560, 1965), np.float64)}, r"variable 'ff' is float64 \(560, 1965\), expected uint8 \(560, 1965\)"),
    ({"ff": np.zeros((1965, 560), np.uint8)}, r"variable 'ff' is uint8 \(1965, 560\), expected uint8 \(560, 1965\)"),
])
def test_frey_wrong_content_is_one_line_naming_file_expected_found_and_fix(tiny_frey, tmp_path, variables, found):
    _, spec, _ = tiny_frey
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "frey_rawface.mat").write_bytes(mat_bytes(variables))
    with pytest.raises(DataError) as info:
        load_dataset(DataConfig(dataset=spec.name, data_dir=str(tmp_path / "bad")))
    message = str(info.value)
    assert "\n" not in message and "frey_rawface.mat: " in message and "fetch it again" in message
    assert re.search(found, message), message


def test_not_a_mat_file(tiny_frey, tmp_path):
    _, spec, _ = tiny_frey
    (tmp_path / "frey_rawface.mat").write_bytes(b"MATLAB? no, just text")
    with pytest.raises(DataError, match="frey_rawface.mat is not a readable .mat file"):
        fetch_file(spec, "faces", tmp_path)


def test_frey_is_found_in_a_frey_faces_folder():
    assert get_spec("frey").dirnames == ("frey", "frey-faces")
    assert get_spec("frey").files["faces"].name == "frey_rawface.mat"


def test_svhn_is_nchw_with_label_10_read_as_digit_0(tiny_svhn):
    root, spec, arrays = tiny_svhn
    ds = load_dataset(DataConfig(dataset=spec.name, data_dir=str(root)))
    assert ds.train.images.shape == (12, 3, 32, 32) and ds.test.images.shape == (10, 3, 32, 32)
    x, y = arrays["test"]
    # pixel (row 5, column 7) of channel 2 of example 4 is X[5, 7, 2, 4]
    assert ds.test.images[4, 2, 5, 7] == x[5, 7, 2, 4] / 255
    assert ds.test.labels.tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    assert y[-1, 0] == 10


@pytest.mark.parametrize("change, message", [
    (lambda x, y: {"X": x}, r"no variable 'y' .*found variables: X"),
    (lambda x, y: {"X": x[:, :, :1], "y": y}, r"variable 'X' is uint8 \(32, 32, 1, 3\), expected uint8 \(32, 32, 3, N\)"),
    (lambda x, y: {"X": x, "y": y[:2]}, r"variable 'y' is uint8 \(2, 1\), expected integer \(3, 1\)"),
    (lambda x, y: {"X": x, "y": y - 1}, r"labels range over 0..2, expected 1..10"),
])
def test_svhn_wrong_content(change, message):
    x, y = svhn_arrays(3, seed=0)
    with pytest.raises(DataError, match=f"test_32x32.mat: {message}"):
        parse_svhn(mat_bytes(change(x, y)), "test_32x32.mat")


def test_registered_svhn_uses_canonical_names_and_sha256():
    spec = get_spec("svhn")
    assert {r: f.name for r, f in spec.files.items()} == {"train": "train_32x32.mat", "test": "test_32x32.mat"}
    assert spec.files["train"].sha256.startswith("435e94d6") and spec.files["test"].sha256.startswith("cdce80df")
    assert spec.mirrors == ("http://ufldl.stanford.edu/housenumbers/",)


def test_frey_download_is_verified_by_its_pixels(tiny_frey, tmp_path):
    from dataclasses import replace
    from vaelab.data import register_dataset
    from vaelab.data.registry import cache_dir
    _, spec, pixels = tiny_frey
    write_frey(tmp_path / "mirror" / "frey_rawface.mat", pixels, do_compression=True)  # re-encoded copy
    spec = register_dataset(replace(spec, name="tiny-frey-dl", folders=(), mirrors=((tmp_path / "mirror").as_uri(),)))
    ds = load_dataset(DataConfig(dataset=spec.name))
    assert len(ds.train) == 1765 and (cache_dir() / "datasets" / "tiny-frey-dl" / "frey_rawface.mat").is_file()
