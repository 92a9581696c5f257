"""The importance-weighted bound (IWAE, Burda et al. 2016) and its log-weights.

For an image x and K samples z_k ~ q(z|x), the importance weights are

    w_k = p(x|z_k) p(z_k) / q(z_k|x)                          (Burda et al. 2016, eq. 7)

and the bound is

    L_K(x) = E[ log (1/K) sum_k w_k ] <= log p(x)               (eq. 8)

L_1 is the ELBO; L_K is non-decreasing in K and tends to log p(x) as K -> infinity (Theorem 1).
Training maximises L_K with one K-sample estimate per example; evaluation uses a large K as an
estimate of log p(x) (:mod:`vaelab.evaluation.loglik`). All values are in nats per example,
summed over pixels (log p(x|z)) and latent dimensions (log p(z), log q(z|x)).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch.distributions import Distribution

from ..models.vae import VAE, reparameterize
from .elbo import kl_estimate


class LogWeights(NamedTuple):
    """The parts of log w_k for K samples of B examples, each ``(K, B)`` nats."""

    log_px_z: torch.Tensor
    """log p(x|z_k), summed over pixels."""
    log_pz: torch.Tensor
    """log p(z_k) under the prior."""
    log_qz: torch.Tensor
    """log q(z_k|x) under the posterior."""

    def total(self, beta: float = 1.0) -> torch.Tensor:
        """``log p(x|z) + beta * (log p(z) - log q(z|x))``: log w_k when beta = 1."""
        return self.log_px_z + beta * (self.log_pz - self.log_qz)


def log_weights(model: VAE, x: torch.Tensor, z: torch.Tensor, q: Distribution | None = None,
                p: Distribution | None = None, y: torch.Tensor | None = None,
                log_qz: torch.Tensor | None = None) -> LogWeights:
    """The log importance weights of latents ``z: (K, B, D)`` for images ``x: (B, C, H, W)``
    (Burda et al. 2016, Eq. 8: log w = log p(x|z) + log p(z) - log q(z|x)).

    ``q`` is q(z|x) and ``p`` the prior when already computed (q: batch shape (B,), event (D,));
    log p(z) is the prior's exact log-density, a mixture's included. ``y: (B,)`` are the labels of
    a conditional VAE (the weights are then those of p(x|y)). ``log_qz: (K, B)``: log q(z|x)
    when the caller has it already (the evaluation's, from the noise that drew ``z``); else
    ``q.log_prob(z)``.
    """
    p = model.prior_distribution() if p is None else p
    if log_qz is None:
        log_qz = (model.posterior(x, y) if q is None else q).log_prob(z)  # (K, B)
    return LogWeights(
        log_px_z=model.likelihood.log_prob(x, model.decode(z, y)),  # (K, B)
        log_pz=p.log_prob(z),  # (K, B)
        log_qz=log_qz,
    )


def log_mean_exp(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """``log((1/K) sum_k exp(values_k))`` along ``dim`` (K = its size), computed as
    ``m + log(sum exp(values - m)) - log K`` with m the maximum, so that no exponential
    overflows or underflows to 0 (the log-sum-exp trick)."""
    return torch.logsumexp(values, dim) - math.log(values.shape[dim])


class IWAETerms(NamedTuple):
    """Per-example IWAE terms, each ``(B,)`` nats."""

    neg_bound: torch.Tensor
    """-L_K(x): the negative importance-weighted bound (one K-sample estimate), the loss."""
    recon: torch.Tensor
    """-(1/K) sum_k log p(x|z_k): the reconstruction NLL of the same samples."""
    kl: torch.Tensor
    """KL(q(z|x) || p(z)) for monitoring (the bound itself uses log p - log q): closed form for a
    diagonal Gaussian prior, else the Monte Carlo mean of log q - log p over the K samples."""
    kl_per_dim: torch.Tensor | None = None
    """``(B, D)``."""
    kl_layers: torch.Tensor | None = None
    """A hierarchical VAE's KL per layer, ``(B, L)`` (None for one layer)."""

    def loss(self) -> torch.Tensor:
        """Mean negative bound over the batch: a scalar, nats per example."""
        return self.neg_bound.mean()


def iwae_terms(model: VAE, x: torch.Tensor, k: int, beta: float = 1.0,
               generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> IWAETerms:
    """The K-sample IWAE bound for a batch ``x: (B, C, H, W)``, differentiable (reparameterised
    samples, Burda et al. 2016, Sec. 3).

    ``beta`` weighs log p(z) - log q(z|x) inside each log-weight; beta = 1 is the IWAE bound, and
    K = 1 then gives the (single-sample) ELBO, in expectation the β-ELBO recon + β·KL.

    Raises:
        ValueError: ``k < 1``.
    """
    if k < 1:
        raise ValueError(f"the IWAE bound needs k >= 1 samples, got {k}")
    if getattr(model, "noise_dim", None) is not None:  # a hierarchical VAE: the weights of whole paths
        from .hierarchical import draw_noise, layer_kls, path_log_weights

        encoded = model.encode(x)
        p = model.prior_distribution()
        path = model.path(x, draw_noise(model, k, x.shape[0], generator, encoded[0][0].device), encoded, p)
        log_px_z, log_ratio = path_log_weights(model, x, path)  # (K, B) each
        kl_layers, per_dim = layer_kls(model, path, p, encoded)
        return IWAETerms(neg_bound=-log_mean_exp(log_px_z + beta * log_ratio, 0), recon=-log_px_z.mean(0),
                         kl=kl_layers.sum(-1), kl_per_dim=per_dim, kl_layers=kl_layers)
    q = model.posterior(x, y)
    z = reparameterize(q, k, generator)  # (K, B, D)
    p = model.prior_distribution()  # once: the VampPrior encodes its pseudo-inputs
    parts = log_weights(model, x, z, q, p, y)
    kl, kl_per_dim = kl_estimate(q, p, log_qz=parts.log_qz, log_pz=parts.log_pz)  # a mixture: MC of the K samples
    return IWAETerms(neg_bound=-log_mean_exp(parts.total(beta), 0), recon=-parts.log_px_z.mean(0),
                     kl=kl, kl_per_dim=kl_per_dim)
