"""Checks on the real datasets; skipped when no data directory is configured (CI sets
VAELAB_DATA_DIR=../shared/data)."""

import csv
import json

import pytest
import torch

from vaelab.cli import main
from vaelab.config import DataConfig
from vaelab.data import get_spec, load_dataset
from vaelab.data.registry import fetch_file
from vaelab.data.idx import sha256_hex

MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.mark.slow
def test_mnist_shapes_labels_and_checksums(real_data_dir):
    spec = get_spec("mnist")
    for role, file in spec.files.items():
        assert sha256_hex(fetch_file(spec, role, real_data_dir)) == file.sha256
    ds = load_dataset(DataConfig(dataset="mnist", data_dir=str(real_data_dir)))
    assert ds.train.images.shape == (60000, 1, 28, 28) and ds.test.images.shape == (10000, 1, 28, 28)
    assert ds.train.images.dtype == torch.float32
    assert ds.train.images.min() == 0 and ds.train.images.max() == 1
    assert torch.bincount(ds.test.labels).tolist() == MNIST_TEST_COUNTS
    assert torch.bincount(ds.train.labels).sum() == 60000
    assert ds.train.images.mean().item() * 255 == pytest.approx(33.32, abs=0.01)  # README: pixel mean


@pytest.mark.slow
def test_fashion_mnist_loads(real_data_dir):
    ds = load_dataset(DataConfig(dataset="fashion-mnist", data_dir=str(real_data_dir)))
    assert ds.train.images.shape == (60000, 1, 28, 28) and ds.test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(ds.test.labels).tolist() == [1000] * 10


@pytest.mark.slow
@pytest.mark.figures
def test_one_epoch_on_a_slice_of_real_mnist(real_data_dir, tmp_path):
    status = main(["train", "--data-dir", str(real_data_dir), "--train-examples", "3000", "--eval-examples",
                   "1000", "--epochs", "2", "--latent-dim", "2", "--no-progress", "--quiet",
                   "--output-dir", str(tmp_path), "--name", "real"])
    assert status == 0
    rows = list(csv.DictReader((tmp_path / "real" / "metrics.csv").open()))
    first, last = float(rows[0]["test_neg_elbo"]), float(rows[-1]["test_neg_elbo"])
    # an untrained model costs 784 * log 2 = 543 nats; two short epochs get well below
    assert last < first < 543
    assert json.loads((tmp_path / "real" / "summary.json").read_text())["best_epoch"] == 2
    assert (tmp_path / "real" / "figures" / "latent_scatter.png").is_file()
