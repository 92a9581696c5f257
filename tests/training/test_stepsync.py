"""The training steps without host syncs: device-side sums, the deferred finiteness check, the
device permutation (vaelab.training.stepsync)."""

from __future__ import annotations

import pytest
import torch

from vaelab.config import Config
from vaelab.data import InMemoryBatches
from vaelab.errors import TrainingError
from vaelab.models import build_model
from vaelab.models.likelihoods import declare_binary_data
from vaelab.training import make_optimizer, train_epoch
from vaelab.training.optim import make_ema

from .sync_counter import SyncCounter


def setup(n=64, batch_size=8, objective=None, **training):
    config = Config.from_dict({"model": {"hidden": [8], "latent_dim": 2}, "objective": objective or {},
                               "training": training})
    torch.manual_seed(0)
    model = build_model(config.model, (1, 4, 4))
    declare_binary_data(model.likelihood, True)  # dynamically binarised batches, as build_trainer says
    batches = InMemoryBatches(torch.rand(n, 1, 4, 4), batch_size, shuffle=True, dynamic_binarize=True,
                              generator=torch.Generator().manual_seed(0))
    return config, model, make_optimizer(model, config.training), batches


@pytest.mark.parametrize("n", [64, 256])
def test_an_epoch_syncs_with_the_host_a_constant_number_of_times(monkeypatch, n):
    config, model, opt, batches = setup(n=n, sync_every_steps=1000)
    counter = SyncCounter(monkeypatch)
    out = train_epoch(model, opt, batches, config.objective, config.training, torch.device("cpu"), 1)
    monkeypatch.undo()
    assert torch.isfinite(torch.tensor(out["neg_elbo"]))
    assert counter.n <= 2, f"{counter.n} host syncs in an epoch of {n // 8} steps"


def test_sync_every_n_steps_syncs_once_per_n(monkeypatch):
    config, model, opt, batches = setup(n=256, sync_every_steps=8)  # 32 steps
    counter = SyncCounter(monkeypatch)
    train_epoch(model, opt, batches, config.objective, config.training, torch.device("cpu"), 1)
    monkeypatch.undo()
    assert counter.n <= 32 // 8 + 1


SYNC_FREE = {
    # name: (training, objective); each reads the host at most once per sync_every_steps steps
    "default": ({}, {}),
    "ema": ({"ema_decay": 0.9}, {}),  # the average's counter stays on the device and in Python
    "iwae": ({}, {"bound": "iwae", "iwae_k": 3}),  # binary data known from the config, not checked
    "n_samples=2": ({}, {"n_samples": 2}),
    "fp16+adam": ({"precision": "fp16"}, {}),  # the fused step skips an overflowing step on the device
    "fp16+sgd": ({"precision": "fp16", "optimizer": "sgd", "momentum": 0.9}, {}),  # fused under fp16
    "clip_norm": ({"clip_norm": 5.0}, {}),
}
MUST_SYNC = {
    # name: training; each reads the host every step, and why
    "nonfinite=skip": {"nonfinite": "skip"},  # whether to skip a step must be known before its optimizer step
    "fp16+rmsprop": {"precision": "fp16", "optimizer": "rmsprop"},  # no fused RMSprop: GradScaler.step reads
                                                                   # the overflow flag before stepping
}


def one_epoch_counted(monkeypatch, training, objective=None):
    config, model, opt, batches = setup(n=256, objective=objective, sync_every_steps=8, **training)  # 32 steps
    ema = make_ema(model, config.training.ema_decay)
    scaler = torch.amp.GradScaler("cpu") if config.training.precision == "fp16" else None
    counter = SyncCounter(monkeypatch)
    out = train_epoch(model, opt, batches, config.objective, config.training, torch.device("cpu"), 1, ema=ema,
                      scaler=scaler)
    monkeypatch.undo()
    assert torch.isfinite(torch.tensor(out["neg_elbo"]))
    return counter, ema


@pytest.mark.parametrize("name", SYNC_FREE)
def test_the_recipes_read_the_host_at_most_once_per_sync_every_steps(monkeypatch, name):
    counter, ema = one_epoch_counted(monkeypatch, *SYNC_FREE[name])
    assert counter.n <= 32 // 8 + 1, f"{name}: {counter.n} host reads in 32 steps ({counter.calls[:12]})"
    if ema is not None:
        assert ema.updates == 32 and int(ema.n_averaged) == 32


@pytest.mark.parametrize("name", MUST_SYNC)
def test_skipping_steps_and_fp16_with_an_unfused_optimizer_read_the_host_every_step(monkeypatch, name):
    counter, _ = one_epoch_counted(monkeypatch, MUST_SYNC[name])
    assert counter.n >= 32


def test_the_sums_equal_the_per_step_check():
    # sync_every_steps only changes when the host reads the sums, not the numbers
    results = []
    for every in (1, 7, 1000):
        config, model, opt, batches = setup(n=128, sync_every_steps=every)
        results.append(train_epoch(model, opt, batches, config.objective, config.training, torch.device("cpu"), 1))
    for key in ("recon", "kl", "neg_elbo"):
        assert results[0][key] == results[1][key] == results[2][key]


@pytest.mark.parametrize("bad_step", [3, 9])
def test_a_nan_gradient_stops_at_its_step_and_names_the_parameter(bad_step):
    config, model, opt, batches = setup(n=128, sync_every_steps=10)
    calls = {"n": 0}

    def poison(grad):
        calls["n"] += 1
        return grad * float("nan") if calls["n"] == bad_step else grad

    model.decoder.out.weight.register_hook(poison)
    with pytest.raises(TrainingError, match=rf"epoch 1, step {bad_step}: the gradient of decoder.out.weight is "
                                            r"not finite; training stopped"):
        train_epoch(model, opt, batches, config.objective, config.training, torch.device("cpu"), 1)


def test_a_nan_loss_stops_at_its_step_and_names_the_term(monkeypatch):
    from vaelab.objectives import Objective

    real = Objective.__call__
    calls = {"n": 0}

    def poisoned(self, model, x, beta=1.0, generator=None):
        calls["n"] += 1
        terms = real(self, model, x, beta, generator)
        return terms._replace(recon=terms.recon * float("nan")) if calls["n"] >= 4 else terms

    monkeypatch.setattr(Objective, "__call__", poisoned)
    config, model, opt, batches = setup(n=128, sync_every_steps=100)
    with pytest.raises(TrainingError, match=r"epoch 1, step 4: the reconstruction NLL \(nan\) is not finite"):
        train_epoch(model, opt, batches, config.objective, config.training, torch.device("cpu"), 1)


def test_the_permutation_is_drawn_on_the_generators_device():
    generator = torch.Generator().manual_seed(3)
    batches = InMemoryBatches(torch.rand(10, 1, 2, 2), 4, shuffle=True, generator=generator)
    assert torch.equal(batches.permutation(), torch.randperm(10, generator=torch.Generator().manual_seed(3)))
    if torch.cuda.is_available():
        cuda = InMemoryBatches(torch.rand(10, 1, 2, 2, device="cuda"), 4, shuffle=True,
                               generator=torch.Generator("cuda").manual_seed(3))
        assert cuda.permutation().device.type == "cuda"
