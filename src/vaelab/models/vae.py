"""The VAE: encoder q(z|x), decoder p(x|z), prior p(z) and likelihood, composed from config."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from ..config import ModelConfig
from .likelihoods import LIKELIHOODS
from .networks import ConvDecoder, ConvEncoder, MLPDecoder, MLPEncoder, conv_spec, initialise
from .priors import PRIORS, sample_prior


class VAE(nn.Module):
    """A variational autoencoder (Kingma & Welling 2014) made of four parts.

    The model computes distributions; objectives (:mod:`vaelab.objectives`) turn them into
    losses.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, prior: nn.Module,
                 likelihood: nn.Module, image_shape: tuple[int, int, int], latent_dim: int):
        super().__init__()
        self.encoder, self.decoder, self.prior, self.likelihood = encoder, decoder, prior, likelihood
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim

    def posterior(self, x: torch.Tensor) -> Independent:
        """q(z|x) for ``x: (B, C, H, W)``: a diagonal Gaussian, batch shape (B,), event (D,)."""
        mean, log_var = self.encoder(x)
        std = torch.exp(0.5 * log_var)
        return Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Likelihood parameters for ``z: (..., D)`` -> ``(..., K*C, H, W)``."""
        return self.decoder(z)

    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """E[x|z] for ``z: (..., D)`` -> ``(..., C, H, W)`` (what the figures show)."""
        return self.likelihood.mean(self.decode(z))

    def prior_distribution(self) -> Distribution:
        """p(z), event shape (D,): a diagonal Gaussian or a mixture (:mod:`vaelab.models.priors`;
        the VampPrior encodes its pseudo-inputs with this model's encoder)."""
        return self.prior.distribution(self.posterior)

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` latents z ~ p(z): ``(n, D)`` (:func:`~vaelab.models.priors.sample_prior`)."""
        return sample_prior(self.prior_distribution(), n, generator)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Decoder means of ``n`` latents drawn from the prior: ``(n, C, H, W)``."""
        return self.decode_mean(self.sample_latents(n, generator))


def reparameterize(q: Independent, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``z = mean + std * eps``, eps ~ N(0, I) (Kingma & Welling 2014, Sec. 2.4).

    Returns ``(S, B, D)`` for ``q`` of batch shape (B,) and ``S = n_samples``; gradients flow to
    the mean and standard deviation.
    """
    mean, std = q.base_dist.loc, q.base_dist.scale
    eps = torch.randn((n_samples, *mean.shape), generator=generator, dtype=mean.dtype, device=mean.device)
    return mean + std * eps


def build_model(config: ModelConfig, image_shape: tuple[int, int, int]) -> VAE:
    """The VAE described by ``config`` for data of shape ``(C, H, W)``.

    Raises:
        ConfigError: the network does not fit the data's shape (e.g. too many downsamplings).
    """
    image_shape = tuple(image_shape)
    likelihood = LIKELIHOODS[config.likelihood](config, image_shape)
    k = likelihood.params_per_pixel
    decoder_hidden = config.decoder_hidden if config.decoder_hidden is not None else config.hidden[::-1]
    if config.network == "mlp":
        encoder = MLPEncoder(image_shape, config.hidden, config.latent_dim, config.activation,
                             config.batch_norm, config.dropout)
        decoder = MLPDecoder(image_shape, decoder_hidden, config.latent_dim, config.activation, k,
                             config.batch_norm, config.dropout)
    else:
        spec = conv_spec(config, image_shape)
        encoder = ConvEncoder(image_shape, spec, config.hidden, config.latent_dim, config.activation, config.dropout)
        decoder = ConvDecoder(image_shape, spec, decoder_hidden, config.latent_dim, config.activation, k,
                              config.dropout)
    initialise(encoder, config.init, config.activation)
    initialise(decoder, config.init, config.activation)
    prior = PRIORS[config.prior].from_config(config, image_shape)
    return VAE(encoder, decoder, prior, likelihood, image_shape, config.latent_dim)
