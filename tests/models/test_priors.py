import math

import torch
from torch.distributions import Independent, Normal

from vaelab.config import Config, ModelConfig
from vaelab.models import NormalPrior, build_model
from vaelab.objectives import elbo_terms, kl_estimate


def test_kl_to_a_shifted_wide_prior_matches_monte_carlo_and_the_closed_form():
    torch.manual_seed(0)
    mu, sigma = torch.randn(5, 3), torch.rand(5, 3) + 0.2
    q = Independent(Normal(mu, sigma), 1)
    prior = NormalPrior(3, loc=1.0, scale=2.0).distribution()  # N(1, 2) with 2 the std
    analytic, _ = kl_estimate(q, prior)  # the closed form the objectives use
    z = q.sample((200_000,))
    torch.testing.assert_close(analytic, (q.log_prob(z) - prior.log_prob(z)).mean(0), atol=0.03, rtol=0.01)
    # the study's eq. 5: -1/2 sum_j [1 - 2 log 2 + log s_j^2 - s_j^2 / 4 - (1 - m_j)^2 / 4]
    study = -0.5 * (1 - 2 * math.log(2) + torch.log(sigma ** 2) - sigma ** 2 / 4 - (1 - mu) ** 2 / 4).sum(-1)
    torch.testing.assert_close(analytic, study)


def test_prior_std_and_variance_spellings_agree():
    by_std = Config.from_dict({"model": {"prior_loc": 1, "prior_std": 2}}).model
    by_var = Config.from_dict({"model": {"prior_loc": [1], "prior_variance": [4]}}).model
    assert by_std.prior_scale() == by_var.prior_scale() == [2.0]


def test_per_dimension_prior_and_samples_use_it():
    config = ModelConfig(latent_dim=2, hidden=[8], prior_loc=[10.0, -10.0], prior_std=[0.001, 0.001])
    model = build_model(config, (1, 2, 2))
    p = model.prior_distribution()
    torch.testing.assert_close(p.mean, torch.tensor([10.0, -10.0]))
    x = torch.rand(3, 1, 2, 2)
    terms = elbo_terms(model, x)
    assert terms.kl_per_dim.shape == (3, 2)
    torch.testing.assert_close(terms.kl_per_dim.sum(-1), terms.kl)


# --- mixture priors: MoG and VampPrior ----------------------------------------------------------

from torch.distributions import Categorical, MixtureSameFamily  # noqa: E402

from vaelab.models import DiagonalGaussianMixture, MixturePrior, VampPrior, sample_prior  # noqa: E402


def test_mixture_log_density_matches_torch_mixture_same_family():
    torch.manual_seed(0)
    logits, loc, scale = torch.randn(7), 3 * torch.randn(7, 4), torch.rand(7, 4) * 2 + 0.05
    z = 4 * torch.randn(5, 3, 4)  # (S, B, D), far tails included
    reference = MixtureSameFamily(Categorical(logits=logits), Independent(Normal(loc, scale), 1))
    ours = DiagonalGaussianMixture(logits, loc, scale)
    assert ours.log_prob(z).shape == (5, 3)
    torch.testing.assert_close(ours.log_prob(z), reference.log_prob(z), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(ours.mean, reference.mean)
    # gradients flow to z and the parameters
    loc.requires_grad_(True)
    DiagonalGaussianMixture(logits, loc, scale).log_prob(z).sum().backward()
    assert loc.grad is not None and torch.isfinite(loc.grad).all()


def test_mog_prior_is_a_uniform_mixture_of_its_learned_components():
    torch.manual_seed(1)
    prior = MixturePrior(latent_dim=3, components=4)
    p = prior.distribution()
    torch.testing.assert_close(p.mixture_distribution.probs, torch.full((4,), 0.25))
    reference = MixtureSameFamily(Categorical(probs=torch.full((4,), 0.25)),
                                  Independent(Normal(prior.means, prior.log_scale.exp()), 1))
    z = torch.randn(10, 3)
    torch.testing.assert_close(p.log_prob(z), reference.log_prob(z), rtol=1e-5, atol=1e-5)
    assert {name for name, _ in prior.named_parameters()} == {"means", "log_scale"}


def test_vamp_prior_with_one_pseudo_input_equal_to_an_image_is_that_image_posterior():
    torch.manual_seed(2)
    config = ModelConfig(latent_dim=3, hidden=[16], prior="vamp", vamp_components=1)
    model = build_model(config, (1, 4, 4)).eval()
    assert isinstance(model.prior, VampPrior) and model.prior.pseudo_inputs.shape == (1, 1, 4, 4)
    x = torch.rand(1, 1, 4, 4)  # a "training image" in [0, 1]: the hard tanh keeps it as it is
    with torch.no_grad():
        model.prior.pseudo_inputs.copy_(x)
    z = torch.randn(6, 3)
    posterior = model.posterior(x)  # batch (1,)
    torch.testing.assert_close(model.prior_distribution().log_prob(z), posterior.log_prob(z[:, None])[:, 0],
                               rtol=1e-5, atol=1e-5)


def test_vamp_prior_gradients_reach_pseudo_inputs_and_encoder():
    torch.manual_seed(3)
    model = build_model(ModelConfig(latent_dim=2, hidden=[8], prior="vamp", vamp_components=3), (1, 3, 3))
    terms = elbo_terms(model, torch.rand(4, 1, 3, 3).round())
    assert terms.kl_per_dim is None and terms.kl.shape == (4,)
    terms.neg_elbo.mean().backward()
    assert model.prior.pseudo_inputs.grad.abs().sum() > 0


def test_monte_carlo_kl_of_a_one_component_mixture_matches_the_closed_form():
    torch.manual_seed(4)
    q = Independent(Normal(torch.randn(3, 2), torch.rand(3, 2) + 0.3), 1)
    loc, scale = torch.randn(1, 2), torch.rand(1, 2) + 0.5
    mixture = DiagonalGaussianMixture(torch.zeros(1), loc, scale)
    z = q.sample((100_000,))
    kl_mc, per_dim = kl_estimate(q, mixture, z)
    assert per_dim is None
    exact, exact_per_dim = kl_estimate(q, Independent(Normal(loc[0], scale[0]), 1), z)
    torch.testing.assert_close(exact, exact_per_dim.sum(-1))
    torch.testing.assert_close(kl_mc, exact, atol=0.02, rtol=0.02)


def test_mixture_samples_follow_the_mixture_and_the_seed():
    mixture = DiagonalGaussianMixture(torch.tensor([0.0, 1.0]), torch.tensor([[-5.0], [5.0]]), torch.tensor([[0.1], [0.1]]))
    z = sample_prior(mixture, 20_000, torch.Generator().manual_seed(0))
    assert z.shape == (20_000, 1)
    share = (z > 0).float().mean().item()  # weight of the second component: e / (1 + e) = 0.731
    assert abs(share - math.e / (1 + math.e)) < 0.01
    torch.testing.assert_close(z.mean(), mixture.mean[0], atol=0.1, rtol=0)
    again = sample_prior(mixture, 20_000, torch.Generator().manual_seed(0))
    assert torch.equal(z, again)
    # a Gaussian prior draws exactly loc + scale * randn, as before mixtures existed
    normal = NormalPrior(3, loc=1.0, scale=2.0).distribution()
    expected = 1.0 + 2.0 * torch.randn((4, 3), generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(sample_prior(normal, 4, torch.Generator().manual_seed(5)), expected)


def test_mixture_priors_reject_gaussian_prior_options_and_free_bits():
    import pytest

    from vaelab.errors import ConfigError

    with pytest.raises(ConfigError, match="free_bits needs the KL per latent dimension"):
        Config.from_dict({"model": {"prior": "mog"}, "objective": {"free_bits": 0.5}})
    with pytest.raises(ConfigError, match="prior vamp learns its own"):
        Config.from_dict({"model": {"prior": "vamp", "prior_std": 2}})
