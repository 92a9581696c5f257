"""Frey Faces and binarized-mnist on the real files; skipped when no data directory is
configured (CI sets VAELAB_DATA_DIR=../shared/data, which holds frey-faces/frey_rawface.mat)."""

import csv
import hashlib

import numpy as np
import pytest
import torch

from vaelab.cli import main
from vaelab.config import DataConfig
from vaelab.data import get_spec, load_dataset
from vaelab.data.matlab import frey_pixels
from vaelab.data.registry import fetch_file

FREY_SHA256 = "2438ba4f0d2a6bd8bac43de756141eaa33c8d248dd613d464bdb1210d9b7af78"  # frey-faces/README.md


@pytest.mark.slow
def test_frey_shape_checksum_and_split(real_data_dir):
    spec = get_spec("frey")
    pixels = frey_pixels(fetch_file(spec, "faces", real_data_dir))  # found in frey-faces/
    assert pixels.shape == (1965, 560) and pixels.dtype == np.uint8
    assert hashlib.sha256(pixels.tobytes()).hexdigest() == FREY_SHA256 == spec.files["faces"].sha256
    ds = load_dataset(DataConfig(dataset="frey", data_dir=str(real_data_dir)))
    assert ds.train.images.shape == (1765, 1, 28, 20) and ds.test.images.shape == (200, 1, 28, 20)
    assert ds.train.images.dtype == torch.float32
    frames = torch.from_numpy(pixels.reshape(1965, 1, 28, 20).astype(np.float32) / 255)
    assert torch.equal(ds.test.images, frames[-200:])  # the last 200 frames of the video
    assert ds.train.images.min() * 255 == pytest.approx(8) and ds.train.images.max() * 255 == pytest.approx(238)
    with_val = load_dataset(DataConfig(dataset="frey", data_dir=str(real_data_dir), validation_size=200))
    assert (len(with_val.train), len(with_val.validation), len(with_val.test)) == (1565, 200, 200)


@pytest.mark.slow
def test_one_epoch_on_real_frey(real_data_dir, tmp_path):
    status = main(["train", "--dataset", "frey", "--data-dir", str(real_data_dir), "--epochs", "1",
                   "--no-progress", "--quiet", "--output-dir", str(tmp_path), "--name", "frey"])
    assert status == 0
    row = next(csv.DictReader((tmp_path / "frey" / "metrics.csv").open()))
    # Bernoulli "likelihood" on gray levels: below the 560 log 2 = 388 nats of a constant 0.5
    assert 0 < float(row["test_neg_elbo"]) < 560 * np.log(2)


@pytest.mark.slow
def test_binarized_mnist_reads_mnist_files_and_binarises(real_data_dir):
    ds = load_dataset(DataConfig(dataset="binarized-mnist", data_dir=str(real_data_dir), train_examples=1000,
                                 eval_examples=1000))
    assert ds.binarize == "dynamic" and ds.train.images.shape == (1000, 1, 28, 28)
    assert set(ds.test.images.unique().tolist()) == {0.0, 1.0}
