"""The ELBO and the IWAE bound of a hierarchical VAE (:mod:`vaelab.models.hierarchical`), over
all its stochastic layers, per example, in nats.

With a path z_1 ... z_L drawn from q (reparameterised, S samples per example):

    ELBO(x) = E_q[log p(x | z_1)] - Σ_l KL_l,
    KL_l    = E_q[log q(z_l | ·) - log p(z_l | z_{l+1})]        (p(z_L) the prior for l = L)

(Burda et al. 2016, Appendix; Sønderby et al. 2016, eq. 6). Each KL_l is in closed form where
that is exact and otherwise a Monte Carlo estimate from the same S samples:

* the top layer against a diagonal Gaussian prior: closed form, KL(q(z_L | ·) || p(z_L)) per
  sample of the layers it depends on (Kingma & Welling 2014, Appendix B); against a mixture
  prior (MoG, VampPrior), Monte Carlo;
* a lower layer of the ladder: closed form, since q(z_l | z_{l+1}, x) and p(z_l | z_{l+1})
  are both Gaussians given the z_{l+1} sampled before z_l;
* a lower layer of bottom-up inference: Monte Carlo, since p(z_l | z_{l+1}) depends on z_{l+1},
  which is sampled from q(z_{l+1} | z_l) after z_l.

The K-sample IWAE bound's log-weights are ``log p(x | z_1) + Σ_l (log p_l - log q_l)``
(Burda et al. 2016, eq. 7) over the same paths.
"""

from __future__ import annotations

import torch
from torch.distributions import Distribution, Normal, kl_divergence

from ..models.hierarchical import HierarchicalVAE, Path
from ..models.priors import factorises
from .elbo import ELBOTerms


def draw_noise(model: HierarchicalVAE, n_samples: int, batch: int, generator: torch.Generator | None,
               device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard-normal noise for ``n_samples`` paths of ``batch`` examples: ``(S, B, D_1+...+D_L)``."""
    return torch.randn((n_samples, batch, model.noise_dim), generator=generator, device=device, dtype=dtype)


def layer_kls(model: HierarchicalVAE, path: Path, prior: Distribution, encoded: list) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Every layer's KL per example, ``(B, L)`` nats (closed form or Monte Carlo, see the module
    docstring), and the top layer's KL per dimension ``(B, D_L)`` when it is in closed form from
    parameters that depend on x alone (one layer, or the ladder; None otherwise)."""
    kls, per_dim = [], None
    last = len(path.layers) - 1
    for i, layer in enumerate(path.layers):
        if i == last and factorises(prior):
            if model.inference == "ladder" or last == 0:  # q(z_L | x) depends on x alone: (B, D)
                mean, std = encoded[-1] if model.inference == "ladder" else encoded[0]
                per_dim = kl_divergence(Normal(mean, std), prior.base_dist)  # (B, D)
                kls.append(per_dim.sum(-1))
            else:  # bottom-up: q(z_L | z_{L-1}) per sample of z_{L-1}
                kls.append(kl_divergence(Normal(layer.q_mean, layer.q_std), prior.base_dist).sum(-1).mean(0))
        elif i < last and model.inference == "ladder":
            kls.append(kl_divergence(Normal(layer.q_mean, layer.q_std), Normal(layer.p_mean, layer.p_std))
                       .sum(-1).mean(0))
        else:
            kls.append((layer.log_q - layer.log_p).mean(0))
    return torch.stack(kls, -1), per_dim


def hierarchical_elbo_pass(model: HierarchicalVAE, x: torch.Tensor, n_samples: int = 1,
                           generator: torch.Generator | None = None) -> tuple[ELBOTerms, torch.Tensor]:
    """The ELBO's terms for a batch ``x: (B, C, H, W)`` with ``n_samples`` paths per example,
    and the likelihood's parameters ``(S, B, ...)`` they came from.

    Returns:
        :class:`~vaelab.objectives.elbo.ELBOTerms`: ``recon`` ``(B,)``, ``kl`` ``(B,)`` (the sum
        of the layers'), ``kl_per_dim`` (the top layer's, see :func:`layer_kls`) and
        ``kl_layers`` ``(B, L)``.
    """
    encoded = model.encode(x)
    prior = model.prior_distribution()
    eps = draw_noise(model, n_samples, x.shape[0], generator, encoded[0][0].device)
    path = model.path(x, eps, encoded, prior)
    log_px_z = model.likelihood.log_prob(x, path.params)  # (S, B)
    kl_layers, per_dim = layer_kls(model, path, prior, encoded)
    return ELBOTerms(recon=-log_px_z.mean(0), kl=kl_layers.sum(-1), kl_per_dim=per_dim, kl_layers=kl_layers), path.params


def path_log_weights(model: HierarchicalVAE, x: torch.Tensor, path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p(x | z_1), Σ_l log p_l - log q_l)``, each ``(S, B)`` nats, for a sampled path."""
    log_px_z = model.likelihood.log_prob(x, path.params)
    log_ratio = sum(layer.log_p - layer.log_q for layer in path.layers)
    return log_px_z, log_ratio


__all__ = ["draw_noise", "hierarchical_elbo_pass", "layer_kls", "path_log_weights"]
