"""``training.max_minutes``: training ends cleanly on a wall-clock budget (checked with a
patched clock, no sleeping): between epochs when another epoch would pass it, or at a step
once it is passed; checkpoint, metrics.csv and summary.json agree, exit status 0, and a resume
may change the budget."""

from __future__ import annotations

import json

import pytest

import vaelab
from vaelab.cli import main
from vaelab.rundir import RunDir
from vaelab.training import Callback, read_checkpoint
from vaelab.training import callbacks as callbacks_module

TINY = {"data": {"dataset": "tiny-mnist", "binarize": "dynamic"}, "model": {"latent_dim": 2, "hidden": [16]},
        "training": {"epochs": 10, "batch_size": 8, "progress": False, "logger": "csv"}}
STEPS = 96 // 8  # steps per epoch of the tiny dataset


class FakeClock:
    """Seconds that advance only when a step ends (``Ticker``)."""

    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Ticker(Callback):
    """Each step takes ``seconds`` on the fake clock (after the budget's check of that step)."""

    def __init__(self, clock: FakeClock, seconds: float = 1.0):
        self.clock, self.seconds = clock, seconds

    def on_batch_end(self, trainer, step):
        self.clock.t += self.seconds


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(callbacks_module, "monotonic", fake)
    return fake


def config(root, tmp_path, name, **training):
    return {**TINY, "data": {**TINY["data"], "data_dir": str(root)}, "output_dir": str(tmp_path / "runs"),
            "name": name, "training": {**TINY["training"], **training}}


def test_training_ends_between_epochs_when_the_next_would_pass_the_budget(tiny_data, tmp_path, clock):
    root, _ = tiny_data
    # epochs take 12 s: after epoch 1, 12 + 12 <= 30; after epoch 2, 24 + 12 > 30: stop there
    run = vaelab.train(config(root, tmp_path, "budget", max_minutes=0.5), verbose=False, callbacks=[Ticker(clock)])
    files = RunDir(run.run_dir)
    summary = json.loads(files.summary_json.read_text())
    assert summary["epochs"] == 2 and summary["stopped"]["epochs_done"] == 2
    assert summary["stopped"]["epochs_planned"] == 10 and summary["stopped"]["mid_epoch_step"] is None
    assert "time budget" in summary["stopped"]["reason"] and "after epoch 2" in summary["stopped"]["reason"]
    assert [row["epoch"] for row in files.read_metrics()] == [1, 2]
    state = read_checkpoint(files.checkpoint("last")).training_state
    assert state.epoch == 2 and state.position is None  # a complete epoch: evaluation is clean
    # a resume may change the budget: none now, so it trains to the planned epochs
    resumed = vaelab.resume(run.run_dir, {"training.max_minutes": None, "training.epochs": 3}, verbose=False)
    assert resumed.summary["epochs"] == 3 and "stopped" not in resumed.summary


def test_a_step_past_the_budget_ends_training_with_a_mid_epoch_checkpoint(tiny_data, tmp_path, clock):
    root, _ = tiny_data
    # 1 minute, steps of 20 s: the step whose check sees 80 s > 60 s (step 5) ends the run
    run = vaelab.train(config(root, tmp_path, "steps", max_minutes=1), verbose=False,
                       callbacks=[Ticker(clock, 20.0)])
    assert run.summary["epochs"] == 0 and run.summary["stopped"]["mid_epoch_step"] == 5
    files = RunDir(run.run_dir)
    assert files.read_metrics() == []
    assert read_checkpoint(files.checkpoint("last")).training_state.position.step == 5
    resumed = vaelab.resume(run.run_dir, {"training.max_minutes": 60, "training.epochs": 1}, verbose=False)
    assert resumed.summary["epochs"] == 1 and "stopped" not in resumed.summary


def test_the_cli_exits_0_and_says_it_stopped_on_the_budget(tiny_data, tmp_path, monkeypatch, capsys):
    root, _ = tiny_data
    times = iter([0.0, *[1000.0] * 10_000])  # the first step already ends past the budget
    monkeypatch.setattr(callbacks_module, "monotonic", lambda: next(times))
    code = main(["train", "--dataset", "tiny-mnist", "--data-dir", str(root), "--hidden", "16", "--batch-size",
                 "8", "--latent-dim", "2", "--no-progress", "--logger", "csv", "--output-dir", str(tmp_path),
                 "--name", "cli", "--max-minutes", "5"])
    assert code == 0
    assert "training ended early: time budget: training.max_minutes=5" in capsys.readouterr().out
    assert json.loads((tmp_path / "cli" / "summary.json").read_text())["stopped"]["mid_epoch_step"] == 1


def test_the_epoch_durations_survive_a_resume(tiny_data, tmp_path, clock):
    root, _ = tiny_data
    # slow epochs before the resume (12 steps of 2.5 s: 30 s), fast ones after (12 s)
    run = vaelab.train(config(root, tmp_path, "kept", epochs=2), verbose=False, callbacks=[Ticker(clock, 2.5)])
    last = RunDir(run.run_dir).checkpoint("last")
    assert read_checkpoint(last).callback_states["TimeBudget"] == {"durations": [30.0, 30.0], "epoch_seconds": None}
    resumed = vaelab.resume(run.run_dir, {"training.epochs": 10, "training.max_minutes": 0.5}, verbose=False,
                            callbacks=[Ticker(clock, 1.0)])
    # after epoch 3 (12 s): 12 + max(30, 30, 12) > 30 ends it there; a budget that had forgotten the
    # slow epochs would judge 12 + 12 <= 30 and train epoch 4 too
    assert resumed.summary["epochs"] == 3 and "after epoch 3" in resumed.summary["stopped"]["reason"]


def test_an_epoch_split_by_a_mid_epoch_resume_is_counted_whole(tiny_data, tmp_path, clock):
    root, _ = tiny_data
    # steps of 20 s on a 1-minute budget: training ends after step 5, 100 s into epoch 1
    run = vaelab.train(config(root, tmp_path, "split", max_minutes=1), verbose=False, callbacks=[Ticker(clock, 20.0)])
    last = RunDir(run.run_dir).checkpoint("last")
    assert read_checkpoint(last).callback_states["TimeBudget"] == {"durations": [], "epoch_seconds": 100.0}
    vaelab.resume(run.run_dir, {"training.max_minutes": None, "training.epochs": 1}, verbose=False,
                  callbacks=[Ticker(clock, 1.0)])
    # the 7 steps left took 7 s: epoch 1 took 107 s in all, not the 7 s this command saw
    assert read_checkpoint(last).callback_states["TimeBudget"] == {"durations": [107.0], "epoch_seconds": None}
