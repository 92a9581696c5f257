"""Hierarchical VAEs against references: one layer is today's VAE, the IWAE bound with k = 1 is
the ELBO in expectation, the importance-sampled NLL lies below the negative ELBO and falls with
K, and the ladder's merge is the product of two Gaussians."""

import math

import pytest
import torch

from vaelab.config import Config
from vaelab.evaluation.loglik import importance_log_likelihood
from vaelab.models import build_model
from vaelab.models.hierarchical import LADDER_LOG_STD_BOUND, HierarchicalVAE, precision_merge
from vaelab.models.likelihoods import LIKELIHOODS
from vaelab.models.priors import PRIORS
from vaelab.objectives.elbo import elbo_pass
from vaelab.objectives.iwae import iwae_terms

SHAPE = (1, 8, 8)


def model(dims, inference="bottom_up", prior="normal", seed=0):
    torch.manual_seed(seed)
    config = Config.from_dict({"model": {"latent_dim": dims[-1], "hidden": [16], "activation": "tanh",
                                         "prior": prior, "mog_components": 3}}).model
    return HierarchicalVAE(SHAPE, dims, [16], [8], "tanh", LIKELIHOODS["bernoulli"](config, SHAPE),
                           PRIORS[prior].from_config(config, SHAPE), inference)


@pytest.fixture
def x():
    return (torch.rand(6, *SHAPE, generator=torch.Generator().manual_seed(5)) > 0.5).float()


def test_one_layer_is_todays_vae_same_weights_same_numbers(x):
    config = Config.from_dict({"model": {"latent_dim": 4, "hidden": [16], "activation": "tanh"}}).model
    vae = build_model(config, SHAPE)
    one = model([4])
    one.load_state_dict(vae.state_dict())  # the same parameter names: encoder, decoder, prior, likelihood
    a, _ = elbo_pass(vae, x, 3, torch.Generator().manual_seed(1))
    b, _ = elbo_pass(one, x, 3, torch.Generator().manual_seed(1))
    assert torch.equal(a.recon, b.recon) and torch.equal(a.kl, b.kl) and torch.equal(a.kl_per_dim, b.kl_per_dim)
    c = iwae_terms(vae, x, 5, generator=torch.Generator().manual_seed(2))
    d = iwae_terms(one, x, 5, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(c.neg_bound, d.neg_bound)
    e, f = importance_log_likelihood(vae, x, k=40), importance_log_likelihood(one, x, k=40)
    torch.testing.assert_close(e.log_px, f.log_px, atol=1e-5, rtol=0)
    torch.testing.assert_close(e.kl, f.kl)
    with torch.no_grad():
        torch.testing.assert_close(one.posterior(x).mean, vae.posterior(x).mean)
        torch.testing.assert_close(one.decode_mean(torch.zeros(2, 4)), vae.decode_mean(torch.zeros(2, 4)))


@pytest.mark.parametrize("inference", ["bottom_up", "ladder"])
@pytest.mark.parametrize("prior", ["normal", "mog"])
def test_the_iwae_bound_with_k_1_is_the_elbo_in_expectation(x, inference, prior):
    m = model([6, 5, 4], inference, prior)
    gen_a, gen_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)
    with torch.no_grad():
        elbo = torch.stack([(lambda t: t.recon + t.kl)(elbo_pass(m, x, 1, gen_a)[0]) for _ in range(400)])
        iwae1 = torch.stack([iwae_terms(m, x, 1, generator=gen_b).neg_bound for _ in range(400)])
    diff = elbo.mean(0) - iwae1.mean(0)  # (B,)
    stderr = (elbo.var(0) / 400 + iwae1.var(0) / 400).sqrt()
    assert (diff.abs() < 4 * stderr + 1e-3).all(), (diff, stderr)


@pytest.mark.parametrize("inference", ["bottom_up", "ladder"])
def test_the_is_nll_is_below_the_negative_elbo_and_falls_with_k(x, inference):
    m = model([6, 4], inference)
    with torch.no_grad():
        neg_elbo = torch.stack([(lambda t: t.recon + t.kl)(elbo_pass(m, x, 1, torch.Generator().manual_seed(s))[0])
                                for s in range(300)]).mean(0)  # (B,), a precise estimate
    # L_K rises with K in expectation (Burda et al. 2016, Theorem 1): averaged over noise seeds
    nll = {k: torch.stack([-importance_log_likelihood(m, x, k=k, seed=s).log_px for s in range(seeds)]).mean(0)
           for k, seeds in ((1, 40), (10, 10), (1000, 1))}
    assert (nll[1000] < neg_elbo).all()
    means = [nll[k].mean().item() for k in (1, 10, 1000)]
    assert means == sorted(means, reverse=True), means
    assert abs(nll[1].mean().item() - neg_elbo.mean().item()) < 0.3  # K = 1 is the ELBO


def test_the_ladder_merge_is_the_product_of_two_gaussians():
    g = torch.Generator().manual_seed(0)
    mean_a, mean_b = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    std_a, std_b = torch.rand(4, 3, generator=g) + 0.2, torch.rand(4, 3, generator=g) + 0.2
    mean, std = precision_merge(mean_a, std_a, mean_b, std_b)
    # closed form: N(a) N(b) = N(a; b, va + vb) N(mean, var) with var = va vb / (va + vb)
    var_a, var_b = std_a ** 2, std_b ** 2
    torch.testing.assert_close(std ** 2, var_a * var_b / (var_a + var_b))
    torch.testing.assert_close(mean, (mean_a * var_b + mean_b * var_a) / (var_a + var_b))
    # and log N(z; a) + log N(z; b) - log N(z; merged) does not depend on z
    normal = torch.distributions.Normal
    zs = torch.randn(7, 4, 3, generator=g)
    gap = normal(mean_a, std_a).log_prob(zs) + normal(mean_b, std_b).log_prob(zs) - normal(mean, std).log_prob(zs)
    torch.testing.assert_close(gap, gap[:1].expand_as(gap))


@pytest.mark.parametrize("inference", ["bottom_up", "ladder"])
def test_a_path_is_differentiable_and_every_layer_is_used(x, inference):
    m = model([6, 5, 4], inference)
    terms, _ = elbo_pass(m, x, 2, torch.Generator().manual_seed(0))
    assert terms.kl_layers.shape == (6, 3)
    torch.testing.assert_close(terms.kl_layers.sum(-1), terms.kl)
    terms.loss().backward()
    for name, p in m.named_parameters():
        if "prior" not in name:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
    means = m.layer_means(x)
    assert [tuple(t.shape) for t in means] == [(6, 6), (6, 5), (6, 4)]
    torch.testing.assert_close(means[-1], m.posterior(x).mean)
    assert m.sample(3).shape == (3, *SHAPE) and 0 <= m.sample(3).min() and m.sample(3).max() <= 1


def test_the_config_builds_burdas_two_layer_model():
    # 784-200-200 -> z_1 = 100 -> 100-100 -> z_2 = 50 (Burda et al. 2016, Appendix C)
    config = Config.from_dict({"model": {"latent_dim": 50, "lower_latents": [100], "hidden": [200, 200],
                                         "activation": "tanh", "init": "xavier_uniform"}}).model
    m = build_model(config, (1, 28, 28))
    assert isinstance(m, HierarchicalVAE) and m.latent_dims == [100, 50] and m.inference == "bottom_up"
    linear = [(layer.in_features, layer.out_features) for layer in m.modules() if isinstance(layer, torch.nn.Linear)]
    assert (784, 200) in linear and (200, 200) in linear and (100, 100) in linear and (100, 50) in linear
    assert (50, 100) in linear and (200, 784) in linear  # p(z_1 | z_2) from z_2 = 50, p(x | z_1) back to 784
    ladder = build_model(Config.from_dict({"model": {**config.__dict__, "inference": "ladder",
                                                      "upper_hidden": [64]}}).model, (1, 28, 28))
    assert ladder.inference == "ladder" and hasattr(ladder, "heads")


@pytest.mark.parametrize("model, message", [
    ({"lower_latents": [8], "network": "conv"}, "network conv is not supported"),
    ({"lower_latents": [8], "conditional": True}, "model.conditional is not supported"),
    ({"lower_latents": [8], "dropout": 0.1}, "model.dropout is not supported"),
    ({"upper_hidden": [8]}, "model.upper_hidden applies to hierarchical VAEs only"),
    ({"inference": "ladder"}, "model.inference applies to hierarchical VAEs only"),
])
def test_what_a_hierarchical_model_cannot_take_is_one_line(model, message):
    from vaelab.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"model": {"latent_dim": 4, **model}})


@pytest.mark.parametrize("inference", ["bottom_up", "ladder"])
def test_only_the_ladder_bounds_log_sigma_so_a_vanishing_generative_variance_keeps_the_kl_finite(x, inference):
    # with the ladder, burda-vae-2l.yaml diverged within 50 epochs once p(z_1 | z_2)'s σ fell below
    # 1e-4; bottom-up keeps the unbounded exp(½ log σ²) of Burda et al.'s model
    m = model([6, 5, 4], inference)
    with torch.no_grad():
        m.down[0].heads.log_var.weight.zero_()
        m.down[0].heads.log_var.bias.fill_(-60.0)  # σ_p = e^-30 unbounded
        path = m.path(x, torch.randn(2, 6, m.noise_dim, generator=torch.Generator().manual_seed(0)))
        terms, _ = elbo_pass(m, x, 2, torch.Generator().manual_seed(0))
    p_std = path.layers[0].p_std
    if inference == "bottom_up":
        torch.testing.assert_close(p_std, torch.full_like(p_std, math.exp(-30.0)))
    else:
        assert p_std.min() >= math.exp(-LADDER_LOG_STD_BOUND) * (1 - 1e-5) and p_std.max() < 1e-2
        assert torch.isfinite(terms.kl).all() and terms.kl_layers[:, 0].max() < 100  # q(z_1) merges onto p
