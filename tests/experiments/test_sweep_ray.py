"""The Ray backend of sweeps on a local 2-CPU Ray instance: the same results as the local
backend, a worker killed mid-run is retried and resumes from the run's checkpoint, and a
missing Ray gives one line."""

import csv
import functools
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from vaelab.cli import main
from vaelab.errors import ConfigError, VaelabError
from vaelab.experiments import load_sweep, run_sweep
from vaelab import train

REPO = Path(__file__).resolve().parents[2]


def toy_sweep(**extra) -> dict:
    """4 tiny toy2d runs: 2 latent sizes x 2 seeds, 2 epochs of 10 steps, checkpoints every 3 steps."""
    return {
        "name": "toy",
        "base": {"data": {"dataset": "toy2d", "toy2d_train_size": 200, "toy2d_test_size": 100},
                 "model": {"hidden": [8]},
                 "training": {"epochs": 2, "batch_size": 20, "checkpoint_every_steps": 3, "progress": False,
                              "logger": "csv"},
                 "figures": {"draw_at_end": False}},
        "grid": {"model.latent_dim": [1, 2]},
        "seeds": [1, 2],
        **extra,
    }


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance of 2 CPUs on 127.0.0.1, shared by this module's tests and shut down
    after them. Its workers import this checkout (src and the repository root on PYTHONPATH)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vaelab[ray]')")
    with pytest.MonkeyPatch.context() as patch:  # the workers inherit the environment of ray.init
        patch.setenv("PYTHONPATH", os.pathsep.join([str(REPO / "src"), str(REPO)]))
        patch.setenv("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 logging_level="WARNING", log_to_driver=False)
    yield ray
    ray.shutdown()


def final_metrics(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    return {k: summary[k] for k in ("epochs", "best_epoch", "best", "final", "final_train")}


def results_without_timing(sweep_dir: Path) -> list[dict]:
    """results.csv without its seconds_per_epoch columns (wall-clock time differs between runs)."""
    with open(sweep_dir / "results.csv", newline="") as f:
        return [{k: v for k, v in row.items() if not k.startswith("seconds_per_epoch")} for row in csv.DictReader(f)]


def test_ray_backend_gives_the_results_of_the_local_backend(ray_instance, tmp_path):
    import torch

    local = run_sweep(load_sweep(toy_sweep(), "quick", tmp_path / "local"), 2, verbose=False,
                      worker_init=functools.partial(torch.set_num_threads, 1))
    on_ray = run_sweep(load_sweep(toy_sweep(), "quick", tmp_path / "ray"), verbose=False, backend="ray",
                       cpus_per_run=1)
    assert set(on_ray["statuses"].values()) == {"done"} and len(on_ray["statuses"]) == 4
    assert on_ray["statuses"] == local["statuses"]
    assert results_without_timing(tmp_path / "ray" / "toy") == results_without_timing(tmp_path / "local" / "toy")
    for run_dir in sorted((tmp_path / "local" / "toy" / "runs").iterdir()):
        assert final_metrics(tmp_path / "ray" / "toy" / "runs" / run_dir.name) == final_metrics(run_dir)
        environment = json.loads((tmp_path / "ray" / "toy" / "runs" / run_dir.name / "environment.json").read_text())
        assert environment["device"] == "cpu" and environment["torch_threads"] == 1

    # a re-launch skips every finished run
    again = run_sweep(load_sweep(toy_sweep(), "quick", tmp_path / "ray"), verbose=False, backend="ray")
    assert set(again["statuses"].values()) == {"skipped"}


KILLED = "latent_dim=2-seed1"


def kill_after_first_checkpoint(log: str) -> None:
    """worker_init of the kill test, run in every Ray task: the first time run KILLED writes a
    checkpoint, its worker process gets SIGKILL right after; reading a checkpoint back is logged."""
    import vaelab.training.runs as runs
    import vaelab.training.trainer as trainer

    if getattr(trainer, "_test_patched", False):  # a Ray worker process runs task after task
        return
    trainer._test_patched = True
    write, read = trainer.write_checkpoint, runs.read_checkpoint

    def write_then_die(paths, payload):
        write(paths, payload)
        if KILLED in str(paths[0]) and not os.path.exists(log):
            with open(log, "a") as f:
                f.write(f"killed {os.getpid()} after writing {paths[0]}\n")
            os.kill(os.getpid(), signal.SIGKILL)

    def logged_read(path):
        if KILLED in str(path) and os.path.exists(log):
            with open(log, "a") as f:
                f.write(f"read {path}\n")
        return read(path)

    trainer.write_checkpoint, runs.read_checkpoint = write_then_die, logged_read


def test_a_killed_worker_is_retried_and_resumes_to_the_uninterrupted_metrics(ray_instance, tmp_path):
    log = tmp_path / "kill.log"
    sweep = load_sweep(toy_sweep(grid={"model.latent_dim": [2]}), "quick", tmp_path / "ray")
    summary = run_sweep(sweep, verbose=False, backend="ray",
                        worker_init=functools.partial(kill_after_first_checkpoint, str(log)))
    assert summary["statuses"] == {KILLED: "done", "latent_dim=2-seed2": "done"}
    lines = log.read_text().splitlines()
    run_dir = tmp_path / "ray" / "toy" / "runs" / KILLED
    last = run_dir / "checkpoints" / "last.safetensors"
    assert lines[0].startswith("killed ") and lines[0].endswith(f"after writing {last}")
    assert lines[1] == f"read {last}"  # the retry resumed from the checkpoint the killed worker wrote

    config = next(r.config for r in sweep.runs if r.name == KILLED)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        reference = train({**config, "output_dir": str(tmp_path / "reference")}, verbose=False)
    finally:
        torch.set_num_threads(threads)
    assert final_metrics(run_dir) == final_metrics(reference.run_dir)
    assert [row.split(",")[0] for row in (run_dir / "metrics.csv").read_text().splitlines()[1:]] == ["1", "2"]


@pytest.mark.parametrize("gpu_ids, device", [([], "cpu"), ([0], "cuda"), (["1"], "cuda")])
def test_a_ray_task_trains_on_its_gpu_if_it_has_one_with_its_cpus_as_threads(gpu_ids, device, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'vaelab[ray]')")
    import torch

    import vaelab.experiments.sweep_runner as sweep_module

    seen = {}

    def fake_train_one(config, device=None):
        seen.update(device=device, threads=torch.get_num_threads(), stopping=sweep_module._STOPPING,
                    sigint=signal.getsignal(signal.SIGINT))
        return {"status": "done", "seconds": 0.0}

    monkeypatch.setattr(ray, "get_gpu_ids", lambda: gpu_ids)
    monkeypatch.setattr(sweep_module, "_train_one", fake_train_one)
    monkeypatch.setattr(sweep_module, "_STOPPING", True)  # left over from a task of an earlier sweep
    threads, handler = torch.get_num_threads(), signal.getsignal(signal.SIGINT)
    try:
        assert sweep_module._ray_run({"name": "r"}, 3, None) == {"status": "done", "seconds": 0.0}
        assert seen == {"device": device, "threads": 3, "stopping": False, "sigint": sweep_module._stop_worker}
        assert signal.getsignal(signal.SIGINT) is handler  # the worker's own handler is back
    finally:
        torch.set_num_threads(threads)


def test_backend_ray_without_ray_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    sweep_file = tmp_path / "toy.yaml"
    sweep_file.write_text(json.dumps(toy_sweep()))
    assert main(["sweep", str(sweep_file), "--backend", "ray", "--output-dir", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == "vaelab: error: --backend ray needs Ray: pip install 'vaelab[ray]'\n"
    assert not (tmp_path / "out").exists()


def test_runs_that_ask_for_more_than_the_machine_has_are_refused(ray_instance, tmp_path):
    sweep = load_sweep(toy_sweep(), "quick", tmp_path / "out")
    with pytest.raises(ConfigError, match=r"each run asks for 3 CPUs \(--cpus-per-run\) but the largest node "
                                          r"of the Ray cluster has 2; ask for at most 2"):
        run_sweep(sweep, verbose=False, backend="ray", cpus_per_run=3)
    with pytest.raises(ConfigError, match=r"each run asks for 1 GPUs \(--gpus-per-run\) but the largest node "
                                          r"of the Ray cluster has 0; ask for at most 0"):
        run_sweep(sweep, verbose=False, backend="ray", gpus_per_run=1)
    assert not (tmp_path / "out").exists()
    assert ray_instance.is_initialized()  # an instance this process was connected to stays up


def test_an_unreachable_ray_address_is_one_line():
    from vaelab.experiments.sweep_runner import _check_reachable

    with pytest.raises(VaelabError, match=r"^cannot reach the Ray cluster at 127.0.0.1:1 \(Connection refused\); "
                                          r"check the address"):
        _check_reachable("127.0.0.1:1")
    with pytest.raises(VaelabError, match=r"ray_address 'head' is not auto or HOST:PORT"):
        _check_reachable("head")


def test_ray_options_need_the_ray_backend(tmp_path, capsys):
    sweep_file = tmp_path / "toy.yaml"
    sweep_file.write_text(json.dumps(toy_sweep()))
    assert main(["sweep", str(sweep_file), "--cpus-per-run", "2"]) == 2
    assert capsys.readouterr().err == ("vaelab: error: --cpus-per-run apply to --backend ray only; add "
                                       "--backend ray or leave them out\n")
    assert main(["sweep", str(sweep_file), "--backend", "ray", "--jobs", "2"]) == 2
    assert "--jobs applies to --backend local" in capsys.readouterr().err


@pytest.mark.slow
def test_ctrl_c_cancels_the_tasks_and_a_relaunch_resumes(ray_instance, tmp_path):
    # `vaelab sweep --backend ray`, in a session of its own, starts its own local Ray instance;
    # Ctrl-C (SIGINT to the process group, as a terminal sends it) while the first two runs
    # train cancels the tasks: the queued runs never start, the running ones checkpoint and stop
    import subprocess
    import time

    sweep = toy_sweep()
    sweep["base"]["training"]["epochs"] = 20
    sweep_file = tmp_path / "toy.yaml"
    sweep_file.write_text(json.dumps(sweep))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), str(REPO)]), "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.Popen([sys.executable, "-m", "vaelab", "sweep", str(sweep_file), "--backend", "ray",
                             "--output-dir", str(out)], cwd=tmp_path, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = out / "toy" / "runs"
    deadline = time.monotonic() + 180
    while not list(runs.glob("*/metrics.csv")):  # a run has finished its first epoch
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, err = proc.communicate(timeout=180)
    assert proc.returncode == 130 and "sweep stopped by SIGINT" in err, err
    assert "runs, Ray tasks of 1 CPU each on 1 node(s) with" in stdout
    finished = {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/summary.json")}
    interrupted = sorted(p.parent.name for p in runs.glob("*/error.txt"))
    assert interrupted and len(finished) < 3
    for name in interrupted:
        assert "stopped by SIGINT" in (runs / name / "error.txt").read_text()
        assert (runs / name / "checkpoints" / "last.safetensors").is_file()
    assert sorted(p.name for p in runs.iterdir()) == sorted([*finished, *interrupted])  # the others never started

    assert main(["sweep", str(sweep_file), "--backend", "ray", "--output-dir", str(out), "--quiet"]) == 0
    assert {p.parent.name for p in runs.glob("*/summary.json")} == {r.name for r in load_sweep(sweep).runs}
    assert not list(runs.glob("*/error.txt"))  # the interrupted runs resumed and finished
    for name, mtime in finished.items():
        assert (runs / name / "summary.json").stat().st_mtime_ns == mtime  # not trained again
    for name in interrupted:
        epochs = [row.split(",")[0] for row in (runs / name / "metrics.csv").read_text().splitlines()[1:]]
        assert epochs == [str(e) for e in range(1, 21)]
