"""The VAE: encoder q(z|x), decoder p(x|z), prior p(z) and likelihood, composed from config."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from ..config import ModelConfig
from ..errors import ConfigError, option
from .hierarchical import HierarchicalVAE, hierarchical_upper_hidden
from .likelihoods import LIKELIHOODS
from .networks import NETWORKS, initialise, is_plug_in, plug_in_networks
from .priors import PRIORS, sample_prior


class VAE(nn.Module):
    """A variational autoencoder (Kingma & Welling 2014) made of four parts.

    The model computes distributions; objectives (:mod:`vaelab.objectives`) turn them into
    losses. Under mixed precision (``training.precision`` bf16 or fp16) the networks compute in
    the low precision, but what leaves them is float32: the posterior's mean and scale, the
    decoder's outputs, hence the noise, the likelihood, the KL and the importance weights
    (autocast on CUDA would keep ``sigmoid`` and the noise in bf16).
    """

    flat_decoder = False
    """True for your own decoder (:mod:`vaelab.models.networks`): :meth:`decode` calls it on ``(N, D)``."""

    def __init__(self, encoder: nn.Module, decoder: nn.Module, prior: nn.Module,
                 likelihood: nn.Module, image_shape: tuple[int, int, int], latent_dim: int,
                 num_classes: int | None = None, label_planes: bool = False):
        super().__init__()
        self.encoder, self.decoder, self.prior, self.likelihood = encoder, decoder, prior, likelihood
        self.image_shape = tuple(image_shape)
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.label_planes = label_planes

    @property
    def conditional(self) -> bool:
        """True for a conditional VAE (Sohn et al. 2015): encoder and decoder take the label."""
        return self.num_classes is not None

    def _one_hot(self, y: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
        if y is None:
            raise ValueError("a conditional VAE needs the labels y: (B,) int64 in 0..num_classes-1")
        return nn.functional.one_hot(y.long(), self.num_classes).to(dtype)

    def posterior(self, x: torch.Tensor, y: torch.Tensor | None = None) -> Independent:
        """q(z|x) for ``x: (B, C, H, W)`` (q(z|x,y) with labels ``y: (B,)`` for a conditional VAE,
        whose one-hot is appended to the flattened image, or as constant planes for convolutional
        encoders): a diagonal Gaussian, batch shape (B,), event (D,).

        Raises:
            ValueError: a conditional VAE called without ``y``.
        """
        if self.conditional:
            one_hot = self._one_hot(y, x.dtype)  # (B, n)
            if self.label_planes:
                x = torch.cat([x, one_hot[:, :, None, None].expand(-1, -1, *x.shape[-2:])], 1)
            else:
                x = torch.cat([x.flatten(1), one_hot], 1)
        mean, log_var = (t.float() for t in self.encoder(x))  # float32 under autocast too
        std = torch.exp(0.5 * log_var)
        return Independent(Normal(mean, std, validate_args=False), 1, validate_args=False)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Likelihood parameters for ``z: (..., D)`` -> ``(..., K*C, H, W)`` float32 (also under
        autocast); a conditional VAE appends the one-hot of ``y`` (shape ``z.shape[:-1]`` or
        broadcastable to it) to z.

        Raises:
            ValueError: a conditional VAE called without ``y``.
        """
        if self.conditional:
            one_hot = self._one_hot(y, z.dtype).expand(*z.shape[:-1], self.num_classes)
            z = torch.cat([z, one_hot], -1)
        if self.flat_decoder:  # your own decoder takes (N, D): the sample dimensions flattened, then restored
            out = self.decoder(z.reshape(-1, z.shape[-1]))
            return out.reshape(*z.shape[:-1], *out.shape[1:]).float()
        return self.decoder(z).float()

    def decode_mean(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """E[x|z] (E[x|z,y]) for ``z: (..., D)`` -> ``(..., C, H, W)`` (what the figures show)."""
        return self.likelihood.mean(self.decode(z, y))

    def prior_distribution(self) -> Distribution:
        """p(z), event shape (D,): a diagonal Gaussian or a mixture (:mod:`vaelab.models.priors`;
        the VampPrior encodes its pseudo-inputs with this model's encoder)."""
        return self.prior.distribution(self.posterior)

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` latents z ~ p(z): ``(n, D)`` (:func:`~vaelab.models.priors.sample_prior`)."""
        return sample_prior(self.prior_distribution(), n, generator)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               y: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder means of ``n`` latents drawn from the prior: ``(n, C, H, W)`` (a conditional
        VAE: of class ``y: (n,)``)."""
        return self.decode_mean(self.sample_latents(n, generator), y)


def reparameterize(q: Independent, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``z = mean + std * eps``, eps ~ N(0, I) (Kingma & Welling 2014, Sec. 2.4).

    Returns ``(S, B, D)`` for ``q`` of batch shape (B,) and ``S = n_samples``; gradients flow to
    the mean and standard deviation.
    """
    mean, std = q.base_dist.loc, q.base_dist.scale
    eps = torch.randn((n_samples, *mean.shape), generator=generator, dtype=mean.dtype, device=mean.device)
    return mean + std * eps



@torch.no_grad()
def posterior_means(model: nn.Module, images: torch.Tensor, batch_size: int = 1000,
                    labels: torch.Tensor | None = None) -> torch.Tensor:
    """The posterior means E_q[z|x] of ``images: (N, C, H, W)`` under ``model.posterior`` (E_q[z|x,y]
    with ``labels: (N,)`` for a conditional VAE), in batches on the model's device: ``(N, D)``
    float64 on the CPU. The model's train/eval mode is left as it is."""
    device = next(model.parameters(), images).device
    label_batches = labels.split(batch_size) if labels is not None else [None] * len(images.split(batch_size))
    means = [model.posterior(x.to(device), *(() if y is None else (y.to(device).long(),))).base_dist.loc.double().cpu()
             for x, y in zip(images.split(batch_size), label_batches)]
    return torch.cat(means)

def build_model(config: ModelConfig, image_shape: tuple[int, int, int], num_classes: int | None = None,
                networks: tuple[nn.Module, nn.Module] | None = None) -> nn.Module:
    """The VAE described by ``config`` for data of shape ``(C, H, W)``; a conditional one
    (``config.conditional``) for labels in ``0..num_classes-1``: its encoder takes
    ``C*H*W + num_classes`` inputs (MLP) or ``C + num_classes`` channels (convolutions, the label
    as constant planes), its decoder ``D + num_classes``. ``networks``: your own ``(encoder,
    decoder)`` modules (``config.network`` custom), used as they are (not copied); a registered
    plug-in network is built by its builder (:mod:`vaelab.models.networks`). With
    ``config.lower_latents`` a :class:`~vaelab.models.hierarchical.HierarchicalVAE` of layers
    ``[*lower_latents, latent_dim]`` (z_1 first).

    Raises:
        ConfigError: the network does not fit the data's shape (e.g. too many downsamplings),
            a conditional VAE without at least two classes, or your own modules missing or
            breaking their contract.
    """
    image_shape = tuple(image_shape)
    likelihood = LIKELIHOODS[config.likelihood](config, image_shape)
    k = likelihood.params_per_pixel
    n = 0
    if config.conditional:
        if num_classes is None or num_classes < 2:
            raise ConfigError(f"model.conditional needs labelled data with at least 2 classes, got {num_classes}; "
                              f"use a labelled dataset or drop {option('model.conditional')}")
        n = num_classes
    if config.lower_latents:  # hierarchical (networks.config_problems keeps it to an unconditional MLP)
        model = HierarchicalVAE(image_shape, [*config.lower_latents, config.latent_dim], config.hidden,
                                hierarchical_upper_hidden(config), config.activation, likelihood,
                                PRIORS[config.prior].from_config(config, image_shape), config.inference)
        for name, module in model.named_children():
            if name not in ("prior", "likelihood"):
                initialise(module, config.init, config.activation)
        return model
    if networks is not None:  # your own modules, given from Python
        encoder, decoder = plug_in_networks(config, image_shape, k, networks)
    else:
        encoder, decoder = NETWORKS[config.network].build(config, image_shape, k, n)
    initialise(encoder, config.init, config.activation)
    initialise(decoder, config.init, config.activation)
    prior = PRIORS[config.prior].from_config(config, image_shape)
    model = VAE(encoder, decoder, prior, likelihood, image_shape, config.latent_dim,
                num_classes=n or None, label_planes=bool(n) and NETWORKS[config.network].convolutional)
    model.flat_decoder = networks is not None or is_plug_in(config.network)
    return model
