"""The training steps without host syncs: device-side sums, the deferred finiteness check, the
device permutation (vaelab.training.stepsync)."""

from __future__ import annotations

import pytest
import torch

from vaelab.config import Config
from vaelab.data import InMemoryBatches
from vaelab.errors import TrainingError
from vaelab.models import build_model
from vaelab.training import make_optimizer, train_epoch


def setup(n=64, batch_size=8, **training):
    config = Config.from_dict({"model": {"hidden": [8], "latent_dim": 2}, "training": training})
    torch.manual_seed(0)
    model = build_model(config.model, (1, 4, 4))
    batches = InMemoryBatches(torch.rand(n, 1, 4, 4), batch_size, shuffle=True, dynamic_binarize=True,
                              generator=torch.Generator().manual_seed(0))
    return config, model, make_optimizer(model, config.training), batches


class SyncCounter:
    """Counts the calls that copy a tensor's value to the host (a CPU-GPU sync on CUDA)."""

    def __init__(self, monkeypatch):
        self.n = 0
        for name in ("item", "tolist", "__float__", "__int__", "__bool__"):
            real = getattr(torch.Tensor, name)

            def counted(self_, *a, _real=real, **k):
                self.n += 1
                return _real(self_, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, counted)


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
