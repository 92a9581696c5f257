"""The pure functions of a training step on (fake) CUDA tensors: likelihoods, the KL, the ELBO
and IWAE bounds, the step sums and the IS-NLL's running log-mean-exp.

``torch._subclasses.fake_tensor.FakeTensorMode`` makes tensors that carry a device, a shape and
a dtype but no values, so a CPU build of torch can run these functions "on CUDA": a tensor
created on the CPU and mixed in raises ``FakeTensorDeviceMismatchError`` (a real GPU run would
fail the same way, or copy every step), and reading a value on the host (``.item()``,
``bool()``, ``.tolist()``) raises ``DataDependentOutputException`` (a sync on a real GPU).

What a CPU build cannot do with fake CUDA tensors: autograd (a leaf that requires grad aborts
the process: its gradient accumulator asks for a CUDA device guard), CUDA autocast (disabled
without CUDA) and ``~`` on booleans; so parameters do not require grad here, and mixed precision
is checked with CPU autocast in test_precision.py.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorDeviceMismatchError, FakeTensorMode

from vaelab.config import Config
from vaelab.evaluation.loglik import LogMeanExp
from vaelab.models import LIKELIHOODS, build_model
from vaelab.models.likelihoods import declare_binary_data
from vaelab.objectives import Objective
from vaelab.objectives.elbo import kl_estimate
from vaelab.training.checkpoint import EpochPosition
from vaelab.training.stepsync import DeviceSums

CUDA = torch.device("cuda", 0)
SHAPE = (1, 4, 4)


def on_fake_cuda(module: nn.Module) -> nn.Module:
    """``module`` with every parameter and buffer replaced by a fake CUDA tensor of its shape and
    dtype (call inside the mode; ``module.to('cuda')`` needs a CUDA build)."""
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            if p is not None:
                m._parameters[name] = nn.Parameter(torch.empty(p.shape, dtype=p.dtype, device=CUDA),
                                                   requires_grad=False)
        for name, b in list(m._buffers.items()):
            if b is not None:
                m._buffers[name] = torch.empty(b.shape, dtype=b.dtype, device=CUDA)
    return module


def model_config(likelihood: str, bound: str, prior: str = "normal") -> Config:
    scaled = LIKELIHOODS[likelihood].has_scale
    return Config.from_dict({
        "model": {"hidden": [8], "latent_dim": 2, "likelihood": likelihood, "prior": prior,
                  **({"learn_scale": "pixel"} if scaled else {}),
                  **({"mog_components": 3} if prior == "mog" else {})},
        "objective": {"bound": bound, **({"iwae_k": 3} if bound == "iwae" else {"n_samples": 2})}})


@pytest.mark.parametrize("bound", ["elbo", "iwae"])
@pytest.mark.parametrize("likelihood", sorted(LIKELIHOODS))
def test_the_bounds_of_every_likelihood_stay_on_the_gpu_without_host_reads(likelihood, bound):
    config = model_config(likelihood, bound)
    model = build_model(config.model, SHAPE)
    declare_binary_data(model.likelihood, LIKELIHOODS[likelihood].binary_data)
    with FakeTensorMode(), torch.no_grad():
        on_fake_cuda(model)
        x = torch.rand(5, *SHAPE, device=CUDA)
        terms = Objective(config.objective)(model, x, 0.5)
        for value in (terms.loss, terms.recon, terms.kl, *terms.extra.values()):
            assert value.device == CUDA and value.dtype == torch.float32
        assert terms.recon.shape == terms.kl.shape == (5,)
        params = model.decode(torch.randn(7, 5, 2, device=CUDA))  # K = 7 samples of z
        assert model.likelihood.log_prob(x, params).device == CUDA


def test_the_kl_of_a_mixture_prior_stays_on_the_gpu():
    config = model_config("bernoulli", "elbo", prior="mog")
    model = build_model(config.model, SHAPE)
    with FakeTensorMode(), torch.no_grad():
        on_fake_cuda(model)
        q = model.posterior(torch.rand(5, *SHAPE, device=CUDA))
        z = torch.randn(4, 5, 2, device=CUDA)
        kl, per_dim = kl_estimate(q, model.prior_distribution(), z)
        assert kl.device == CUDA and kl.shape == (5,) and per_dim is None


def test_the_step_sums_stay_on_the_gpu():
    with FakeTensorMode():
        position = EpochPosition(recon_total=3.0, kl_total=1.0, extra_totals={"neg_iwae": 5.0})
        sums = DeviceSums(position, CUDA, ["a", "b", "c"])
        for step in (1, 2):
            terms = torch.randn(2, device=CUDA)
            grads = [torch.empty(3, 2, device=CUDA), None, torch.empty(4, device=CUDA)]  # b has no gradient
            sums.record(step, terms, grads)
            sums.add(terms, {"neg_iwae": torch.randn(8, device=CUDA), "perceptual": torch.randn(8, device=CUDA)})
        state = [sums.totals, sums.bad_step, sums.bad_terms, sums.bad_grads, *sums.extra.values()]
        assert all(t.device == CUDA for t in state) and sums.totals.dtype == torch.float64


def test_the_running_log_mean_exp_stays_on_the_gpu():
    with FakeTensorMode():
        lme = LogMeanExp((4,), CUDA)
        for _ in range(2):
            lme.update(torch.randn(5, 4, device=CUDA))
        out = lme.compute()
        assert out.device == CUDA and out.dtype == torch.float64 and lme.count == 10


def test_fake_cuda_tensors_catch_a_cpu_tensor_mixed_in_and_a_host_read():
    with FakeTensorMode():
        x = torch.rand(3, 4, device=CUDA)
        with pytest.raises(FakeTensorDeviceMismatchError):
            x + torch.ones(3, 4)  # what a likelihood building a constant on the CPU would do
        with pytest.raises(Exception, match="local_scalar_dense"):
            bool((x > 0).all())  # what the former binary-pixel check did in every step
