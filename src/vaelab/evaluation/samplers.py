"""Samplers of latents after training: the prior, or a Gaussian mixture fitted to the posterior
means of the training set.

* ``prior``: z ~ p(z), the model's own prior (Gaussian, MoG or VampPrior).
* ``gmm``: ex-post density estimation (Ghosh et al. 2020, "From variational to deterministic
  autoencoders", Sec. 4): a scikit-learn ``GaussianMixture`` with ``components`` full-covariance
  components (10 in the paper) is fitted by EM to the posterior means E_q[z|x] of the training
  images, and z is drawn from it. It samples where the encoder actually puts data, which the
  prior may not cover ("holes" of the aggregate posterior), so its samples often have a lower FID.

Images are then the decoder means E[x|z] (:func:`decode_latents`), as in the sample figures.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import Split, binarize_split
from ..errors import ConfigError
from ..models.vae import VAE
from ..runtime import flush_denormals
from .latents import posterior_summary

SAMPLERS = ("prior", "gmm")


class GMMSampler:
    """A Gaussian mixture over latents ``(N, D)``, fitted with scikit-learn.

    Args:
        components: mixture components K (Ghosh et al. 2020 use 10).
        covariance: scikit-learn ``covariance_type`` (``full``, ``diag``, ...).
        seed: seeds the EM initialisation (k-means) and the draws.

    Raises:
        ConfigError: ``components < 1``.
    """

    def __init__(self, components: int = 10, covariance: str = "full", seed: int = 0):
        if components < 1:
            raise ConfigError(f"the GMM sampler needs >= 1 components, got {components}")
        self.components, self.covariance, self.seed = components, covariance, seed
        self.mixture = None

    def fit(self, latents: torch.Tensor | np.ndarray) -> "GMMSampler":
        """Fit by EM to ``latents: (N, D)`` (float64 inside scikit-learn).

        Raises:
            ConfigError: fewer latents than components.
        """
        from sklearn.mixture import GaussianMixture

        x = np.asarray(latents, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] < self.components:
            raise ConfigError(f"the GMM sampler needs at least {self.components} latents (N, D), got shape {x.shape}")
        self.mixture = GaussianMixture(self.components, covariance_type=self.covariance, random_state=self.seed,
                                       reg_covar=1e-6, max_iter=200).fit(x)
        return self

    def sample(self, n: int, seed: int | None = None) -> torch.Tensor:
        """``n`` draws ``(n, D)`` float32 in random order (``GaussianMixture.sample`` groups them by
        component), seeded by ``seed`` (default the sampler's seed).

        Raises:
            RuntimeError: not fitted yet.
        """
        if self.mixture is None:
            raise RuntimeError("fit the GMMSampler before sampling")
        seed = self.seed if seed is None else seed
        self.mixture.random_state = seed
        z, _ = self.mixture.sample(n)
        order = np.random.default_rng(seed).permutation(n)
        return torch.from_numpy(z[order].astype(np.float32))


def training_view(split: Split, binarize: str, binarize_seed: int) -> Split:
    """The training split as the model saw it: under dynamic binarisation one fixed Bernoulli
    draw (seed ``binarize_seed``) of the gray levels, otherwise the split as it is."""
    return binarize_split(split, binarize_seed) if binarize == "dynamic" else split


def draw_latents(model: VAE, sampler: str, n: int, seed: int = 0, train_images: torch.Tensor | None = None,
                 components: int = 10, device: torch.device | str | None = None,
                 train_labels: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` latents ``(n, D)`` float32 on the CPU from ``sampler``: ``prior`` (a CPU generator
    seeded with ``seed``) or ``gmm`` (fitted to the posterior means of ``train_images``
    ``(N, C, H, W)``, encoded with ``train_labels`` for a conditional VAE; :class:`GMMSampler`).

    Raises:
        ConfigError: an unknown sampler, or ``gmm`` without training images.
    """
    if sampler == "prior":
        with torch.no_grad():
            return model.sample_latents(n, torch.Generator().manual_seed(seed)).float().cpu()
    if sampler == "gmm":
        if train_images is None:
            raise ConfigError("the gmm sampler needs the training images to fit its mixture")
        means = posterior_summary(model, train_images, device=device, labels=train_labels).means
        return GMMSampler(components, seed=seed).fit(means).sample(n)
    raise ConfigError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")


@torch.no_grad()
def decode_latents(model: VAE, z: torch.Tensor, batch_size: int = 1000,
                   device: torch.device | str | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
    """Decoder means E[x|z] of ``z: (n, D)``: ``(n, C, H, W)`` float32 on the CPU (E[x|z,y] with
    ``labels: (n,)`` for a conditional VAE; default: every class in turn)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if model.conditional and labels is None:
        labels = torch.arange(z.shape[0]) % model.num_classes
    label_parts = labels.split(batch_size) if labels is not None else [None] * len(z.split(batch_size))
    was_training = model.training
    model.eval()
    try:
        with flush_denormals():
            return torch.cat([model.decode_mean(part.to(device), None if y is None else y.to(device)).float().cpu()
                              for part, y in zip(z.split(batch_size), label_parts)])
    finally:
        model.train(was_training)
