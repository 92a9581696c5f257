import math

import torch
from torch.distributions import Independent, Normal

from vaelab.config import Config, ModelConfig
from vaelab.models import NormalPrior, build_model
from vaelab.objectives import elbo_terms, kl_term


def test_kl_to_a_shifted_wide_prior_matches_monte_carlo_and_the_closed_form():
    torch.manual_seed(0)
    mu, sigma = torch.randn(5, 3), torch.rand(5, 3) + 0.2
    q = Independent(Normal(mu, sigma), 1)
    prior = NormalPrior(3, loc=1.0, scale=2.0).distribution()  # N(1, 2) with 2 the std
    analytic = kl_term(q, prior)
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
