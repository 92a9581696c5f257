"""Callbacks: a user's own callback sees every hook in order with the run's numbers, after the
run's own files are written, can stop the run (with the checkpoint written), and keeps its
state across a resume."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import pytest
import torch

import vaelab
from vaelab.api import run_callbacks
from vaelab.config import LOGGER_NAMES
from vaelab.errors import TrainingInterrupted
from vaelab.training import Callback, read_checkpoint
from vaelab.rundir import RunDir
from vaelab.training.callbacks import Checkpointing, Console, Logger, Progress, RunFiles, StopOnSignals

TINY = {"data": {"dataset": "tiny-mnist", "binarize": "dynamic"}, "model": {"latent_dim": 2, "hidden": [16]},
        "training": {"epochs": 2, "batch_size": 8, "progress": False}}


class Recorder(Callback):
    def __init__(self):
        self.calls: list[str] = []
        self.rows: list[dict] = []
        self.steps = 0

    def on_train_start(self, trainer):
        self.calls.append("train_start")

    def on_epoch_start(self, trainer, epoch):
        self.calls.append(f"epoch_start {epoch}")

    def on_batch_end(self, trainer, step):
        assert step.position.step >= 1 and step.batch_size > 0 and step.loss > 0
        self.steps += 1

    def on_epoch_end(self, trainer, row, improved):
        self.calls.append(f"epoch_end {row['epoch']}")
        self.rows.append(dict(row))

    def on_loop_end(self, trainer):
        self.calls.append("loop_end")

    def on_fit_end(self, trainer, summary):
        self.calls.append(f"fit_end {summary['epochs']}")


def test_a_users_callback_sees_every_hook_and_the_metrics_csv_rows(tiny_data, tmp_path):
    recorder = Recorder()
    root, _ = tiny_data
    config = {**TINY, "data": {**TINY["data"], "data_dir": str(root)}, "output_dir": str(tmp_path / "runs"),
              "name": "cb"}
    run = vaelab.train(config, verbose=False, callbacks=[recorder])
    assert recorder.calls == ["train_start", "epoch_start 1", "epoch_end 1", "epoch_start 2", "epoch_end 2",
                              "loop_end", "fit_end 2"]
    assert recorder.steps > 0
    with open(run.run_dir / "metrics.csv", newline="") as f:
        written = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
    assert [{k: float(v) for k, v in row.items()} for row in recorder.rows] == written


def test_a_callback_can_stop_the_run_and_the_checkpoint_is_written(tiny_data, tmp_path):
    class StopAfterThreeSteps(Callback):
        def on_batch_end(self, trainer, step):
            if step.position.step == 3:
                trainer.request_stop("stopped by my callback")

    root, _ = tiny_data
    config = {**TINY, "data": {**TINY["data"], "data_dir": str(root)}, "output_dir": str(tmp_path / "runs"),
              "name": "stop"}
    with pytest.raises(TrainingInterrupted, match=r"^stopped by my callback at epoch 1, step 3; checkpoint "
                                                  r"written to .*last.safetensors; continue with"):
        vaelab.train(config, verbose=False, callbacks=[StopAfterThreeSteps()])
    state = read_checkpoint(tmp_path / "runs" / "stop" / "checkpoints" / "last.safetensors").training_state
    assert state.epoch == 0 and state.position.step == 3
    run = vaelab.resume(tmp_path / "runs" / "stop", verbose=False)  # and it continues
    assert run.summary["epochs"] == 2


class Witness(Callback):
    """Looks at the run directory from a user's hooks, which run after the run's own."""

    def __init__(self):
        self.seen: list[tuple] = []

    def on_batch_end(self, trainer, step):
        if step.position.step % 4 == 0:  # a checkpoint and a steps.csv row at this step
            rows = list(csv.DictReader(trainer.run_dir.steps_csv.open()))
            position = read_checkpoint(trainer.run_dir.checkpoint("last")).training_state.position
            self.seen.append(("step", step.position.step, int(rows[-1]["step"]), position.step))

    def on_epoch_end(self, trainer, row, improved):
        rows = list(csv.DictReader(trainer.run_dir.metrics_csv.open()))
        state = read_checkpoint(trainer.run_dir.checkpoint("last")).training_state
        self.seen.append(("epoch", row["epoch"], int(rows[-1]["epoch"]), state.epoch))

    def on_fit_end(self, trainer, summary):
        self.seen.append(("fit", summary["epochs"], trainer.run_dir.summary_json.is_file(),
                          sorted(p.name for p in trainer.run_dir.figures.glob("*.png"))[:1]))


@pytest.mark.figures
def test_a_users_hooks_run_after_the_runs_own_files_are_written(tiny_data, tmp_path):
    root, _ = tiny_data
    witness = Witness()
    config = {**TINY, "data": {**TINY["data"], "data_dir": str(root)}, "output_dir": str(tmp_path / "runs"),
              "name": "order", "training": {**TINY["training"], "epochs": 1, "checkpoint_every_steps": 4,
                                             "log_every_steps": 4, "logger": "csv"}}
    vaelab.train(config, verbose=True, callbacks=[witness])
    # the step log's row and the checkpoint of a step exist when a user's hook sees it (the row is
    # written first: a kill between the two leaves a row the resume drops, never a checkpoint
    # without its row); the epoch's metrics.csv row and checkpoint; the summary and the figures
    steps = 96 // 8
    assert witness.seen == [*[("step", s, s, s) for s in range(4, steps + 1, 4)], ("epoch", 1, 1, 1),
                            ("fit", 1, True, ["interpolations.png"])]  # the first of the figures
    quiet = [type(c) for c in run_callbacks(verbose=False)]
    assert Console not in quiet and Progress not in quiet and {StopOnSignals, Checkpointing, RunFiles} <= set(quiet)


class CountSteps(Callback):
    """A user's callback with state: the steps it has seen, across resumes."""

    def __init__(self, stop_at: int | None = None):
        self.steps, self.stop_at = 0, stop_at

    def on_batch_end(self, trainer, step):
        self.steps += 1
        if self.steps == self.stop_at:
            trainer.request_stop("stopped by CountSteps")

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        if not isinstance(state.get("steps"), int):
            raise ValueError(f"steps must be an integer, got {state.get('steps')!r}")
        self.steps = state["steps"]


def rewrite_callbacks(path, value):
    """The checkpoint at ``path`` with its ``callbacks`` metadata replaced (None: removed, as
    written before callbacks had state)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(path), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta.pop("callbacks", None)
    if value is not None:
        meta["callbacks"] = value
    save_file(tensors, str(path), metadata=meta)


def test_callbacks_keep_their_state_across_a_resume(tiny_data, tmp_path):
    from vaelab.errors import CheckpointError

    root, _ = tiny_data
    config = {**TINY, "data": {**TINY["data"], "data_dir": str(root)}, "output_dir": str(tmp_path / "runs"),
              "name": "state", "training": {**TINY["training"], "logger": "csv"}}
    with pytest.raises(TrainingInterrupted):
        vaelab.train(config, verbose=False, callbacks=[CountSteps(stop_at=5)])
    last = tmp_path / "runs" / "state" / "checkpoints" / "last.safetensors"
    assert read_checkpoint(last).callback_states["CountSteps"] == {"steps": 5}
    assert "durations" in read_checkpoint(last).callback_states["TimeBudget"]
    counter = CountSteps()
    vaelab.resume(last.parents[1], verbose=False, callbacks=[counter])
    assert counter.steps == 2 * 96 // 8  # it went on counting from 5
    rewrite_callbacks(last, '{"CountSteps": {"steps": "five"}}')
    with pytest.raises(CheckpointError, match=r"checkpoint field callbacks.CountSteps steps must be an integer, got "
                                              r"'five'; the checkpoint is damaged: use the other checkpoint"):
        vaelab.resume(last.parents[1], {"training.epochs": 3}, verbose=False, callbacks=[CountSteps()])
    rewrite_callbacks(last, '{"CountSteps": [5]}')
    with pytest.raises(CheckpointError, match="checkpoint field callbacks.CountSteps input should be a valid dictionary"):
        read_checkpoint(last)
    rewrite_callbacks(last, None)  # a checkpoint from before callbacks had state still loads
    assert read_checkpoint(last).callback_states == {}
    counter = CountSteps()
    assert vaelab.resume(last.parents[1], {"training.epochs": 3}, verbose=False, callbacks=[counter]).summary["epochs"] == 3
    assert counter.steps == 96 // 8


def test_an_epoch_slowed_down_by_other_processes_gets_one_note(monkeypatch, capsys):
    from types import SimpleNamespace

    import torch

    from vaelab.training import callbacks
    from vaelab.training.callbacks import Console, slow_epoch_hint

    assert slow_epoch_hint(10.0, 19.0, 2) is None  # an idle machine: both threads busy
    assert slow_epoch_hint(1.0, 0.1, 2) is None  # too short to judge
    note = slow_epoch_hint(10.0, 4.0, 2)
    assert note.startswith("note: this epoch got 20% of the CPU time its 2 thread(s) could use") and "5x slower" in note
    clock = {"wall": 0.0, "cpu": 0.0}
    monkeypatch.setattr(callbacks.time, "perf_counter", lambda: clock["wall"])
    monkeypatch.setattr(callbacks.time, "process_time", lambda: clock["cpu"])
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    trainer = SimpleNamespace(device=torch.device("cpu"), dataset=SimpleNamespace(eval_name="test"),
                              config=SimpleNamespace(training=SimpleNamespace(epochs=3)))
    row = {"epoch": 1, "train_neg_elbo": 1.0, "test_neg_elbo": 1.0, "test_recon": 1.0, "test_kl": 0.0,
           "train_seconds": 10.0}
    console = Console()
    for epoch in (1, 2):  # two slow epochs: the note is printed once
        console.on_epoch_start(trainer, epoch)
        clock["wall"] += 10.0
        clock["cpu"] += 2.0
        console.on_epoch_end(trainer, dict(row, epoch=epoch), False)
    assert capsys.readouterr().out.count("note: this epoch got 10% of the CPU time") == 1


def test_the_busy_machine_note_suggests_one_thread_only_when_torch_uses_more(monkeypatch):
    import os

    from vaelab.training.environment import busy_machine_hint

    monkeypatch.setattr(os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert "OMP_NUM_THREADS=1" in busy_machine_hint(torch.device("cpu"))
        torch.set_num_threads(1)
        note = busy_machine_hint(torch.device("cpu"))
        assert "1 thread:" in note and "OMP_NUM_THREADS" not in note and "stop the other processes" in note
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    assert busy_machine_hint(torch.device("cpu")) is None


class NamedLogger(Logger):
    """A logger under the name ``csv`` (a name ``training.logger`` accepts), recording its hooks."""

    name = "csv"

    def __init__(self):
        super().__init__()
        self.calls: list = []

    def start(self, trainer):
        self.calls.append(("start", trainer.state.epoch))

    def log_epoch(self, trainer, row):
        self.calls.append(("epoch", row["epoch"]))

    def finish(self, trainer, summary):
        self.calls.append(("finish", summary["epochs"]))

    def resume_state(self):
        return {"id": len(self.calls)}


@pytest.mark.parametrize("listed", [True, False])
def test_a_logger_acts_only_when_its_name_is_listed_and_keeps_its_id_in_trackers_json(tiny_data, tmp_path, listed):
    root, _ = tiny_data
    logger = NamedLogger()
    config = {**TINY, "data": {**TINY["data"], "data_dir": str(root)}, "output_dir": str(tmp_path / "runs"),
              "name": "lg", "training": {**TINY["training"], "logger": "csv" if listed else "tensorboard"}}
    run = vaelab.train(config, verbose=False, callbacks=[logger])
    if not listed:
        assert logger.calls == [] and not (run.run_dir / "trackers.json").exists()
        return
    assert logger.calls == [("start", 0), ("epoch", 1), ("epoch", 2), ("finish", 2)]
    assert json.loads((run.run_dir / "trackers.json").read_text()) == {"csv": {"id": 4}}
    again = NamedLogger()
    vaelab.resume(run.run_dir, {"training.epochs": 3}, verbose=False, callbacks=[again])
    assert again.calls == [("start", 2), ("epoch", 3), ("finish", 3)]
    assert again.previous_state(SimpleNamespace(run_dir=RunDir(run.run_dir))) == {"id": 3}


def test_every_logger_name_but_csv_is_served_by_one_logger_of_the_run():
    names = [c.name for c in run_callbacks(verbose=False) if isinstance(c, Logger)]
    assert sorted(names) == sorted(set(LOGGER_NAMES) - {"csv"})  # csv: metrics.csv, written by RunFiles in every run
