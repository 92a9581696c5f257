"""Trackers: MLflow against a real local SQLite store (read back with MLflow's client), W&B in
offline mode, the logger list, and the git commit in environment.json."""

import csv
import json
import subprocess
import sys

import pytest

import vaelab
from vaelab.cli import main
from vaelab.config import Config
from vaelab.errors import ConfigError

TINY = ["--dataset", "tiny-mnist", "--hidden", "16", "--latent-dim", "2", "--batch-size", "32",
        "--no-progress", "--quiet"]


def tiny_config(root, tmp_path, name, **training):
    return {"name": name, "output_dir": str(tmp_path / "runs"),
            "data": {"dataset": "tiny-mnist", "data_dir": str(root)},
            "model": {"hidden": [16], "latent_dim": 2},
            "training": {"epochs": 1, "batch_size": 32, "progress": False, **training}}


@pytest.mark.figures
def test_mlflow_logs_params_metrics_and_artifacts_to_a_local_sqlite_store(tiny_data, tmp_path):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'vaelab[mlflow]')")
    from mlflow.tracking import MlflowClient

    root, _ = tiny_data
    runs = tmp_path / "runs"
    assert main(["train", *TINY, "--data-dir", str(root), "--epochs", "2", "--output-dir", str(runs),
                 "--name", "m", "--logger", "tensorboard,csv,mlflow"]) == 0
    uri = f"sqlite:///{runs / 'mlflow.db'}"
    state = json.loads((runs / "m" / "trackers.json").read_text())["mlflow"]
    assert state["tracking_uri"] == uri
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(state["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "m"
    assert run.data.params["model.latent_dim"] == "2" and run.data.params["data.dataset"] == "tiny-mnist"
    rows = list(csv.DictReader((runs / "m" / "metrics.csv").open()))
    history = client.get_metric_history(run.info.run_id, "test_neg_elbo")
    assert [m.step for m in history] == [1, 2]
    assert [m.value for m in history] == pytest.approx([float(r["test_neg_elbo"]) for r in rows])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"figures", "checkpoints", "summary.json", "config.yaml"} <= artifacts
    assert "checkpoints/last.safetensors" in {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    assert "figures/samples.png" in {a.path for a in client.list_artifacts(run.info.run_id, "figures")}

    # a resumed run continues the same MLflow run
    assert main(["train", "--resume", str(runs / "m"), "--epochs", "3", "--quiet"]) == 0
    assert [m.step for m in client.get_metric_history(run.info.run_id, "test_neg_elbo")] == [1, 2, 3]
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_grouped_runs_share_one_mlflow_parent_run(tiny_data, tmp_path):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'vaelab[mlflow]')")
    from mlflow.tracking import MlflowClient

    root, _ = tiny_data
    ids = []
    for name in ("a", "b"):
        run = vaelab.train(tiny_config(root, tmp_path, name, logger="mlflow", tracker_group="g"), verbose=False)
        ids.append(json.loads((run.run_dir / "trackers.json").read_text())["mlflow"]["run_id"])
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    parents = {client.get_run(i).data.tags["mlflow.parentRunId"] for i in ids}
    assert len(parents) == 1
    parent = client.get_run(parents.pop())
    assert parent.info.run_name == "g" and parent.data.tags["vaelab.parent_of"] == "g"
    assert not (tmp_path / "runs" / "a" / "tensorboard").exists()  # --logger without tensorboard


def test_sweeps_group_their_runs_under_one_parent_made_before_the_workers(tiny_data, tmp_path):
    pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'vaelab[mlflow]')")
    from mlflow.tracking import MlflowClient

    from vaelab.experiments import load_sweep
    from vaelab.experiments.sweep_runner import _create_tracker_groups

    root, _ = tiny_data
    base = tiny_config(root, tmp_path, None, logger="csv,mlflow")
    del base["name"], base["output_dir"]
    sweep = load_sweep({"name": "widths", "base": base, "grid": {"model.hidden": [[8], [16]]}},
                       output_dir=str(tmp_path))
    assert {r.config["training"]["tracker_group"] for r in sweep.runs} == {"widths"}
    _create_tracker_groups(sweep)  # what run_sweep does first
    for run in sweep.runs:  # in this process instead of the workers
        vaelab.train(run.config, verbose=False)
    client = MlflowClient(tracking_uri=f"sqlite:///{sweep.directory / 'runs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("vaelab")
    parents = client.search_runs([experiment.experiment_id], "tags.`vaelab.parent_of` = 'widths'")
    children = client.search_runs([experiment.experiment_id], "tags.`vaelab.group` = 'widths'")
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}


def test_wandb_offline_writes_its_run_folder(tiny_data, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="wandb is not installed (pip install 'vaelab[wandb]')")
    for name in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: not logged in, so offline
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    root, _ = tiny_data
    run = vaelab.train(tiny_config(root, tmp_path, "w", logger="csv,wandb"), verbose=False)
    state = json.loads((run.run_dir / "trackers.json").read_text())["wandb"]
    assert state["mode"] == "offline"
    folders = list((run.run_dir / "wandb").glob("offline-run-*"))
    assert len(folders) == 1 and state["run_id"] in folders[0].name
    assert list(folders[0].glob("*.wandb"))  # the run's records, for `wandb sync`


def test_logger_names_are_checked_and_missing_packages_give_the_install_command(tiny_data, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match=r"unknown logger 'mlflw' \(did you mean mlflow\?\)"):
        Config.from_dict({"training": {"logger": "csv,mlflw"}})
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    root, _ = tiny_data
    with pytest.raises(ConfigError, match=r"pip install 'vaelab\[mlflow\]'"):
        vaelab.train(tiny_config(root, tmp_path, "x", logger="mlflow"), verbose=False)


def test_environment_records_the_git_commit_of_the_working_tree(tiny_data, tmp_path, monkeypatch):
    from vaelab.training.environment import git_state

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    (repo / "f.txt").write_text("x")
    subprocess.run([*git, "add", "f.txt"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "one"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert git_state(repo) == {"commit": head, "dirty": False, "root": str(repo)}
    (repo / "f.txt").write_text("changed")
    assert git_state(repo)["dirty"] is True
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert git_state(outside) is None
    monkeypatch.chdir(repo)
    root, _ = tiny_data
    run = vaelab.train(tiny_config(root, tmp_path, "g"), verbose=False)
    assert json.loads((run.run_dir / "environment.json").read_text())["git"]["commit"] == head
