"""The importance-sampled log-likelihood against references: a plain per-example loop, the ELBO
(K = 1), Burda et al.'s monotonicity in K, and exact quadrature for a 1-D latent."""

import math

import pytest
import torch
from torch.distributions import Independent, Normal

from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.evaluation.loglik import (CPU_CHUNK, MAX_CHUNK, LogMeanExp, bits_per_dim, default_batch_size,
                                      default_chunk_size, example_noise, importance_log_likelihood, mean_and_stderr)
from vaelab.models import build_model
from vaelab.models.likelihoods import declare_binary_data
from vaelab.objectives import elbo_terms

SHAPE = (1, 4, 4)


def tiny_model(latent_dim=2, likelihood="bernoulli", sharpen=1.0, seed=0, **extra):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(latent_dim=latent_dim, hidden=[8], likelihood=likelihood, **extra), SHAPE)
    with torch.no_grad():
        model.decoder.out.weight.mul_(sharpen)  # a peakier p(x|z): a wider gap between ELBO and log p(x)
    return model.eval()


def binary_images(n, seed=1):
    return torch.bernoulli(torch.full((n, *SHAPE), 0.3), generator=torch.Generator().manual_seed(seed))


def per_example_loop(model, images, k, seed):
    """log p(x) the plain way: one example at a time, torch.distributions for every density."""
    out = []
    for i in range(images.shape[0]):
        x = images[i:i + 1]
        q = model.posterior(x)
        mean, std = q.base_dist.loc[0], q.base_dist.scale[0]
        z = mean + std * example_noise(seed, i, k, model.latent_dim)  # (K, D)
        log_px_z = model.likelihood.distribution(model.decode(z)).log_prob(x.expand(k, *SHAPE))
        log_pz = model.prior_distribution().log_prob(z)
        log_qz = Independent(Normal(mean, std), 1).log_prob(z)
        log_w = (log_px_z + log_pz - log_qz).double()
        out.append(torch.logsumexp(log_w, 0) - math.log(k))
    return torch.stack(out)


@pytest.mark.parametrize("likelihood, data", [("bernoulli", "binary"), ("gaussian", "gray")])
def test_vectorised_estimate_equals_a_per_example_loop(likelihood, data):
    extra = {"prior_loc": [0.5, -1.0], "prior_std": [2.0, 0.5]} if likelihood == "gaussian" else {}
    model = tiny_model(likelihood=likelihood, **extra)
    images = binary_images(7) if data == "binary" else torch.rand(7, *SHAPE, generator=torch.Generator().manual_seed(2))
    reference = per_example_loop(model, images, k=37, seed=3)
    # several batches, several chunks per batch, a partial last chunk
    chunked = importance_log_likelihood(model, images, k=37, seed=3, batch_size=3, chunk_size=10)
    torch.testing.assert_close(chunked.log_px, reference, atol=1e-4, rtol=0)
    # the estimate of an example does not depend on the batch or chunk size
    whole = importance_log_likelihood(model, images, k=37, seed=3, batch_size=7, chunk_size=10_000)
    torch.testing.assert_close(whole.log_px, chunked.log_px, atol=1e-5, rtol=0)
    assert chunked.log_px.dtype == torch.float64 and chunked.log_px.shape == (7,)
    # a slice with first_index reproduces the whole
    tail = importance_log_likelihood(model, images[4:], k=37, seed=3, first_index=4)
    torch.testing.assert_close(tail.log_px, chunked.log_px[4:], atol=1e-5, rtol=0)
    other_seed = importance_log_likelihood(model, images, k=37, seed=4)
    assert torch.all(other_seed.log_px != chunked.log_px)


def test_iwae_with_k1_equals_the_elbo_in_expectation():
    model = tiny_model(sharpen=2.0)
    images = binary_images(4)
    replicas = 3000
    estimates = importance_log_likelihood(model, images.repeat(replicas, 1, 1, 1), k=1, seed=5)
    per_image = estimates.log_px.view(replicas, 4)  # K=1: log w of one sample, an unbiased ELBO estimate
    exact = elbo_terms(model, images, n_samples=200_000, generator=torch.Generator().manual_seed(6))
    elbo = -(exact.recon + exact.kl).double()
    stderr = per_image.std(0) / math.sqrt(replicas)
    assert torch.all((per_image.mean(0) - elbo).abs() < 5 * stderr + 0.01), (per_image.mean(0), elbo, stderr)
    # and the same pass's ELBO terms (recon from the K samples, KL closed form) agree too
    torch.testing.assert_close(estimates.kl.view(replicas, 4)[0], exact.kl.double(), atol=1e-5, rtol=0)


def quadrature_log_px(model, images, lo=-9.0, hi=9.0, points=30001):
    """log p(x) = log integral p(x|z) p(z) dz for a 1-D latent, by the trapezoid rule."""
    z = torch.linspace(lo, hi, points).unsqueeze(-1)  # (G, 1)
    with torch.no_grad():
        log_joint = model.likelihood.log_prob(images, model.decode(z.unsqueeze(1)).expand(points, *images.shape))
        log_joint = (log_joint + model.prior_distribution().log_prob(z.unsqueeze(1))).double()  # (G, N)
    weights = torch.full((points, 1), (hi - lo) / (points - 1), dtype=torch.float64)
    weights[0] = weights[-1] = weights[0] / 2
    return torch.logsumexp(log_joint + weights.log(), 0)


def test_nll_is_monotone_non_increasing_in_k_on_average_and_converges_to_the_exact_value():
    model = tiny_model(latent_dim=1, sharpen=3.0)
    images = binary_images(5)
    exact = -quadrature_log_px(model, images)  # (5,)
    replicas = 200
    repeated = images.repeat(replicas, 1, 1, 1)
    means = []
    for k in (1, 2, 4, 16, 64, 512):
        nll = importance_log_likelihood(model, repeated, k=k, seed=11).nll.view(replicas, 5)
        means.append(nll.mean(0))
    means = torch.stack(means)  # (len(ks), 5)
    totals = means.mean(1)
    assert torch.all(totals[1:] <= totals[:-1] + 1e-3), totals  # Burda et al. 2016, Theorem 1
    assert totals[0] - totals[-1] > 0.3  # the bound gap this model has
    # an upper bound in expectation that reaches the exact NLL
    assert torch.all(means[-1] >= exact - 0.02) and torch.all(means[-1] - exact < 0.05), (means[-1], exact)


def test_log_mean_exp_streaming_is_exact_and_float64_safe():
    values = torch.randn(1000, 3, dtype=torch.float64) * 50 - 2000  # exp underflows in any float
    acc = LogMeanExp((3,))
    for chunk in values.split(77):
        acc.update(chunk)
    torch.testing.assert_close(acc.compute(), torch.logsumexp(values, 0) - math.log(1000))
    assert torch.isfinite(acc.compute()).all()
    acc = LogMeanExp((1,))
    acc.update(torch.full((4, 1), -math.inf))
    assert acc.compute().item() == -math.inf


def test_units_and_summaries():
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    mean, stderr = mean_and_stderr(torch.tensor([1.0, 3.0]))
    assert mean == 2.0 and stderr == pytest.approx(math.sqrt(2) / math.sqrt(2))


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0}, "k must be an integer >= 1, got 0"),
    ({"k": 10, "chunk_size": 0}, "chunk_size must be an integer >= 1"),
    ({"k": 10, "batch_size": -2}, "batch_size must be an integer >= 1"),
    ({"k": 10, "batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
])
def test_invalid_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        importance_log_likelihood(tiny_model(), binary_images(2), **kwargs)


def test_device_noise_is_seeded_per_batch_and_agrees_with_example_noise_in_distribution():
    model, x = tiny_model(), binary_images(40)
    example = importance_log_likelihood(model, x, k=200, seed=0, batch_size=20)
    device = importance_log_likelihood(model, x, k=200, seed=0, batch_size=20, noise="device")
    again = importance_log_likelihood(model, x, k=200, seed=0, batch_size=20, noise="device")
    assert torch.equal(device.log_px, again.log_px)  # seeded
    assert not torch.equal(device.log_px, example.log_px)  # other draws ...
    assert device.nll.mean().item() == pytest.approx(example.nll.mean().item(), rel=0.02)  # ... of the same noise
    auto = importance_log_likelihood(model, x, k=200, seed=0, batch_size=20)  # auto on the CPU: per example
    assert torch.equal(auto.log_px, example.log_px)
    with pytest.raises(ConfigError, match="noise must be"):
        importance_log_likelihood(model, x, k=2, noise="gpu")


def test_the_estimate_copies_its_results_to_the_host_once_whatever_the_number_of_examples(monkeypatch):
    from tests.training.sync_counter import COPIES, READS, SyncCounter

    model = tiny_model()
    declare_binary_data(model.likelihood, True)
    images = binary_images(12)
    counts = []
    for n in (2, 12):  # 1 and 6 batches of 2 examples, 3 chunks each
        counter = SyncCounter(monkeypatch, READS + COPIES)
        importance_log_likelihood(model, images[:n], k=9, seed=3, batch_size=2, chunk_size=6)
        monkeypatch.undo()
        counts.append(counter.calls)
    assert counts == [["cpu"], ["cpu"]]  # a GPU waits once per call, not per batch or chunk


def test_binary_data_declared_by_the_config_give_the_same_estimate():
    model = tiny_model(sharpen=2.0)
    images = binary_images(5)
    checked = importance_log_likelihood(model, images, k=11, seed=2)
    declare_binary_data(model.likelihood, True)
    declared = importance_log_likelihood(model, images, k=11, seed=2)
    for a, b in zip(checked[:3], declared[:3]):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)  # two float32 forms of the same sum


def test_the_chunk_is_sized_to_the_device():
    model = build_model(ModelConfig(hidden=[400], latent_dim=20), (1, 28, 28))  # the default MNIST model
    assert default_chunk_size(model, "cpu") == CPU_CHUNK
    # a decoded sample: 3 x 784 outputs and 2 x its widest layer (784), float32
    per_sample = 4 * (3 * 784 + 2 * 784)
    assert default_chunk_size(model, "cuda", free_bytes=4 * per_sample * 500_000) == 500_000
    assert default_batch_size(1000, default_chunk_size(model, "cuda", free_bytes=40 * 10**9)) >= 500  # K = 1000
    assert default_chunk_size(model, "cuda", free_bytes=10**15) == MAX_CHUNK
    assert default_chunk_size(model, "cuda", free_bytes=10**6) == CPU_CHUNK
