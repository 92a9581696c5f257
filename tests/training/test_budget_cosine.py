"""``lr_schedule: cosine`` with ``lr_schedule_span: time``: the decay spans the shorter of the
epochs and the time budget (a patched clock, no sleeping); it matches torch's
CosineAnnealingLR when the epochs run out first, its state survives a checkpoint, and a
resume anneals the rest over its own budget."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

import vaelab
from vaelab.config import Config
from vaelab.errors import ConfigError
from vaelab.training import callbacks as callbacks_module
from vaelab.training import optim
from vaelab.training.optim import BudgetCosine

from .test_time_budget import FakeClock, Ticker, config


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(callbacks_module, "monotonic", fake)
    monkeypatch.setattr(optim, "monotonic", fake)
    return fake


def optimizer(lr=1e-3):
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr)


def rates(scheduler, clock, epochs, seconds_per_epoch):
    out = []
    for _ in range(epochs):
        clock.t += seconds_per_epoch
        scheduler.optimizer.step()  # an epoch's steps, then the schedule's
        optim.step_scheduler(scheduler, 0.0)
        out.append(scheduler.get_last_lr()[0])
    return out


def test_when_the_epochs_run_out_first_it_is_torchs_cosine(clock):
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer(), T_max=20)
    expected = []
    for _ in range(20):
        reference.optimizer.step()
        reference.step()
        expected.append(reference.get_last_lr()[0])
    got = rates(BudgetCosine(optimizer(), epochs=20, budget_seconds=3600.0), clock, 20, 1.0)
    assert got == pytest.approx(expected, abs=1e-12)
    assert got[-1] == pytest.approx(0.0, abs=1e-12)


def test_when_the_budget_runs_out_first_the_rate_reaches_zero_with_it(clock):
    # 100 epochs planned, 10 s each, a 100 s budget: progress after epoch e is e / 10
    got = rates(BudgetCosine(optimizer(), epochs=100, budget_seconds=100.0), clock, 12, 10.0)
    assert got[:10] == pytest.approx([1e-3 * (1 + math.cos(math.pi * e / 10)) / 2 for e in range(1, 11)])
    assert got[9] == pytest.approx(0.0, abs=1e-12) and got[10:] == pytest.approx([0.0, 0.0], abs=1e-12)


def test_a_loaded_state_keeps_its_progress_and_anneals_the_rest_over_the_new_budget(clock):
    first = BudgetCosine(optimizer(), epochs=100, budget_seconds=100.0)
    rates(first, clock, 5, 10.0)  # progress 0.5
    state = json.loads(json.dumps(first.state_dict()))  # as a checkpoint stores it
    clock.t += 1000.0  # time between the commands does not count
    resumed = BudgetCosine(optimizer(), epochs=100, budget_seconds=40.0)
    resumed.load_state_dict(state)
    assert (resumed.progress, resumed.budget_seconds) == (0.5, 40.0)
    # the remaining half over 40 s: after 20 s, progress 0.5 + 0.5 * 20 / 40 = 0.75
    assert rates(resumed, clock, 1, 20.0) == pytest.approx([1e-3 * (1 + math.cos(math.pi * 0.75)) / 2])


def test_a_time_span_needs_the_cosine_and_a_budget():
    with pytest.raises(ConfigError, match="lr_schedule_span=time needs training.lr_schedule=cosine and a time budget: add training.max_minutes=60"):
        Config.from_dict({"training": {"lr_schedule": "cosine", "lr_schedule_span": "time"}})
    with pytest.raises(ConfigError, match="lr_schedule_span=time needs"):
        Config.from_dict({"training": {"lr_schedule": "step", "lr_schedule_span": "time", "max_minutes": 5}})


def test_a_budgeted_run_decays_its_rate_to_zero_by_the_end_of_the_budget(tiny_data, tmp_path, clock):
    root, _ = tiny_data
    # 12 steps of 1 s per epoch, a 60 s budget: the budget ends training after epoch 5 (60 + 12 > 60)
    run = vaelab.train(config(root, tmp_path, "budget-cosine", epochs=100, max_minutes=1.0, lr_schedule="cosine",
                              lr_schedule_span="time"), verbose=False, callbacks=[Ticker(clock)])
    with open(run.run_dir / "metrics.csv") as f:
        logged = [float(row["learning_rate"]) for row in csv.DictReader(f)]
    assert len(logged) == 5
    # the rate of epoch e is the one set after epoch e - 1, whose progress is 12 (e - 1) / 60
    assert logged == pytest.approx([1e-3 * (1 + math.cos(math.pi * (e - 1) / 5)) / 2 for e in range(1, 6)])
