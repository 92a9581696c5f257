"""`vaelab evaluate` end to end on a tiny run, and its errors."""

import json
import math

import pytest

import vaelab
from vaelab.cli import main

TINY = ["--dataset", "tiny-mnist", "--hidden", "16", "--batch-size", "32", "--no-progress", "--quiet"]


@pytest.fixture
def tiny_run(tiny_data, tmp_path):
    root, _ = tiny_data
    assert main(["train", *TINY, "--data-dir", str(root), "--epochs", "1", "--latent-dim", "3",
                 "--binarize", "dynamic", "--output-dir", str(tmp_path / "runs"), "--name", "r"]) == 0
    return tmp_path / "runs" / "r"


def test_evaluate_writes_every_metric_and_prints_a_table(tiny_run, tiny_data, capsys):
    root, _ = tiny_data
    assert main(["classifier", "train", "--dataset", "tiny-mnist", "--data-dir", str(root), "--epochs", "1",
                 "--channels", "2", "2", "4", "4", "--hidden", "8"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(tiny_run), "--k", "50", "--fid-samples", "64", "--probe-train-examples", "60"]) == 0
    out = capsys.readouterr().out
    for text in ["-ELBO", "NLL (IWAE, K=50)", "bits/dim", "active units", "KL per dim", "probe accuracy, logistic",
                 "fid_classifier", "sample class histogram", "nats/example"]:
        assert text in out, text
    results = json.loads((tiny_run / "evaluation.json").read_text())
    assert (results["split"], results["examples"], results["k"], results["binarize"]) == ("test", 40, 50, "dynamic")
    assert results["neg_elbo"] == pytest.approx(results["recon"] + results["kl"])
    assert results["nll_iwae"] <= results["neg_elbo"] + 3 * results["neg_elbo_stderr"]
    assert results["bits_per_dim"] == pytest.approx(results["nll_iwae"] / (784 * math.log(2)))
    latent = results["latent"]
    assert len(latent["kl_per_dim"]) == 3 and 0 <= latent["active_units"] <= 3
    assert sum(latent["kl_per_dim"]) == pytest.approx(results["kl"], rel=1e-5)
    assert 0 <= results["probe"]["logistic_accuracy"] <= 1 and results["probe"]["train_examples"] == 60
    samples = results["samples"]
    assert sum(samples["class_histogram"]) == 64 and samples["fid_classifier"] >= 0
    assert 0 <= samples["class_entropy_nats"] <= math.log(10) + 1e-9
    # the same numbers from Python, for another split and without the sample block
    evaluation = vaelab.evaluate(tiny_run, k=50, split="train", examples=20, fid="none", verbose=False)
    assert evaluation.path.name == "evaluation-train.json" and evaluation["samples"] is None
    assert evaluation["probe"] is None and evaluation["examples"] == 20


def test_evaluate_is_reproducible_with_its_seed(tiny_run):
    a = vaelab.evaluate(tiny_run, k=20, fid="none", probe=False, verbose=False)
    b = vaelab.evaluate(tiny_run, k=20, fid="none", probe=False, verbose=False, batch_size=7, chunk_size=33)
    assert a["nll_iwae"] == pytest.approx(b["nll_iwae"], abs=1e-4)  # noise per example, not per batch


def test_errors_are_one_clear_line(tiny_run, tmp_path, capsys):
    cases = [
        (["evaluate", str(tmp_path / "nowhere")], "run directory", "does not exist"),
        (["evaluate", str(tmp_path)], "is not a run directory (no config.yaml)", ""),
        (["evaluate", str(tiny_run), "--k", "0"], "k must be between 1 and 100,000 (got 0)", ""),
        (["evaluate", str(tiny_run), "--split", "val"], "no validation split", "--split test"),
        (["evaluate", str(tiny_run), "--fid", "classifier"], "no tiny-mnist classifier",
         "train one with `vaelab classifier train --dataset tiny-mnist`"),
        (["evaluate", str(tiny_run), "--fid", "inception", "--inception-weights", str(tmp_path / "w.pth")],
         "--fid inception needs", "--fid classifier"),
    ]
    for args, first, second in cases:
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("vaelab: error: ") and first in err and second in err, err
        assert "Traceback" not in err and err.count("\n") == 1
    # --fid auto without a classifier: the rest is measured, with a note naming the command
    assert main(["evaluate", str(tiny_run), "--k", "5", "--examples", "5"]) == 0
    assert "note: sample quality skipped: no tiny-mnist classifier" in capsys.readouterr().out
    assert json.loads((tiny_run / "evaluation.json").read_text())["samples"] is None
    (tiny_run / "evaluation.json").unlink()
    (tiny_run / "checkpoints" / "best.safetensors").unlink()
    assert main(["evaluate", str(tiny_run)]) == 2
    assert "has no best checkpoint" in capsys.readouterr().err
    assert not (tiny_run / "evaluation.json").exists()


def test_a_dataset_implying_binarisation_is_evaluated_binarised_with_its_parent_classifier(tiny_data, tmp_path):
    from dataclasses import replace

    from vaelab.data import register_dataset
    from vaelab.evaluation.run import classifier_dataset

    root, spec = tiny_data
    register_dataset(replace(spec, name="tiny-binarized", folders=("tiny-mnist",), binarize="dynamic"))
    assert classifier_dataset("tiny-binarized") == "tiny-mnist" and classifier_dataset("tiny-mnist") == "tiny-mnist"
    runs = tmp_path / "runs"
    assert main(["train", *TINY[2:], "--dataset", "tiny-binarized", "--data-dir", str(root), "--epochs", "1",
                 "--output-dir", str(runs), "--name", "b"]) == 0
    assert main(["classifier", "train", "--dataset", "tiny-mnist", "--data-dir", str(root), "--epochs", "1",
                 "--channels", "2", "2", "4", "4", "--hidden", "8"]) == 0
    results = vaelab.evaluate(runs / "b", k=5, fid_samples=32, probe=False, verbose=False).results
    assert results["binarize"] == "dynamic" and not any("gray-level" in note for note in results["notes"])
    assert results["samples"]["fid_classifier"] >= 0  # scored with tiny-mnist's classifier


def test_a_run_on_your_own_data_file_evaluates(tmp_path):
    import numpy as np

    path = tmp_path / "mine.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.random((48, 8, 8), dtype=np.float32), x_test=rng.random((16, 8, 8), dtype=np.float32))
    assert main(["train", "--dataset", str(path), "--hidden", "8", "--latent-dim", "2", "--batch-size", "16",
                 "--epochs", "1", "--no-progress", "--logger", "csv", "--output-dir", str(tmp_path), "--name", "m"]) == 0
    assert main(["evaluate", str(tmp_path / "m"), "--k", "4", "--fid", "none", "--no-probe", "--quiet"]) == 0
    assert json.loads((tmp_path / "m" / "evaluation.json").read_text())["examples"] == 16
