"""Callbacks: a user's own callback sees every hook in order with the run's numbers, can stop
the run (with the checkpoint written), and ``vaelab.train`` wires the run's own callbacks."""

from __future__ import annotations

import csv

import pytest

import vaelab
from vaelab.api import run_callbacks
from vaelab.errors import TrainingInterrupted
from vaelab.training import Callback, read_checkpoint
from vaelab.training.callbacks import Checkpointing, Console, Progress, RunFiles, StopOnSignals

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
    assert sorted(p.name for p in run.figures)  # the run's own callbacks still ran: figures drawn


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


def test_the_run_callbacks_come_in_hook_order_and_users_last():
    mine = Callback()
    names = [type(c).__name__ for c in run_callbacks(verbose=True, extra=[mine])]
    # the step log writes its row before a checkpoint at the same step: a kill between the two
    # leaves a row the resume drops, never a checkpoint without its row
    assert names == ["StopOnSignals", "TimeBudget", "StepLog", "Checkpointing", "PosteriorCollapseCheck", "RunFiles",
                     "TensorBoard", "Figures", "TrackerCallbacks", "Console", "Progress", "Callback"]
    quiet = run_callbacks(verbose=False)
    assert not any(isinstance(c, (Console, Progress)) for c in quiet)
    assert isinstance(quiet[0], StopOnSignals) and isinstance(quiet[3], Checkpointing)
    assert any(isinstance(c, RunFiles) for c in quiet)


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
