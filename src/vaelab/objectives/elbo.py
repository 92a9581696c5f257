"""The evidence lower bound (ELBO) and its terms, per example, in nats.

For an image x, encoder q(z|x), decoder p(x|z) and prior p(z) (Kingma & Welling 2014, eq. 3):

    ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))

vaelab reports the *negative* ELBO (an upper bound on -log p(x), lower is better) as
``recon + kl`` with ``recon = -E_q[log p(x|z)]`` estimated with S reparameterised samples and
``kl`` in closed form for a diagonal Gaussian prior, or, for a mixture prior (MoG, VampPrior),
estimated by Monte Carlo from the same S samples, ``(1/S) sum_s log q(z_s|x) - log p(z_s)``
(Tomczak & Welling 2018, Sec. 3.1; see :func:`kl_estimate`). The β-VAE objective (Higgins et al.
2017) minimises ``recon + β·kl``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch.distributions import Distribution, Independent, kl_divergence

from ..models.priors import factorises
from ..models.vae import VAE, reparameterize
from ..runtime import flush_denormals


class ELBOTerms(NamedTuple):
    """Per-example terms, each ``(B,)`` in nats (summed over pixels / latent dimensions)."""

    recon: torch.Tensor
    """Reconstruction NLL, -E_q[log p(x|z)], averaged over the S samples."""
    kl: torch.Tensor
    """KL(q(z|x) || p(z))."""
    kl_per_dim: torch.Tensor | None = None
    """KL per latent dimension, ``(B, D)`` (sums to ``kl`` over D), when the posterior and prior
    factorise over dimensions (None for a mixture prior)."""
    kl_layers: torch.Tensor | None = None
    """A hierarchical VAE's KL per stochastic layer, ``(B, L)`` bottom first (sums to ``kl``);
    None for a one-layer VAE."""

    @property
    def neg_elbo(self) -> torch.Tensor:
        """Negative ELBO = recon + kl, an upper bound on -log p(x): ``(B,)`` nats."""
        return self.recon + self.kl

    def loss(self, beta: float = 1.0, free_bits: float = 0.0) -> torch.Tensor:
        """The β-weighted training loss ``mean_b(recon) + β·KL-term``: a scalar, nats per example.

        The KL term is ``mean_b(kl)``, or with ``free_bits`` = λ > 0 (Kingma et al. 2016, eq. 15)
        ``sum_j max(λ, mean_b KL_j)``: dimensions whose batch-mean KL is below λ nats are not
        pushed further towards the prior.
        """
        if free_bits > 0:
            if self.kl_per_dim is None:
                raise ValueError("free bits need the KL per latent dimension (a diagonal Gaussian prior)")
            kl_term = self.kl_per_dim.mean(0).clamp(min=free_bits).sum()
        else:
            kl_term = self.kl.mean()
        return self.recon.mean() + beta * kl_term


def kl_estimate(q: Independent, p: Distribution, z: torch.Tensor | None = None, *,
                log_qz: torch.Tensor | None = None,
                log_pz: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """KL(q(z|x) || p(z)) for a diagonal-Gaussian posterior ``q`` (batch (B,), event (D,)).

    A diagonal Gaussian ``p`` gives the closed form per dimension (Kingma & Welling 2014,
    Appendix B): ``(kl (B,), kl_per_dim (B, D))``. Any other prior (a mixture) gives the
    unbiased Monte Carlo estimate from the samples ``z: (S, B, D)`` drawn from q,
    ``mean_s [log q(z_s|x) - log p(z_s)]`` (Tomczak & Welling 2018, Sec. 3.1), and no per-dimension
    split (the prior does not factorise): ``(kl (B,), None)``. Both in nats. ``log_qz`` and
    ``log_pz`` (``(S, B)``) are log q(z_s|x) and log p(z_s) when the caller has them already.
    """
    if factorises(p):
        kl_per_dim = kl_divergence(q.base_dist, p.base_dist)  # (B, D)
        return kl_per_dim.sum(-1), kl_per_dim
    log_qz = q.log_prob(z) if log_qz is None else log_qz
    log_pz = p.log_prob(z) if log_pz is None else log_pz
    return (log_qz - log_pz).mean(0), None


def elbo_terms(model: VAE, x: torch.Tensor, n_samples: int = 1,
               generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> ELBOTerms:
    """The ELBO's terms for a batch ``x: (B, C, H, W)``, with ``n_samples`` (S) draws of z; for a
    conditional VAE with the labels ``y: (B,)``, the ELBO of log p(x|y) (Sohn et al. 2015, eq. 4).

    Returns:
        :class:`ELBOTerms` with ``recon`` and ``kl`` of shape ``(B,)``, nats per example.
    """
    return elbo_pass(model, x, n_samples, generator, y)[0]


def elbo_pass(model: VAE, x: torch.Tensor, n_samples: int = 1, generator: torch.Generator | None = None,
              y: torch.Tensor | None = None) -> tuple[ELBOTerms, torch.Tensor]:
    """:func:`elbo_terms` and the decoder's outputs (the likelihood's parameters, ``(S, B, ...)``)
    it computed them from (a perceptual term compares their means with ``x``)."""
    if getattr(model, "noise_dim", None) is not None:  # a hierarchical VAE: every layer's terms
        from .hierarchical import hierarchical_elbo_pass

        return hierarchical_elbo_pass(model, x, n_samples, generator)
    q = model.posterior(x, y)
    z = reparameterize(q, n_samples, generator)  # (S, B, D)
    params = model.decode(z, y)
    log_px_z = model.likelihood.log_prob(x, params)  # (S, B)
    kl, kl_per_dim = kl_estimate(q, model.prior_distribution(), z)  # closed form, or MC for a mixture prior
    return ELBOTerms(recon=-log_px_z.mean(0), kl=kl, kl_per_dim=kl_per_dim), params


@torch.inference_mode()
def evaluate_elbo(model: VAE, images: torch.Tensor, batch_size: int = 1000, n_samples: int = 1,
                  seed: int = 0, device: torch.device | str = "cpu",
                  labels: torch.Tensor | None = None) -> dict[str, float]:
    """Mean reconstruction NLL, KL and negative ELBO over ``images: (N, C, H, W)`` (with
    ``labels: (N,)`` for a conditional VAE: the bound on -log p(x|y)).

    The latent samples come from a generator seeded with ``seed``, so evaluating the same model
    twice gives the same numbers and does not disturb the training RNG.

    Returns:
        ``{"recon", "kl", "neg_elbo"}``: nats per example (summed over pixels and latent
        dimensions, averaged over the N examples), accumulated in float64; a hierarchical VAE of
        L > 1 layers also ``kl_1`` ... ``kl_L``, each layer's KL.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    layers = len(getattr(model, "latent_dims", ())) if getattr(model, "noise_dim", None) is not None else 0
    totals = torch.zeros(2 + (layers if layers > 1 else 0), dtype=torch.float64, device=device)
    with flush_denormals(device):
        label_batches = labels.split(batch_size) if labels is not None else [None] * len(images.split(batch_size))
        for x, y in zip(images.split(batch_size), label_batches):
            y = y.to(device, non_blocking=True) if y is not None else None
            terms = elbo_terms(model, x.to(device, non_blocking=True), n_samples, generator, y)
            sums = [terms.recon.sum(), terms.kl.sum()]
            if layers > 1:
                sums += list(terms.kl_layers.sum(0))
            totals += torch.stack(sums).double()
    model.train(was_training)
    recon, kl, *per_layer = (totals / images.shape[0]).tolist()
    return {"recon": recon, "kl": kl, "neg_elbo": recon + kl, **{f"kl_{i + 1}": v for i, v in enumerate(per_layer)}}
