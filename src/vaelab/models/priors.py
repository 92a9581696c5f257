"""Priors p(z) over the latent space; each returns a torch.distributions object of event
shape ``(D,)``.

=========  ==============================================================  =====================
``prior``  p(z)                                                            KL(q(z|x) || p(z))
=========  ==============================================================  =====================
normal     N(loc, diag(scale^2)), fixed (Kingma & Welling 2014, Sec. 3)    closed form
mog        (1/K) sum_k N(mu_k, diag(sigma_k^2)), mu_k and sigma_k learned  Monte Carlo
vamp       (1/K) sum_k q(z | u_k), K learned pseudo-inputs u_k             Monte Carlo
           (VampPrior, Tomczak & Welling 2018, eq. 9)
=========  ==============================================================  =====================

A mixture prior's KL to a Gaussian posterior has no closed form; the objectives estimate it
with the ELBO's own samples, ``mean_s [log q(z_s|x) - log p(z_s)]`` (Tomczak & Welling 2018,
Sec. 3.1), and every log p(z) (IWAE bound, importance-sampled NLL) is the mixture's exact
log-density (:class:`DiagonalGaussianMixture`). The mixture weights are uniform, 1/K, as in
Tomczak & Welling 2018 (eqs. 8-9). The learned parameters are the prior's ``nn.Parameter`` s,
so they are trained by the optimiser with the rest of the model and saved in its state dict
(checkpoints, resume).

Adding a prior: one class here with ``from_config(config, image_shape)`` and
``distribution(encoder)``, registered in :data:`PRIORS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.distributions import Categorical, Distribution, Independent, MixtureSameFamily, Normal

from ..config import ModelConfig

LOG_2PI = math.log(2.0 * math.pi)


class NormalPrior(nn.Module):
    """p(z) = N(loc, diag(scale^2)), a diagonal Gaussian; N(0, I) by default (Kingma & Welling
    2014, Sec. 3). ``loc`` and ``scale`` are one value or one per dimension.

    The KL of a Gaussian posterior to it is closed-form: per dimension
    ``log(s_p / s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2``.
    """

    def __init__(self, latent_dim: int, loc: list[float] | float = 0.0, scale: list[float] | float = 1.0):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim) + torch.as_tensor(loc, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim) * torch.as_tensor(scale, dtype=torch.float32),
                             persistent=False)

    @classmethod
    def from_config(cls, config: ModelConfig, image_shape: tuple[int, int, int] | None = None) -> "NormalPrior":
        return cls(config.latent_dim, config.prior_loc, config.prior_scale())

    def distribution(self, encoder: Callable | None = None) -> Distribution:
        """``Independent(Normal(loc, scale), 1)``: batch shape (), event shape (D,)."""
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1, validate_args=False)


class DiagonalGaussianMixture(MixtureSameFamily):
    """A mixture of K diagonal Gaussians over ``(D,)``: ``MixtureSameFamily`` whose
    :meth:`log_prob` avoids its ``(..., K, D)`` intermediate.

    ``log N(z; mu_k, s_k^2) = -1/2 [sum_d z_d^2 / s_kd^2 - 2 z_d mu_kd / s_kd^2 + mu_kd^2 / s_kd^2]
    - sum_d log s_kd - D/2 log 2 pi``, so the K component densities of N points are two matrix
    products ``(N, D) x (D, K)``, computed in float64 (the expansion subtracts large terms), then
    ``log p(z) = logsumexp_k (log w_k + log N_k)``. Equal to ``MixtureSameFamily.log_prob`` to
    float32 rounding (tests/models/test_priors.py); sampling, mean and variance are the parent's.

    Args:
        logits: ``(K,)`` unnormalised log-weights.
        loc, scale: ``(K, D)`` component means and standard deviations (> 0).
    """

    def __init__(self, logits: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor):
        super().__init__(Categorical(logits=logits, validate_args=False),
                         Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False),
                         validate_args=False)

    @property
    def loc(self) -> torch.Tensor:
        """``(K, D)`` component means."""
        return self.component_distribution.base_dist.loc

    @property
    def scale(self) -> torch.Tensor:
        """``(K, D)`` component standard deviations."""
        return self.component_distribution.base_dist.scale

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z)`` for ``z: (..., D)`` -> ``(...)``, nats (differentiable in z and the parameters)."""
        loc, scale = self.loc.double(), self.scale.double()
        precision = scale.pow(-2)  # (K, D)
        flat = z.reshape(-1, z.shape[-1]).double()  # (N, D)
        quad = flat.square() @ precision.T - 2 * flat @ (loc * precision).T  # (N, K)
        const = (loc.square() * precision).sum(-1) + 2 * scale.log().sum(-1) + z.shape[-1] * LOG_2PI  # (K,)
        log_w = torch.log_softmax(self.mixture_distribution.logits.double(), -1)
        out = torch.logsumexp(log_w - 0.5 * (quad + const), -1)
        return out.to(z.dtype).reshape(z.shape[:-1])


class MixturePrior(nn.Module):
    """p(z) = (1/K) sum_k N(z; mu_k, diag(sigma_k^2)) with learned means and standard deviations
    (the "MoG prior" Tomczak & Welling 2018, eq. 8, compare the VampPrior with).

    Means start at N(0, I) draws and standard deviations at 1 (``log_scale`` = 0).
    """

    def __init__(self, latent_dim: int, components: int):
        super().__init__()
        self.latent_dim, self.components = latent_dim, components
        self.means = nn.Parameter(torch.randn(components, latent_dim))
        self.log_scale = nn.Parameter(torch.zeros(components, latent_dim))

    @classmethod
    def from_config(cls, config: ModelConfig, image_shape: tuple[int, int, int] | None = None) -> "MixturePrior":
        return cls(config.latent_dim, config.mog_components)

    def distribution(self, encoder: Callable | None = None) -> DiagonalGaussianMixture:
        """The mixture: batch shape (), event shape (D,)."""
        logits = self.means.new_zeros(self.components)
        return DiagonalGaussianMixture(logits, self.means, self.log_scale.exp())


class VampPrior(nn.Module):
    """The VampPrior (Tomczak & Welling 2018, eq. 9): p(z) = (1/K) sum_k q(z | u_k), the
    encoder's posteriors at K learned pseudo-inputs u_k ``(K, C, H, W)``.

    As in the authors' code, the pseudo-inputs pass through a hard tanh into [0, 1] (the data
    range) and start at N(0.05, 0.01^2) per pixel. Each evaluation of :meth:`distribution` runs
    the encoder on the K pseudo-inputs (in the encoder's current train/eval mode), so its
    gradients reach both the pseudo-inputs and the encoder.
    """

    def __init__(self, latent_dim: int, components: int, image_shape: tuple[int, int, int],
                 init_mean: float = 0.05, init_std: float = 0.01):
        super().__init__()
        self.latent_dim, self.components = latent_dim, components
        self.pseudo_inputs = nn.Parameter(init_mean + init_std * torch.randn(components, *image_shape))

    @classmethod
    def from_config(cls, config: ModelConfig, image_shape: tuple[int, int, int]) -> "VampPrior":
        return cls(config.latent_dim, config.vamp_components, tuple(image_shape))

    def inputs(self) -> torch.Tensor:
        """The pseudo-inputs in the data range: ``hardtanh(u, 0, 1)``, ``(K, C, H, W)``."""
        return torch.nn.functional.hardtanh(self.pseudo_inputs, 0.0, 1.0)

    def distribution(self, encoder: Callable[[torch.Tensor], Independent]) -> DiagonalGaussianMixture:
        """The mixture of ``encoder(u_k)`` (a diagonal-Gaussian posterior, batch (K,), event (D,)),
        weights 1/K.

        Raises:
            ValueError: no encoder given.
        """
        if encoder is None:
            raise ValueError("the VampPrior needs the encoder: use VAE.prior_distribution()")
        q = encoder(self.inputs())
        loc, scale = q.base_dist.loc, q.base_dist.scale  # (K, D)
        return DiagonalGaussianMixture(loc.new_zeros(self.components), loc, scale)


PRIORS = {"normal": NormalPrior, "standard_normal": NormalPrior, "mog": MixturePrior, "vamp": VampPrior}


def sample_prior(p: Distribution, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` draws ``(n, D)`` of the prior ``p`` with ``generator`` (on ``generator``'s device,
    then moved to the prior's).

    A diagonal Gaussian gives ``loc + scale * eps`` with ``eps = randn(n, D)`` (the same draws
    for the same seed as before mixtures existed); a mixture first draws each component index
    from its weights (``torch.multinomial``), then ``loc_k + scale_k * eps``.
    """
    gen_device = generator.device if generator is not None else torch.device("cpu")
    if isinstance(p, MixtureSameFamily):
        comp = p.component_distribution.base_dist
        d = comp.loc.shape[-1]
        index = torch.multinomial(p.mixture_distribution.probs.detach().to(gen_device), n, replacement=True,
                                  generator=generator).to(comp.loc.device)
        eps = torch.randn((n, d), generator=generator, device=gen_device).to(comp.loc.device)
        return comp.loc[index] + comp.scale[index] * eps
    d = p.event_shape[-1]
    eps = torch.randn((n, d), generator=generator, device=gen_device).to(p.mean.device)
    return p.mean + p.stddev * eps


def factorises(p: Distribution) -> bool:
    """True for a diagonal Gaussian prior, whose KL to a diagonal Gaussian posterior is a sum of
    closed-form terms per dimension; False for mixtures (KL estimated by Monte Carlo)."""
    return isinstance(p, Independent) and isinstance(p.base_dist, Normal)


def config_problems(config) -> list[str]:
    """The prior's checks of a whole :class:`~vaelab.config.Config` (see :mod:`vaelab.registry`):
    the normal prior's parameters, and what a mixture prior (MoG, VampPrior) cannot do."""
    m, problems = config.model, []
    if m.prior_std is not None and m.prior_variance is not None:
        problems.append("give model.prior_std or model.prior_variance, not both")
    for key in ("prior_loc", "prior_std", "prior_variance"):
        value = getattr(m, key)
        if value is not None and len(value) not in (1, m.latent_dim):
            problems.append(f"model.{key} needs 1 or latent_dim={m.latent_dim} values, got {len(value)}")
    if m.prior == "standard_normal" and (m.prior_loc != [0.0] or m.prior_scale() != [1.0]):
        problems.append("model.prior standard_normal is N(0, I); use prior: normal with prior_loc/prior_std")
    if PRIORS[m.prior] is not NormalPrior:  # a mixture
        if m.prior_loc != [0.0] or m.prior_std is not None or m.prior_variance is not None:
            problems.append(f"model.prior_loc/prior_std/prior_variance set a normal prior; prior {m.prior} learns "
                            "its own (drop them, or use prior: normal)")
        if config.objective.free_bits:
            problems.append(f"objective.free_bits needs the KL per latent dimension, which prior {m.prior} (a "
                            "mixture) does not have; use prior: normal or free_bits: 0")
    if m.conditional and PRIORS[m.prior] is VampPrior:
        problems.append("model.conditional with prior vamp: the VampPrior's pseudo-inputs have no labels; "
                        "use prior normal or mog")
    return problems
