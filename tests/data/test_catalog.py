"""The registered datasets: listing, the binarized-mnist alias, folder names, and one CLI epoch
on each dataset that needs no real files (toy2d, digits) or has a synthetic stand-in (Frey)."""

import csv
from dataclasses import replace

import pytest
import torch

from vaelab.cli import main
from vaelab.config import DataConfig
from vaelab.data import dataset_names, get_spec, load_dataset, register_dataset
from vaelab.data.registry import fetch_file
from vaelab.errors import ConfigError

ALL = ["binarized-mnist", "cifar10", "cifar10-8x8", "digits", "fashion-mnist", "frey", "mnist", "svhn", "toy2d"]


def test_every_dataset_is_listed(capsys):
    assert set(ALL) <= set(dataset_names())
    assert main(["datasets"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert set(ALL) <= set(listed)


def test_binarized_mnist_is_mnist_with_dynamic_binarisation():
    alias, mnist = get_spec("binarized-mnist"), get_spec("mnist")
    assert alias.files == mnist.files and alias.dirnames == ("mnist",) and alias.mirrors == mnist.mirrors
    assert alias.binarize == "dynamic" and mnist.binarize is None


@pytest.fixture
def tiny_alias(tiny_data):
    root, spec = tiny_data
    return root, register_dataset(replace(spec, name="tiny-binarized", folders=(spec.name,), binarize="dynamic"))


def test_an_alias_binarises_dynamically_and_rejects_a_conflicting_mode(tiny_alias):
    root, spec = tiny_alias
    for mode in ("none", "dynamic"):  # unset (the default) or the same mode
        ds = load_dataset(DataConfig(dataset=spec.name, data_dir=str(root), binarize=mode))
        assert ds.binarize == "dynamic"
        assert not set(ds.train.images.unique().tolist()) <= {0.0, 1.0}  # drawn afresh per batch
        assert set(ds.test.images.unique().tolist()) <= {0.0, 1.0}  # evaluation drawn once
    with pytest.raises(ConfigError) as info:
        load_dataset(DataConfig(dataset=spec.name, data_dir=str(root), binarize="static"))
    assert str(info.value) == (
        "data.binarize=static conflicts with data.dataset=tiny-binarized, which means dynamic binarisation; "
        "leave data.binarize unset, or use a dataset without implied binarisation "
        "(e.g. data.dataset=tiny-mnist data.binarize=static)")
    assert load_dataset(DataConfig(dataset="tiny-mnist", data_dir=str(root))).binarize == "none"


def test_files_are_found_under_any_of_the_dataset_folders(tiny_frey, tmp_path):
    root, spec, _ = tiny_frey
    assert (root / "tiny-frey-faces" / "frey_rawface.mat").is_file()  # the second folder name
    assert fetch_file(spec, "faces", root)
    (root / "tiny-frey-faces").rename(tmp_path / "flat")  # or directly in DIR
    assert fetch_file(spec, "faces", tmp_path / "flat")


def cli_epoch(tmp_path, *options):
    status = main(["train", *options, "--epochs", "1", "--no-progress", "--quiet",
                   "--output-dir", str(tmp_path / "runs"), "--name", "run"])
    assert status == 0
    rows = list(csv.DictReader((tmp_path / "runs" / "run" / "metrics.csv").open()))
    return {k: float(v) for k, v in rows[0].items()}


@pytest.mark.figures
def test_cli_epoch_on_toy2d(tmp_path):
    row = cli_epoch(tmp_path, "--dataset", "toy2d", "--latent-dim", "2", "--hidden", "32",
                    "--toy2d-train-size", "512", "--toy2d-test-size", "256")
    assert torch.isfinite(torch.tensor(row["test_neg_elbo"]))
    assert (tmp_path / "runs" / "run" / "figures" / "latent_scatter.png").is_file()


def test_cli_epoch_on_synthetic_frey(tiny_frey, tmp_path):
    root, spec, _ = tiny_frey
    row = cli_epoch(tmp_path, "--dataset", spec.name, "--data-dir", str(root), "--hidden", "32")
    assert 0 < row["test_neg_elbo"] < 560 * 2  # random uint8 pixels: about 560 log 2 = 388 nats
