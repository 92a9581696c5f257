"""The `vaelab` command end to end on a tiny synthetic dataset."""

import csv
import json

import pytest
import yaml

from vaelab.cli import main

TINY = ["--dataset", "tiny-mnist", "--hidden", "16", "--batch-size", "32", "--no-progress"]


def run_files(run_dir):
    return {p.relative_to(run_dir).as_posix() for p in run_dir.rglob("*") if p.is_file()}


@pytest.mark.figures
def test_one_epoch_writes_every_file(tiny_data, tmp_path, capsys):
    root, _ = tiny_data
    status = main(["train", *TINY, "--data-dir", str(root), "--latent-dim", "2", "--epochs", "1",
                   "--output-dir", str(tmp_path / "runs"), "--name", "one"])
    assert status == 0
    run_dir = tmp_path / "runs" / "one"
    files = run_files(run_dir)
    for name in ["config.yaml", "environment.json", "metrics.csv", "summary.json",
                 "checkpoints/last.safetensors", "checkpoints/best.safetensors",
                 "figures/loss_curves.png", "figures/reconstructions.png", "figures/samples.png",
                 "figures/latent_manifold.png", "figures/latent_scatter.png"]:
        assert name in files, name
    assert any(f.startswith("tensorboard/events.out.tfevents") for f in files)
    for png in run_dir.glob("figures/*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    assert len(rows) == 1 and set(rows[0]) == {
        "epoch", "train_recon", "train_kl", "train_neg_elbo", "test_recon", "test_kl", "test_neg_elbo",
        "kl_weight", "learning_rate", "train_seconds"}
    row = {k: float(v) for k, v in rows[0].items()}
    assert row["test_neg_elbo"] == pytest.approx(row["test_recon"] + row["test_kl"])
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["model"]["latent_dim"] == 2 and config["data"]["dataset"] == "tiny-mnist"
    env = json.loads((run_dir / "environment.json").read_text())
    assert env["seed"] == 1 and env["torch"] and env["command"][:2] == ["vaelab", "train"]
    out = capsys.readouterr().out
    assert "best epoch 1: test -ELBO" in out and f"run directory: {run_dir}" in out
    # the written config reproduces the run: same seed, same numbers
    assert main(["train", "--config", str(run_dir / "config.yaml"), "--name", "again"]) == 0
    again = list(csv.DictReader((tmp_path / "runs" / "again" / "metrics.csv").open()))
    assert again[0]["test_neg_elbo"] == rows[0]["test_neg_elbo"]


def test_resume_continues_from_the_saved_epoch_exactly(tiny_data, tmp_path):
    root, _ = tiny_data
    common = [*TINY, "--data-dir", str(root), "--output-dir", str(tmp_path), "--binarize", "dynamic"]
    assert main(["train", *common, "--epochs", "3", "--name", "straight"]) == 0
    assert main(["train", *common, "--epochs", "1", "--name", "split"]) == 0
    assert main(["train", "--resume", str(tmp_path / "split"), "--epochs", "3"]) == 0
    straight = list(csv.DictReader((tmp_path / "straight" / "metrics.csv").open()))
    split = list(csv.DictReader((tmp_path / "split" / "metrics.csv").open()))
    assert [r["epoch"] for r in split] == ["1", "2", "3"]
    for a, b in zip(straight, split):
        a.pop("train_seconds"), b.pop("train_seconds")
        assert a == b
    summary = json.loads((tmp_path / "split" / "summary.json").read_text())
    assert summary["epochs"] == 3


def test_existing_run_directory_is_not_overwritten(tiny_data, tmp_path, capsys):
    root, _ = tiny_data
    args = ["train", *TINY, "--data-dir", str(root), "--epochs", "1", "--output-dir", str(tmp_path), "--name", "r"]
    assert main(args) == 0
    before = (tmp_path / "r" / "metrics.csv").read_bytes()
    assert main(args) == 2
    assert "already holds a run; continue it with `vaelab train --resume" in capsys.readouterr().err
    assert (tmp_path / "r" / "metrics.csv").read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["--latent-dim", "0"], "model.latent_dim must be >= 1 (got 0)"),
    (["--learning-rate", "-1"], "training.learning_rate must be > 0"),
    (["--beta", "-2"], "objective.beta must be >= 0"),
    (["--batch-size", "500"], "training.batch_size=500 is larger than the training set (96 examples)"),
    (["--set", "model.latnt_dim=3"], "did you mean model.latent_dim?"),
    (["--dataset", "mnst"], "unknown dataset 'mnst'; did you mean mnist?"),
    (["--device", "cuda:0"], "no CUDA device is available"),
])
def test_bad_values_are_rejected_with_one_clear_line(tiny_data, tmp_path, capsys, args, message):
    root, _ = tiny_data
    status = main(["train", *TINY, "--data-dir", str(root), "--output-dir", str(tmp_path), *args])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("vaelab: error: ") and message in err
    assert "Traceback" not in err
    assert not any(tmp_path.glob("*/checkpoints"))


def test_argparse_rejects_malformed_numbers(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--epochs", "ten"])
    assert info.value.code == 2
    assert "argument --epochs: invalid int value: 'ten'" in capsys.readouterr().err


def test_resume_refuses_changes_to_the_model(tiny_data, tmp_path, capsys):
    root, _ = tiny_data
    assert main(["train", *TINY, "--data-dir", str(root), "--epochs", "1", "--output-dir", str(tmp_path), "--name", "r"]) == 0
    assert main(["train", "--resume", str(tmp_path / "r"), "--latent-dim", "5"]) == 2
    assert "cannot change model.latent_dim when resuming" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "missing")]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_help_lists_options_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for text in ["--latent-dim N", "(default: 20)", "--learning-rate X", "(default: 0.001)", "--binarize",
                 "--data-dir", "--resume RUN_DIR", "--output-dir", "(default: runs)", "nats per example"]:
        assert text in out, text


def test_likelihoods_that_cannot_model_the_loaded_data_are_rejected(tiny_data, tmp_path, capsys):
    from dataclasses import replace

    from vaelab.data import register_dataset

    root, spec = tiny_data
    register_dataset(replace(spec, name="tiny-binarized", binarize="dynamic"))
    (root / "tiny-binarized").symlink_to(root / spec.name)
    status = main(["train", "--dataset", "tiny-binarized", "--data-dir", str(root), "--likelihood", "logit_normal",
                   "--output-dir", str(tmp_path), "--batch-size", "32"])
    assert status == 2 and "cannot model binarised data (tiny-binarized is binarised: dynamic)" in capsys.readouterr().err
    status = main(["train", "--dataset", "toy2d", "--toy2d-range", "symmetric", "--output-dir", str(tmp_path),
                   "--latent-dim", "2"])
    assert status == 2 and "use --likelihood gaussian or laplace" in capsys.readouterr().err
