"""Hierarchical VAEs: L stochastic layers z_1 (next to x) ... z_L (the prior's).

Generative model (Burda et al. 2016, Appendix; Sønderby et al. 2016, eq. 1):

    p(x, z) = p(x | z_1) p(z_1 | z_2) ... p(z_{L-1} | z_L) p(z_L)

with p(z_L) any vaelab prior (a Gaussian, a mixture, the VampPrior), each p(z_l | z_{l+1}) a
diagonal Gaussian whose mean and log-variance an MLP computes from z_{l+1}, and p(x | z_1) any
vaelab likelihood. Two inference models, ``model.inference``:

* ``bottom_up`` (Burda et al. 2016): q(z | x) = q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_{L-1}), each a
  diagonal Gaussian from an MLP of the layer below (x, then the sample z_{l-1});
* ``ladder`` (Sønderby et al. 2016, eqs. 17-21): a deterministic bottom-up pass d_1 = f_1(x),
  d_l = f_l(d_{l-1}) gives each layer a Gaussian N(μ̂_l, σ̂_l²); sampling goes top-down,
  q(z_L | x) = N(μ̂_L, σ̂_L²) and, for l < L, q(z_l | z_{l+1}, x) is the precision-weighted
  product of that Gaussian with the generative p(z_l | z_{l+1}) = N(μ_p, σ_p²):

      σ_q⁻² = σ̂⁻² + σ_p⁻²,   μ_q = (μ̂ σ̂⁻² + μ_p σ_p⁻²) σ_q²              (eqs. 19-20)

  with log σ of these Gaussians soft-clamped to (-5, 5) (:data:`LADDER_LOG_STD_BOUND`).

All samples are reparameterised from one standard-normal noise tensor holding every layer's
noise, ``eps: (S, B, D_1 + ... + D_L)`` (:meth:`HierarchicalVAE.path`), so the ELBO, the IWAE
bound and the importance-sampled log-likelihood (:mod:`vaelab.objectives.hierarchical`) use the
same draws; log q is then exact by the change of variables, log N(eps; 0, I) - Σ log σ.

For the figures and the latent statistics the top layer stands for the latent: ``posterior(x)``
is q(z_L | x) along the means of the lower layers (exact for the ladder), ``decode(z_L)``
passes the generative means down to x, ``sample(n)`` draws ancestrally. With ``lower_latents``
empty the model is one stochastic layer: its networks, parameters and numbers are those of
:class:`~vaelab.models.vae.VAE`'s MLP.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from .networks import EncoderOutput, MLPDecoder, MLPEncoder, _Heads, mlp
from .priors import LOG_2PI, sample_prior


class Layer(NamedTuple):
    """One stochastic layer of a sampled path, each tensor ``(S, B, D_l)`` (the Gaussian's
    parameters) or ``(S, B)`` (log-densities, nats)."""

    z: torch.Tensor
    """The sample z_l."""
    q_mean: torch.Tensor
    q_std: torch.Tensor
    log_q: torch.Tensor
    """log q(z_l | its parents), exact: log N(eps_l; 0, I) - Σ log σ_q."""
    p_mean: torch.Tensor | None
    """The generative p(z_l | z_{l+1})'s mean (None for the top layer, whose p is the prior)."""
    p_std: torch.Tensor | None
    log_p: torch.Tensor
    """log p(z_l | z_{l+1}), or log p(z_L) under the prior for the top layer."""


class Path(NamedTuple):
    """A sampled path x -> z_1 ... z_L: the layers bottom first and the likelihood's parameters
    of p(x | z_1), ``(S, B, K*C, H, W)``."""

    layers: list[Layer]
    params: torch.Tensor


def _log_normal_noise(eps: torch.Tensor) -> torch.Tensor:
    """log N(eps; 0, I) summed over the last dimension: ``(..., D) -> (...)``."""
    return -0.5 * eps.square().sum(-1) - 0.5 * eps.shape[-1] * LOG_2PI


def _log_normal(z: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """log N(z; mean, std²) summed over the last dimension (float32 in, float32 out)."""
    return (-0.5 * ((z - mean) / std).square() - std.log()).sum(-1) - 0.5 * z.shape[-1] * LOG_2PI


def precision_merge(mean_a: torch.Tensor, std_a: torch.Tensor, mean_b: torch.Tensor,
                    std_b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Gaussian proportional to N(mean_a, std_a²) · N(mean_b, std_b²), per dimension
    (Sønderby et al. 2016, eqs. 19-20): precision σ⁻² = σ_a⁻² + σ_b⁻², mean
    (μ_a σ_a⁻² + μ_b σ_b⁻²) σ². Broadcasting shapes; returns (mean, std)."""
    precision_a, precision_b = std_a.pow(-2), std_b.pow(-2)
    var = 1.0 / (precision_a + precision_b)
    return (mean_a * precision_a + mean_b * precision_b) * var, var.sqrt()


class _Gaussian(nn.Module):
    """An MLP from a vector ``(..., n_in)`` to a diagonal Gaussian's mean and log-variance
    ``(..., D)`` (the hidden layers of the Burda et al. 2016 networks between stochastic layers)."""

    def __init__(self, n_in: int, hidden: list[int], latent_dim: int, activation: str):
        super().__init__()
        self.body = mlp([n_in, *hidden], activation)
        self.heads = _Heads(hidden[-1] if hidden else n_in, latent_dim)

    def forward(self, h: torch.Tensor) -> EncoderOutput:
        return self.heads(self.body(h))


LADDER_LOG_STD_BOUND = 5.0
"""The ladder's Gaussians (the bottom-up N(μ̂_l, σ̂_l²) and the generative p(z_l | z_{l+1})) keep
log σ within ±5. Without a bound, p(z_1 | z_2)'s σ fell below 1e-4 on some inputs within 30 to
50 epochs of burda-vae-2l.yaml with the ladder: the merge's precisions (σ⁻² > 1e8) then cost
float32 the digits that z_1 - μ_p keeps, the KL of z_1 reached 1e5 nats, and training diverged
(two seeds of two, with or without clipping the gradient's norm at 100)."""


class HierarchicalVAE(nn.Module):
    """A VAE with ``len(latent_dims)`` stochastic layers (see the module docstring).

    Args:
        image_shape: ``(C, H, W)`` of the data.
        latent_dims: the layers' sizes, bottom (z_1) first; the last is the prior's.
        hidden: hidden widths of the networks between x and z_1 (the encoder's, input side
            first; the decoder mirrors them).
        upper_hidden: hidden widths of the networks between consecutive stochastic layers.
        activation: the networks' non-linearity (a name of ``networks.ACTIVATIONS``).
        likelihood: p(x | z_1) (:mod:`vaelab.models.likelihoods`).
        prior: p(z_L) (:mod:`vaelab.models.priors`).
        inference: ``bottom_up`` or ``ladder``.

    Raises:
        ValueError: an unknown ``inference`` or no layer.
    """

    conditional = False
    num_classes = None
    label_planes = False

    def __init__(self, image_shape: tuple[int, int, int], latent_dims: list[int], hidden: list[int],
                 upper_hidden: list[int], activation: str, likelihood: nn.Module, prior: nn.Module,
                 inference: str = "bottom_up"):
        super().__init__()
        if inference not in ("bottom_up", "ladder"):
            raise ValueError(f"inference must be bottom_up or ladder, got {inference!r}")
        if not latent_dims:
            raise ValueError("a hierarchical VAE needs at least one stochastic layer")
        self.image_shape, self.latent_dims, self.inference = tuple(image_shape), list(latent_dims), inference
        self.latent_dim = self.latent_dims[-1]
        self.likelihood, self.prior = likelihood, prior
        dims, n_x = self.latent_dims, math.prod(image_shape)
        k = likelihood.params_per_pixel
        if inference == "bottom_up":
            # q(z_1 | x) is the one-layer VAE's encoder; q(z_l | z_{l-1}) MLPs above it
            self.encoder = MLPEncoder(image_shape, hidden, dims[0], activation)
            self.up = nn.ModuleList(_Gaussian(dims[i], upper_hidden, dims[i + 1], activation)
                                    for i in range(len(dims) - 1))
        else:
            # the deterministic bottom-up pass d_l and each layer's Gaussian head N(μ̂_l, σ̂_l²)
            widths = [hidden[-1] if hidden else n_x] + [upper_hidden[-1] if upper_hidden else dims[i]
                                                        for i in range(len(dims) - 1)]
            self.features = nn.ModuleList([mlp([n_x, *hidden], activation)] + [
                mlp([widths[i], *upper_hidden], activation) for i in range(len(dims) - 1)])
            self.heads = nn.ModuleList(_Heads(widths[i], dims[i]) for i in range(len(dims)))
        # p(z_l | z_{l+1}) for l < L, and p(x | z_1) (the one-layer VAE's decoder)
        self.down = nn.ModuleList(_Gaussian(dims[i + 1], upper_hidden[::-1], dims[i], activation)
                                  for i in range(len(dims) - 1))
        self.decoder = MLPDecoder(image_shape, hidden[::-1], dims[0], activation, k)

    @property
    def noise_dim(self) -> int:
        """The size of the noise that reparameterises a whole path: D_1 + ... + D_L."""
        return sum(self.latent_dims)

    # --- the bottom-up quantities of a batch (computed once per batch, whatever S) -------------------

    def encode(self, x: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """What depends on x alone: bottom-up, q(z_1 | x)'s mean and std ``(B, D_1)``;
        ladder, every layer's (μ̂_l, σ̂_l) ``(B, D_l)``. float32 (also under autocast)."""
        if self.inference == "bottom_up":
            mean, log_var = (t.float() for t in self.encoder(x))
            return [(mean, torch.exp(0.5 * log_var))]
        out, h = [], x.flatten(1)
        for features, heads in zip(self.features, self.heads):
            h = features(h)
            mean, log_var = (t.float() for t in heads(h))
            out.append((mean, self._std(log_var)))
        return out

    def _p(self, i: int, z_above: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z_{i+1} | z_{i+2}) (0-based layer i) from the sample of the layer above: mean, std."""
        mean, log_var = (t.float() for t in self.down[i](z_above))
        return mean, self._std(log_var)

    def _std(self, log_var: torch.Tensor) -> torch.Tensor:
        """σ from a network's log σ² output: exp(½ log σ²); for the ladder, log σ soft-clamped to
        (-5, 5), 5 tanh(log σ / 5) (NVAE's ``soft_clamp5``, Vahdat & Kautz 2020), so σ >= 0.0067."""
        if self.inference == "ladder":
            return torch.exp(LADDER_LOG_STD_BOUND * torch.tanh(0.5 * log_var / LADDER_LOG_STD_BOUND))
        return torch.exp(0.5 * log_var)

    def path(self, x: torch.Tensor, eps: torch.Tensor, encoded: list | None = None,
             prior: Distribution | None = None) -> Path:
        """The path reparameterised by ``eps: (S, B, noise_dim)`` (standard normal) for
        ``x: (B, C, H, W)``; ``encoded`` is :meth:`encode`'s result when already computed, and
        ``prior`` p(z_L) (default :meth:`prior_distribution`).

        Returns:
            :class:`Path`: every layer's sample, Gaussian parameters and log q / log p
            ``(S, B)`` nats, and the likelihood's parameters from z_1.
        """
        encoded = self.encode(x) if encoded is None else encoded
        prior = self.prior_distribution() if prior is None else prior
        noise = list(eps.split(self.latent_dims, -1))  # (S, B, D_l) each
        L = len(self.latent_dims)
        layers: list[Layer | None] = [None] * L
        if self.inference == "bottom_up":
            mean, std = encoded[0]
            samples, gaussians = [], []
            for i in range(L):
                if i > 0:
                    m, log_var = (t.float() for t in self.up[i - 1](samples[-1]))
                    mean, std = m, torch.exp(0.5 * log_var)
                z = mean + std * noise[i]
                samples.append(z)
                gaussians.append((mean.expand_as(z), std.expand_as(z)))
            for i in range(L):
                q_mean, q_std = gaussians[i]
                log_q = _log_normal_noise(noise[i]) - q_std.log().sum(-1)
                if i == L - 1:
                    layers[i] = Layer(samples[i], q_mean, q_std, log_q, None, None, prior.log_prob(samples[i]))
                else:
                    p_mean, p_std = self._p(i, samples[i + 1])
                    layers[i] = Layer(samples[i], q_mean, q_std, log_q, p_mean, p_std,
                                      _log_normal(samples[i], p_mean, p_std))
        else:  # ladder: top-down, each layer's q the precision-weighted merge with p
            mean, std = encoded[-1]
            z = mean + std * noise[-1]
            layers[-1] = Layer(z, mean.expand_as(z), std.expand_as(z), _log_normal_noise(noise[-1]) - std.log().sum(-1),
                               None, None, prior.log_prob(z))
            for i in range(L - 2, -1, -1):
                p_mean, p_std = self._p(i, layers[i + 1].z)  # (S, B, D_i)
                q_mean, q_std = precision_merge(*encoded[i], p_mean, p_std)
                z = q_mean + q_std * noise[i]
                layers[i] = Layer(z, q_mean, q_std, _log_normal_noise(noise[i]) - q_std.log().sum(-1), p_mean, p_std,
                                  _log_normal(z, p_mean, p_std))
        return Path(layers, self.decoder(layers[0].z).float())

    # --- what the rest of vaelab reads of a model: the top layer stands for the latent -----------

    def layer_means(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each layer's posterior mean along the means of the layers it depends on (no
        sampling): ``[(B, D_1), ..., (B, D_L)]``, what active units per layer are counted on."""
        encoded = self.encode(x)
        if self.inference == "bottom_up":
            means = [encoded[0][0]]
            for up in self.up:
                means.append(up(means[-1]).mean.float())
            return means
        means = [encoded[-1][0]]
        for i in range(len(self.latent_dims) - 2, -1, -1):
            means.insert(0, precision_merge(*encoded[i], *self._p(i, means[0]))[0])
        return means

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Independent:
        """q(z_L | x), the top layer's posterior, a diagonal Gaussian (batch (B,), event (D_L,)):
        exact for the ladder; bottom-up, q(z_L | z_{L-1}) at the means of the layers below."""
        encoded = self.encode(x)
        if self.inference == "ladder":
            mean, std = encoded[-1]
        else:
            mean, std = encoded[0]
            for up in self.up:
                m, log_var = (t.float() for t in up(mean))
                mean, std = m, torch.exp(0.5 * log_var)
        return Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """The likelihood's parameters for a top-layer ``z: (..., D_L)``, the generative means
        passed down the layers: ``(..., K*C, H, W)``."""
        for i in range(len(self.latent_dims) - 2, -1, -1):
            z = self._p(i, z)[0]
        return self.decoder(z).float()

    def decode_mean(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x | z_1] at the generative means below ``z: (..., D_L)``: ``(..., C, H, W)``."""
        return self.likelihood.mean(self.decode(z))

    def prior_distribution(self) -> Distribution:
        """p(z_L): the top layer's prior (the VampPrior encodes its pseudo-inputs with
        :meth:`posterior`)."""
        return self.prior.distribution(self.posterior)

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` top-layer latents z_L ~ p(z_L): ``(n, D_L)``."""
        return sample_prior(self.prior_distribution(), n, generator)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, y: torch.Tensor | None = None) -> torch.Tensor:
        """Ancestral samples: z_L ~ p(z_L), z_l ~ p(z_l | z_{l+1}), then E[x | z_1]: ``(n, C, H, W)``."""
        z = self.sample_latents(n, generator)
        for i in range(len(self.latent_dims) - 2, -1, -1):
            mean, std = self._p(i, z)
            z = mean + std * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self.likelihood.mean(self.decoder(z).float())


def hierarchical_upper_hidden(config) -> list[int]:
    """``config.upper_hidden`` (a :class:`~vaelab.config.ModelConfig`), else its default: two
    hidden layers as wide as z_1 (Burda et al. 2016's 100-100 between z_1 = 100 and z_2 = 50)."""
    if config.upper_hidden is not None:
        return list(config.upper_hidden)
    return [config.lower_latents[0]] * 2


def config_problems(config) -> list[str]:
    """The checks of a hierarchical model (``model.lower_latents``) against the rest of a
    :class:`~vaelab.config.Config`: its networks are MLPs without batch norm or dropout, and it
    takes no labels. Fields that only a hierarchical model reads, set without one, are named."""
    m, problems = config.model, []
    if not m.lower_latents:
        for key in ("upper_hidden",):
            if getattr(m, key) is not None:
                problems.append(f"model.{key} applies to hierarchical VAEs only: set model.lower_latents too")
        if m.inference != "bottom_up":
            problems.append("model.inference applies to hierarchical VAEs only: set model.lower_latents too")
        return problems
    if m.network != "mlp":
        problems.append(f"model.lower_latents (a hierarchical VAE) builds MLPs; network {m.network} is not supported: "
                        "use network mlp")
    for key, off in (("conditional", False), ("batch_norm", False), ("dropout", 0.0), ("decoder_hidden", None),
                     ("decoder_network", None)):
        if getattr(m, key) != off:
            problems.append(f"model.{key} is not supported in a hierarchical VAE (model.lower_latents): leave it unset")
    return problems
