"""The sweep runner on tiny data: expansion, parallel workers, SIGTERM halfway, re-launch."""

import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import make_tiny_dataset
from vaelab.cli import main
from vaelab.errors import ConfigError
from vaelab.experiments import load_sweep, run_name, run_sweep, summarize_sweep

REPO = Path(__file__).resolve().parents[2]


def spec(root, **extra):
    return {
        "name": "grid",
        "base": {"data": {"dataset": "tiny-mnist", "data_dir": str(root)},
                 "model": {"hidden": [16]}, "training": {"batch_size": 16, "epochs": 2, "progress": False}},
        "grid": {"model.latent_dim": [1, 2], "objective.beta": [0.5, 1.0]},
        "seeds": [1, 2],
        "budgets": {"quick": {"training.epochs": 3}, "full": {"training.epochs": 4}},
        **extra,
    }


def test_expansion_names_and_budgets(tmp_path):
    sweep = load_sweep(spec(tmp_path), "quick", tmp_path / "out")
    assert len(sweep.runs) == 8
    assert sweep.runs[0].name == "latent_dim=1-beta=0.5-seed1"
    assert sweep.runs[0].config["training"]["epochs"] == 3
    assert sweep.runs[0].config["output_dir"] == str(tmp_path / "out" / "grid" / "runs")
    assert load_sweep(spec(tmp_path), "full").runs[0].config["training"]["epochs"] == 4
    variants = load_sweep({**spec(tmp_path), "grid": {}, "variants": [{"name": "cnn", "model.network": "conv3"},
                                                                      {"name": "mlp"}]})
    assert [r.name for r in variants.runs] == ["cnn-network=conv3-seed1", "cnn-network=conv3-seed2",
                                                "mlp-seed1", "mlp-seed2"]
    assert run_name({"model.hidden": [512, 256]}, 3) == "hidden=512x256-seed3"


def test_invalid_sweeps_are_rejected_before_anything_runs(tmp_path):
    with pytest.raises(ConfigError, match="unknown sweep keys grids"):
        load_sweep({"grids": {}})
    with pytest.raises(ConfigError, match=r"latent_dim=0-seed1: invalid config: model.latent_dim must be >= 1"):
        load_sweep({**spec(tmp_path), "grid": {"model.latent_dim": [0]}})
    with pytest.raises(ConfigError, match="unknown budget 'huge'"):
        load_sweep(spec(tmp_path), "huge")


@pytest.mark.slow
def test_sigterm_halfway_then_relaunch_completes_without_repeating_runs(tmp_path):
    root = tmp_path / "data"
    make_tiny_dataset(root)
    sweep_file = tmp_path / "grid.yaml"
    sweep_file.write_text(json.dumps(spec(root)))
    out = tmp_path / "out"
    code = ("import sys, functools; from pathlib import Path; from tests.conftest import make_tiny_dataset; "
            "from vaelab.experiments import run_sweep, load_sweep; root = Path(sys.argv[1]); "
            "make_tiny_dataset(root); "
            "run_sweep(load_sweep(sys.argv[2], 'quick', sys.argv[3]), 2, verbose=False, "
            "worker_init=functools.partial(make_tiny_dataset, root))")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(root), str(sweep_file), str(out)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = out / "grid" / "runs"
    deadline = time.monotonic() + 120
    while not list(runs.glob("*/summary.json")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "sweep stopped by SIGTERM" in err
    finished = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/summary.json")}
    assert 1 <= len(finished) < 8

    summary = run_sweep(load_sweep(sweep_file, "quick", out), 2, verbose=False,
                        worker_init=functools.partial(make_tiny_dataset, root))
    assert {name for name, status in summary["statuses"].items() if status == "skipped"} == set(finished)
    assert all(status in ("done", "skipped") for status in summary["statuses"].values())
    for name, mtime in finished.items():
        assert (runs / name / "summary.json").stat().st_mtime_ns == mtime  # not trained again
    table = summary["table"]
    assert len(table) == 4 and all(row["seeds"] == 2 for row in table)
    assert all(row["test_neg_elbo_std"] >= 0 for row in table)
    md = (out / "grid" / "results.md").read_text()
    assert "| latent_dim=1-beta=0.5 | 2 |" in md and "±" in md
    assert (out / "grid" / "results.csv").read_text().count("\n") == 5
    assert main(["sweep-summary", str(out / "grid")]) == 0


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path):
    root = tmp_path / "data"
    make_tiny_dataset(root)
    bad = {**spec(root), "grid": {"training.batch_size": [16, 500]}, "seeds": [1]}  # 500 > 96 examples
    summary = run_sweep(load_sweep(bad, "quick", tmp_path / "out"), 1, verbose=False,
                        worker_init=functools.partial(make_tiny_dataset, root))
    assert summary["statuses"] == {"batch_size=16-seed1": "done", "batch_size=500-seed1": "failed"}
    error = (tmp_path / "out" / "grid" / "runs" / "batch_size=500-seed1" / "error.txt").read_text()
    assert "training.batch_size=500 is larger than the training set" in error
    assert summary["unfinished"] == ["batch_size=500-seed1"]
    assert summarize_sweep(tmp_path / "out" / "grid")["unfinished"] == ["batch_size=500-seed1"]
