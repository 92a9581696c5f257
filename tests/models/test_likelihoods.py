"""Each likelihood's log-density against a reference: torch.distributions or a formula."""

import math

import pytest
import torch
from scipy import integrate

from vaelab.config import ModelConfig
from vaelab.models.likelihoods import LIKELIHOODS


def make(name, **kw):
    return LIKELIHOODS[name](ModelConfig(likelihood=name, **kw), (1, 3, 2))


@pytest.fixture
def batch():
    torch.manual_seed(0)
    return torch.rand(4, 1, 3, 2).clamp(0.01, 0.99), 2 * torch.randn(2, 4, 1, 3, 2)


def test_bernoulli_is_minus_bce(batch):
    x, params = batch
    lp = make("bernoulli").log_prob(x, params)
    bce = torch.nn.functional.binary_cross_entropy(torch.sigmoid(params), x.expand_as(params), reduction="none")
    assert lp.shape == (2, 4)
    torch.testing.assert_close(lp, -bce.sum((-3, -2, -1)), atol=1e-4, rtol=1e-5)


def test_continuous_bernoulli_adds_the_log_normaliser(batch):
    x, params = batch
    lam = torch.sigmoid(params).double()
    # C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda)  (Loaiza-Ganem & Cunningham 2019, eq. 7)
    log_c = torch.log(2 * torch.atanh(1 - 2 * lam) / (1 - 2 * lam))
    expected = (x * lam.log() + (1 - x) * (1 - lam).log() + log_c).sum((-3, -2, -1))
    torch.testing.assert_close(make("continuous_bernoulli").log_prob(x, params).double(), expected, atol=1e-3, rtol=1e-4)


def test_continuous_bernoulli_is_a_normalised_density():
    like = LIKELIHOODS["continuous_bernoulli"](ModelConfig(), (1, 1, 1))
    for logit in (-3.0, 0.2, 2.5):
        f = lambda v: math.exp(like.log_prob(torch.tensor([[[[v]]]]), torch.tensor([[[[logit]]]])).item())
        assert integrate.quad(f, 0, 1)[0] == pytest.approx(1.0, abs=1e-4)


def test_gaussian_with_fixed_sigma_is_scaled_mse(batch):
    x, params = batch
    sigma = 0.3
    lp = make("gaussian", likelihood_scale=sigma).log_prob(x, params)
    mu = torch.sigmoid(params)
    sq = ((x - mu) ** 2).sum((-3, -2, -1))
    expected = -sq / (2 * sigma ** 2) - 6 * math.log(sigma * math.sqrt(2 * math.pi))
    torch.testing.assert_close(lp, expected, atol=1e-4, rtol=1e-5)


def test_laplace_is_scaled_l1(batch):
    x, params = batch
    lp = make("laplace", likelihood_scale=0.5).log_prob(x, params)
    expected = -(x - torch.sigmoid(params)).abs().sum((-3, -2, -1)) / 0.5 - 6 * math.log(2 * 0.5)
    torch.testing.assert_close(lp, expected, atol=1e-4, rtol=1e-5)


def test_logit_normal_includes_the_jacobian(batch):
    x, params = batch
    like = make("logit_normal", likelihood_scale=0.7)
    y = torch.logit(x)
    expected = (torch.distributions.Normal(params, 0.7).log_prob(y) - torch.log(x) - torch.log1p(-x)).sum((-3, -2, -1))
    torch.testing.assert_close(like.log_prob(x, params), expected, atol=1e-4, rtol=1e-4)
    # a density on (0, 1): integrates to one
    f = lambda v: math.exp(LIKELIHOODS["logit_normal"](ModelConfig(likelihood_scale=0.7), (1, 1, 1))
                           .log_prob(torch.tensor([[[[v]]]]), torch.tensor([[[[0.4]]]])).item())
    assert integrate.quad(f, 1e-6, 1 - 1e-6, limit=200)[0] == pytest.approx(1.0, abs=1e-3)
    # clamped pixels stay finite
    edge = like.log_prob(torch.tensor([[[[0.0, 1.0]]]]), torch.zeros(1, 1, 1, 2))
    assert torch.isfinite(edge).all()


@pytest.mark.parametrize("mode, shape", [("scalar", (1, 1, 1)), ("pixel", (1, 3, 2))])
def test_learned_scale_is_a_parameter_with_a_floor(mode, shape):
    like = make("gaussian", learn_scale=mode, likelihood_scale=0.2, scale_floor=0.05)
    params = dict(like.named_parameters())
    assert params["raw_scale"].shape == shape
    torch.testing.assert_close(like.scale(), torch.full(shape, 0.2))
    with torch.no_grad():
        like.raw_scale.fill_(-1e4)  # an optimiser driving sigma towards 0 ...
    assert like.scale().min().item() == pytest.approx(0.05)  # ... stops at the floor
    x = torch.full((1, 1, 3, 2), 0.5)
    assert torch.isfinite(like.log_prob(x, torch.zeros(1, 1, 3, 2))).all()


def test_fixed_scale_is_not_trained():
    assert not list(make("laplace").parameters())


@pytest.mark.parametrize("name", ["gaussian", "logit_normal", "laplace"])
def test_scale_from_the_decoder_is_a_second_output_per_pixel(name):
    # Kingma & Welling 2014, App. C.2: the decoder gives a location and a scale for every pixel
    config = ModelConfig(likelihood=name, learn_scale="decoder", likelihood_scale=0.5, scale_floor=1e-3)
    lik = LIKELIHOODS[name](config, (1, 4, 4))
    assert lik.params_per_pixel == 2 and not list(lik.parameters())
    torch.manual_seed(0)
    x = torch.rand(3, 1, 4, 4).clamp(0.01, 0.99)
    params = torch.randn(5, 3, 2, 4, 4)                       # 5 samples of z, 3 images, 2C channels
    loc, raw = params[..., :1, :, :], params[..., 1:, :, :]
    scale = 1e-3 + torch.nn.functional.softplus(raw + lik.raw_scale)
    if name == "logit_normal":
        xc = x.clamp(config.logit_eps, 1 - config.logit_eps)
        ref = (torch.distributions.Normal(loc, scale).log_prob(torch.logit(xc)) - torch.log(xc * (1 - xc)))
    else:
        family = torch.distributions.Normal if name == "gaussian" else torch.distributions.Laplace
        ref = family(torch.sigmoid(loc), scale).log_prob(x)
    assert lik.log_prob(x, params).shape == (5, 3)
    torch.testing.assert_close(lik.log_prob(x, params), ref.sum((-3, -2, -1)), rtol=1e-5, atol=1e-4)
    assert lik.mean(params).shape == (5, 3, 1, 4, 4)
    # at a zero decoder output the scale is the configured initial one
    assert lik.scale(torch.zeros(1, 2, 4, 4)).flatten()[0].item() == pytest.approx(0.5, abs=1e-6)


def test_a_model_with_a_decoder_scale_trains_a_step():
    from vaelab.models import build_model

    model = build_model(ModelConfig(latent_dim=2, hidden=[8], likelihood="gaussian", learn_scale="decoder"), (1, 4, 4))
    x = torch.rand(6, 1, 4, 4)
    q = model.posterior(x)
    params = model.decode(q.rsample())
    assert params.shape == (6, 2, 4, 4)
    loss = -model.likelihood.log_prob(x, params).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.decoder.parameters())
