"""Campaigns: a plan of sweeps run in order, killed with SIGKILL and relaunched, its results kept
as runs end, never trained twice, and its status and ledger."""

import csv
import functools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import make_tiny_dataset
from vaelab.cli import main
from vaelab.errors import ConfigError
from vaelab.experiments.campaign import campaign_status, format_status, load_plan, read_ledger, run_campaign
from vaelab.experiments.studies import kept_runs

REPO = Path(__file__).resolve().parents[2]


def write_plan(tmp_path: Path, root: Path, epochs: int = 4) -> Path:
    studies = tmp_path / "configs"
    studies.mkdir(exist_ok=True)
    base = {"data": {"dataset": "tiny-mnist", "data_dir": str(root)}, "model": {"hidden": [16], "latent_dim": 2},
            "training": {"batch_size": 16, "epochs": 2, "progress": False, "checkpoint_every_steps": 2, "logger": "csv"},
            "figures": {"draw_at_end": False}}
    first = {"name": "first", "base": base, "grid": {"objective.beta": [0.5, 1.0]}, "seeds": {"quick": [1], "full": [1, 2]},
             "budgets": {"quick": {}, "full": {"training.epochs": epochs}}, "figures": [{"kind": "samples"}]}
    second = {"name": "second", "base": base, "variants": [{"name": "plain"}], "seeds": [1, 2],
              "budgets": {"quick": {}, "full": {"training.epochs": epochs}}}
    (studies / "first.yaml").write_text(yaml.safe_dump(first))
    (studies / "second.yaml").write_text(yaml.safe_dump(second))
    plan = {"name": "toy", "output_dir": str(tmp_path / "runs"), "results_dir": str(tmp_path / "results"),
            "steps": [{"sweep": "first.yaml", "budget": "full"}, {"sweep": "second.yaml", "budget": "full"}]}
    path = studies / "plan.yaml"
    path.write_text(yaml.safe_dump(plan))
    return path


def metrics(run_dir: Path) -> list[dict]:
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    for row in rows:
        row.pop("train_seconds")
    return rows


def test_plans_are_checked_before_anything_runs(tmp_path):
    root = tmp_path / "data"
    plan = write_plan(tmp_path, root)
    assert [s.sweep.name for s in load_plan(plan).steps] == ["first.yaml", "second.yaml"]
    bad = tmp_path / "configs" / "bad.yaml"
    for text, message in [("steps: []", "needs a list of steps"),
                          ("steps: [{sweep: missing.yaml, budget: full}]", "missing.yaml does not exist"),
                          ("steps: [{sweep: first.yaml, budget: huge}]", "unknown budget 'huge'"),
                          ("steps: [{sweep: first.yaml}, {sweep: first.yaml, budget: full}]", "again"),
                          ("steps: [{sweep: first.yaml}]\nextra: 1", "unknown keys extra"),
                          ("steps: [first.yaml]", "must be a mapping")]:
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_plan(bad)
    assert main(["campaign", "status", str(tmp_path / "nowhere.yaml")]) == 2


@pytest.mark.slow
def test_sigkill_then_relaunch_keeps_every_run_once_with_uninterrupted_metrics(tmp_path):
    root = tmp_path / "data"
    make_tiny_dataset(root)
    plan = write_plan(tmp_path, root)
    code = ("import sys, functools; from pathlib import Path; from tests.conftest import make_tiny_dataset; "
            "from vaelab.experiments.campaign import run_campaign; root = Path(sys.argv[1]); "
            "make_tiny_dataset(root); "
            "run_campaign(sys.argv[2], jobs=2, threads=1, nice=0, verbose=False, "
            "worker_init=functools.partial(make_tiny_dataset, root))")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(root), str(plan)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    kept_dir = tmp_path / "results" / "full" / "first" / "runs"
    deadline = time.monotonic() + 180
    while not list(kept_dir.glob("*/summary.json")):  # one run kept, others training
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no run was kept"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the campaign and its workers, as a power cut would
    proc.communicate()
    kept_before = {p.parent.name for p in kept_dir.glob("*/summary.json")}
    assert 1 <= len(kept_before) < 4

    status = run_campaign(plan, jobs=2, threads=1, nice=0, verbose=False,
                          worker_init=functools.partial(make_tiny_dataset, root))
    assert status["runs_kept"] == status["runs"] == 6 and status["sweeps_done"] == 2
    ledger = read_ledger(load_plan(plan))
    trained = [r["run"] for r in ledger if r["status"] == "done"]
    # no run trained to its end twice (a run that ended just before the kill has no row: its
    # end was not recorded, but it was kept on relaunch, not trained again)
    assert len(trained) == len(set(trained)) >= 6 - len(kept_before) - 2
    assert {r["sweep"] for r in ledger if r["status"] == "exported"} == {"first", "second"}
    assert all(r["cpu_seconds"] > 0 for r in ledger if r["status"] == "done")
    saved = json.loads((tmp_path / "results" / "campaign" / "status.json").read_text())
    assert saved["runs_kept"] == 6 and saved["cpu_hours_spent"] > 0
    results = tmp_path / "results" / "full"
    for sweep, names in (("first", ["beta=0.5-seed1", "beta=0.5-seed2", "beta=1-seed1", "beta=1-seed2"]),
                         ("second", ["plain-seed1", "plain-seed2"])):
        assert sorted(p.name for p in (results / sweep / "runs").iterdir()) == names
        assert (results / sweep / "results.csv").is_file()
    assert sorted(p.name for p in (results / "first" / "figures" / "samples").iterdir()) == ["beta=0.5.png", "beta=1.png"]
    assert not list(results.glob(".*")), "no staging folder left"

    # the kept metrics are those of uninterrupted runs (resumed exactly after the kill)
    from vaelab.api import train
    from vaelab.experiments import load_sweep

    for run in load_sweep(tmp_path / "configs" / "first.yaml", "full", tmp_path / "straight").runs:
        make_tiny_dataset(root)
        train(run.config, verbose=False)
        assert metrics(results / "first" / "runs" / run.name) == metrics(tmp_path / "straight" / "first" / "runs" / run.name)

    # a fresh clone: only the kept results; nothing is trained again
    import shutil

    shutil.rmtree(tmp_path / "runs")
    again = run_campaign(plan, jobs=1, nice=0, verbose=False, worker_init=functools.partial(make_tiny_dataset, root))
    assert again["runs_kept"] == 6 and len(read_ledger(load_plan(plan))) == len(ledger)
    assert "2 of 2 sweeps done, 6 of 6 runs kept" in format_status(again)

    # an edited sweep file: its kept runs no longer count, and are trained again
    write_plan(tmp_path, root, epochs=3)
    assert kept_runs(tmp_path / "configs" / "second.yaml", "full", tmp_path / "results") == {}
    status = campaign_status(load_plan(plan))
    assert [s["kept"] for s in status["steps"]] == [0, 0]


def test_a_sigterm_while_the_kept_results_are_read_stops_the_campaign(tmp_path, monkeypatch):
    # reading a kept run catches vaelab's errors (an unreadable run is not kept): the stop must
    # not be one of them, or the campaign trains on, and trains that run again
    import vaelab.rundir
    from vaelab.errors import TrainingInterrupted

    root = tmp_path / "data"
    make_tiny_dataset(root)
    plan = write_plan(tmp_path, root, epochs=1)
    spec = yaml.safe_load(plan.read_text())
    plan.write_text(yaml.safe_dump({**spec, "steps": spec["steps"][1:]}))  # one sweep, two runs
    init = functools.partial(make_tiny_dataset, root)
    assert run_campaign(plan, jobs=1, nice=0, verbose=False, worker_init=init)["runs_kept"] == 2
    ledger = read_ledger(load_plan(plan))
    read_run = vaelab.rundir.read_run
    calls = []

    def read_run_then_sigterm(path):
        calls.append(path)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return read_run(path)

    monkeypatch.setattr(vaelab.rundir, "read_run", read_run_then_sigterm)
    with pytest.raises(TrainingInterrupted, match="campaign stopped"):
        run_campaign(plan, jobs=1, nice=0, verbose=False, worker_init=init)
    assert read_ledger(load_plan(plan)) == ledger  # nothing trained again
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_status_estimates_what_remains_from_the_quick_runs(tmp_path, capsys):
    root = tmp_path / "data"
    make_tiny_dataset(root)
    plan = write_plan(tmp_path, root)
    from vaelab.experiments.studies import export_sweep
    from vaelab.experiments import load_sweep, run_sweep

    sweep = load_sweep(tmp_path / "configs" / "second.yaml", "quick", tmp_path / "quick-runs" / "quick")
    run_sweep(sweep, 1, "quick", verbose=False, worker_init=functools.partial(make_tiny_dataset, root))
    export_sweep(tmp_path / "configs" / "second.yaml", tmp_path / "quick-runs", "quick", tmp_path / "results", verbose=False)
    status = campaign_status(load_plan(plan), jobs=2)
    first, second = status["steps"]
    assert first["hours_left"] is None and first["runs_without_estimate"] == 4  # no quick run to scale
    assert second["hours_left"] > 0 and second["runs_without_estimate"] == 0
    assert status["wall_hours_left"] == pytest.approx(status["worker_hours_left"] / 2, abs=0.01)
    assert main(["campaign", "status", str(plan), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == 6
