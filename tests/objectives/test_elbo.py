import math

import torch
from torch.distributions import Independent, Normal

from vaelab.config import ModelConfig
from vaelab.models import build_model
from vaelab.objectives import elbo_terms, kl_estimate


def test_closed_form_kl_matches_monte_carlo():
    torch.manual_seed(0)
    q = Independent(Normal(torch.randn(3, 4), torch.rand(3, 4) + 0.3), 1)
    p = Independent(Normal(torch.zeros(4), torch.ones(4)), 1)
    analytic, per_dim = kl_estimate(q, p)  # the closed form the objectives use
    z = q.sample((200_000,))
    monte_carlo = (q.log_prob(z) - p.log_prob(z)).mean(0)
    assert analytic.shape == (3,) and per_dim.shape == (3, 4)
    torch.testing.assert_close(per_dim.sum(-1), analytic)
    torch.testing.assert_close(analytic, monte_carlo, atol=0.02, rtol=0.01)
    # Kingma & Welling 2014, Appendix B
    mu, var = q.base_dist.loc, q.base_dist.scale ** 2
    torch.testing.assert_close(analytic, -0.5 * (1 + var.log() - mu ** 2 - var).sum(-1))


def test_elbo_terms_are_per_example_sums_in_nats():
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=2, hidden=[8]), (1, 4, 4))
    x = torch.bernoulli(torch.full((6, 1, 4, 4), 0.3))
    gen = torch.Generator().manual_seed(1)
    terms = elbo_terms(model, x, n_samples=1, generator=gen)
    assert terms.recon.shape == (6,) and terms.kl.shape == (6,)
    # recomputed by hand: same epsilon, BCE summed over the 16 pixels
    q = model.posterior(x)
    eps = torch.randn((1, 6, 2), generator=torch.Generator().manual_seed(1))
    logits = model.decode(q.mean + q.stddev * eps)[0]
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="none").sum((1, 2, 3))
    torch.testing.assert_close(terms.recon, bce)
    torch.testing.assert_close(terms.neg_elbo, terms.recon + terms.kl)
    torch.testing.assert_close(terms.loss(beta=0.5), (terms.recon + 0.5 * terms.kl).mean())
    # an untrained model on 16 binary pixels costs about 16 * log 2 nats
    assert abs(terms.recon.mean().item() - 16 * math.log(2)) < 4


def test_more_samples_average_the_reconstruction_term():
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=2, hidden=[8]), (1, 4, 4))
    x = torch.rand(3, 1, 4, 4)
    many = elbo_terms(model, x, n_samples=2000, generator=torch.Generator().manual_seed(0))
    few = torch.stack([elbo_terms(model, x, 1, torch.Generator().manual_seed(s)).recon for s in range(2000)])
    torch.testing.assert_close(many.recon, few.mean(0), atol=0.05, rtol=0)
    torch.testing.assert_close(many.kl, elbo_terms(model, x).kl)  # KL is exact, sample-free
