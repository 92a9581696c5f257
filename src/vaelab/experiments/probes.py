"""Statistics of a trained run that a study's claims need and the training metrics lack,
computed from the run's last checkpoint (or the one its sweep evaluates) and its test split.

Each probe takes the model and the test images and returns one number:

- ``toy_edge_fraction`` (toy2d): the share of reconstructed coordinates (decoder mean at the
  posterior mean of each test point) within 0.05 of an edge of the unit square. Uniform data
  have 0.10; a VAE whose reconstructions shrink towards the centre has less.
- ``toy_curve_length`` (1-D latent): the length of the curve the decoder mean traces in data
  space for z from the prior mean - 3 sd to + 3 sd (1,000 points). A straight segment in the
  unit square is at most sqrt(2) = 1.41 long; a curve that winds through the square is longer.
- ``latent_kurtosis``: Mardia's multivariate kurtosis of the posterior means of the evaluation
  points, E[((m - mean)^T S^-1 (m - mean))^2]: D(D+2) = 8 for a 2-D Gaussian, 5.6 for a uniform
  square (any rotation), so it falls as a latent cloud turns from Gaussian-like to square- or
  diamond-like. NaN when the codes are degenerate (a singular covariance: fewer dimensions used
  than the latent has).
- ``pca_components_98.5``: how many principal components of the posterior means of the
  evaluation images hold 98.5% of their variance (squared singular values of the centred
  matrix Z, one row per image).
- ``pca_top14_share``: the share of that variance the 14 largest components hold;
  ``pca_top1_share`` the share of the largest one alone (near 1 when the codes lie in bands
  along one direction, as Idler reports at large beta and lambda).
- ``latent_trustworthiness``: how well the encoder keeps neighbourhoods, the trustworthiness of
  the posterior means as an embedding of the evaluation points (Venna & Kaski 2001,
  ``sklearn.manifold.trustworthiness``, 10 neighbours): 1 when every point's nearest
  neighbours in latent space are among its nearest neighbours in data space.
- ``aggregate_posterior_ks``: how far the aggregate posterior is from the prior: one draw
  z ~ q(z|x) per evaluation example (seed 0), and the Kolmogorov-Smirnov statistic of each
  latent dimension against the prior's marginal (``scipy.stats.kstest``), averaged over the
  dimensions; 0 when the codes are distributed as the prior.
- ``sample_sharpness``: the variance of the Laplacian of decoder means E[x|z] for 1,000
  z ~ p(z) (seed 0), the median over the images (the variance-of-Laplacian focus measure,
  Pech-Pacheco et al. 2000; ``scipy.ndimage.laplace``): blurrier samples have less. The median,
  not the mean: prior draws far from where the encoder puts the data can decode to pixel
  speckle, whose Laplacian variance is 10-100 times a digit's, and a minority of such images
  would otherwise decide the score (Study 2's BCE model after 10 epochs, 28% speckle: 0.19 by
  the mean, 0.014 by the median; after 15 epochs on all images, 3% speckle: 0.020 and 0.011).
- ``recon_sse``: the sum of squared pixel errors between each evaluation image (the first
  2,000) and its reconstruction, the decoder mean at the posterior mean, averaged over the
  images: a reconstruction error on the pixel scale that compares models of different
  likelihoods (whose NLLs are densities of different families); lost detail makes it larger.
- ``interpolation_max_step``: how abruptly the decoder mean changes along a linear path
  between the posterior means of two evaluation images: 10 pairs drawn with seed 0, 10 points
  from one end to the other, the largest of the 9 steps (Euclidean distance between successive
  decoded images) as a share of their sum, averaged over the pairs. 1/9 = 0.111 when every step
  is equal (a slow, even transition), near 1 when the image switches at once.
- ``recon_accuracy``: the share of evaluation images (the first 2,000) whose reconstruction
  (decoder mean at the posterior mean) the independent classifier (``vaelab classifier train
  --recipe independent``, never used by a loss) assigns the image's own label: how many
  reconstructions are still recognisable as their digit.
- ``sample_class_entropy``: the entropy (nats) of the independent classifier's predicted classes
  over 5,000 decoder means at z ~ p(z) (seed 0): log(10) = 2.30 when every digit is equally
  frequent, lower when the samples show fewer kinds of digit (less diversity).
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Callable

import torch

from ..models.vae import posterior_means

if TYPE_CHECKING:
    from ..rundir import RunRecord

EDGE = 0.05


def toy_edge_fraction(model, images: torch.Tensor) -> float:
    """``images: (N, 1, 1, 2)`` points in [0, 1]^2 -> share of reconstructed coordinates within
    ``EDGE`` of 0 or 1."""
    mean = model.posterior(images).base_dist.loc  # (N, D)
    recon = model.decode_mean(mean).flatten(1)  # (N, 2)
    return ((recon < EDGE) | (recon > 1 - EDGE)).double().mean().item()


def toy_curve_length(model, images: torch.Tensor, points: int = 1000) -> float:
    """Length of the decoded curve ``z -> E[x|z]`` for a 1-D latent over the prior's +- 3 sd."""
    if model.latent_dim != 1:
        raise ValueError(f"toy_curve_length needs a 1-D latent, the model has {model.latent_dim}")
    prior = model.prior_distribution()
    loc, scale = prior.mean.reshape(-1)[0], prior.stddev.reshape(-1)[0]
    z = torch.linspace(-3.0, 3.0, points).unsqueeze(1) * scale + loc  # (P, 1)
    curve = model.decode_mean(z).flatten(1)  # (P, data dims)
    return (curve[1:] - curve[:-1]).norm(dim=1).sum().item()


def latent_kurtosis(model, images: torch.Tensor, batch_size: int = 1000) -> float:
    """Mardia's multivariate kurtosis of the posterior means (Mardia 1970), in float64."""
    means = posterior_means(model, images, batch_size)
    centred = means - means.mean(0, keepdim=True)
    cov = centred.T @ centred / len(centred)
    inverse, info = torch.linalg.inv_ex(cov)
    if info.item() != 0 or torch.linalg.matrix_rank(cov).item() < cov.shape[0]:
        return float("nan")  # the codes span fewer dimensions than the latent has: undefined
    distances = (centred @ inverse * centred).sum(1)  # (N,) squared Mahalanobis
    return distances.pow(2).mean().item()


def pca_variance_shares(model, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Cumulative share of variance of the posterior means held by the 1, 2, ... largest
    principal components: ``(D,)`` float64, increasing to 1 (the spectrum of the
    singular-value figure, :func:`vaelab.plots.latents.latent_spectrum`)."""
    from ..plots.latents import latent_spectrum

    return torch.from_numpy(latent_spectrum(posterior_means(model, images, batch_size).numpy()).cumulative)


def pca_components(model, images: torch.Tensor, share: float = 0.985) -> float:
    shares = pca_variance_shares(model, images)
    return float(int((shares < share - 1e-12).sum().item()) + 1)


def pca_top_share(model, images: torch.Tensor, k: int = 14) -> float:
    shares = pca_variance_shares(model, images)
    return shares[min(k, len(shares)) - 1].item()


def pca_top1_share(model, images: torch.Tensor) -> float:
    return pca_top_share(model, images, k=1)


def _means(model, images: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    return posterior_means(model, images, batch_size)


def latent_trustworthiness(model, images: torch.Tensor, n_neighbors: int = 10) -> float:
    """Trustworthiness (Venna & Kaski 2001) of the posterior means ``(N, D)`` as an embedding
    of the flattened inputs ``(N, pixels)``; in [0, 1], 1 = neighbourhoods kept."""
    from sklearn.manifold import trustworthiness

    return float(trustworthiness(images.flatten(1).double().numpy(), _means(model, images).numpy(),
                                 n_neighbors=n_neighbors))


def aggregate_posterior_ks(model, images: torch.Tensor, seed: int = 0) -> float:
    """Mean over latent dimensions of the Kolmogorov-Smirnov statistic between one draw
    z ~ q(z|x) per example and the prior's marginal N(mu_j, sigma_j) (a diagonal Gaussian prior)."""
    from scipy import stats

    generator = torch.Generator().manual_seed(seed)
    q = [model.posterior(x) for x in images.split(1000)]
    z = torch.cat([d.mean + d.stddev * torch.randn(d.mean.shape, generator=generator) for d in q]).double()
    prior = model.prior_distribution()
    loc = prior.mean.detach().reshape(-1).double().expand(z.shape[1])
    scale = prior.stddev.detach().reshape(-1).double().expand(z.shape[1])
    return float(sum(stats.kstest(z[:, j].numpy(), "norm", args=(loc[j].item(), scale[j].item())).statistic
                     for j in range(z.shape[1])) / z.shape[1])


def sample_sharpness(model, images: torch.Tensor, n: int = 1000, seed: int = 0) -> float:
    """Median over ``n`` prior samples of the variance of the Laplacian of the decoder mean image
    ``(C, H, W)`` in [0, 1] (per channel, then averaged over the channels)."""
    import numpy as np
    from scipy import ndimage

    prior = model.prior_distribution()
    generator = torch.Generator().manual_seed(seed)
    eps = torch.randn((n, model.latent_dim), generator=generator)
    z = prior.mean.detach().cpu() + prior.stddev.detach().cpu() * eps
    x = model.decode_mean(z).double().numpy()  # (n, C, H, W)
    lap = np.stack([ndimage.laplace(img) for img in x.reshape(-1, *x.shape[-2:])])
    per_image = lap.reshape(n, -1, lap.shape[-2] * lap.shape[-1]).var(axis=2).mean(axis=1)  # (n,)
    return float(np.median(per_image))


def recon_sse(model, images: torch.Tensor, n: int = 2000, batch_size: int = 500) -> float:
    """Mean over the first ``n`` images ``(N, C, H, W)`` of sum((x - E[x | z = mu(x)])^2)."""
    total, count = 0.0, 0
    for x in images[:n].split(batch_size):
        mean = model.posterior(x).base_dist.loc
        recon = model.decode_mean(mean).reshape(x.shape)
        total += (x.double() - recon.double()).pow(2).flatten(1).sum(1).sum().item()
        count += len(x)
    return total / count


def interpolation_max_step(model, images: torch.Tensor, pairs: int = 10, points: int = 10, seed: int = 0) -> float:
    """Mean over ``pairs`` random pairs of evaluation images of the largest step's share of the
    decoded path's length (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    pick = torch.randperm(len(images), generator=generator)[: 2 * pairs]
    means = model.posterior(images[pick]).base_dist.loc  # (2P, D)
    a, b = means[:pairs], means[pairs:]
    alpha = torch.linspace(0.0, 1.0, points).reshape(1, points, 1)
    path = (1 - alpha) * a.unsqueeze(1) + alpha * b.unsqueeze(1)  # (P, T, D)
    decoded = model.decode_mean(path.reshape(-1, path.shape[-1])).reshape(pairs, points, -1).double()
    steps = (decoded[:, 1:] - decoded[:, :-1]).norm(dim=2)  # (P, T-1)
    return (steps.max(1).values / steps.sum(1).clamp_min(1e-12)).mean().item()


def _independent_classifier(dataset: str):
    from ..evaluation.run import classifier_dataset
    from ..models.classifier import load_classifier

    return load_classifier(classifier_dataset(dataset), recipe="independent")[0]


def recon_accuracy(model, images: torch.Tensor, labels: torch.Tensor, dataset: str, n: int = 2000) -> float:
    """Share of the first ``n`` evaluation images whose reconstruction is classified as their label."""
    from ..evaluation.classifier import predict

    x, y = images[:n], labels[:n]
    recon = torch.cat([model.decode_mean(model.posterior(b).base_dist.loc).reshape(b.shape) for b in x.split(500)])
    predicted = predict(_independent_classifier(dataset), recon.clamp(0, 1)).argmax(1)
    return (predicted == y.cpu()).double().mean().item()


def sample_class_entropy(model, images: torch.Tensor, labels: torch.Tensor, dataset: str, n: int = 5000,
                         seed: int = 0) -> float:
    """Entropy (nats) of the classes the independent classifier gives ``n`` prior samples."""
    from ..evaluation.classifier import class_histogram, predict
    from ..evaluation.fid import generate_samples

    samples = generate_samples(model, n, seed=seed, device=torch.device("cpu"))
    return class_histogram(predict(_independent_classifier(dataset), samples))[1]


LABELLED = ("recon_accuracy", "sample_class_entropy")
"""Probes that also take the evaluation labels and the dataset's name (their classifier's)."""


PROBES: dict[str, Callable] = {
    "toy_edge_fraction": toy_edge_fraction,
    "toy_curve_length": toy_curve_length,
    "latent_kurtosis": latent_kurtosis,
    "pca_components_98.5": pca_components,
    "pca_top14_share": pca_top_share,
    "pca_top1_share": pca_top1_share,
    "latent_trustworthiness": latent_trustworthiness,
    "aggregate_posterior_ks": aggregate_posterior_ks,
    "sample_sharpness": sample_sharpness,
    "recon_sse": recon_sse,
    "interpolation_max_step": interpolation_max_step,
    "recon_accuracy": recon_accuracy,
    "sample_class_entropy": sample_class_entropy,
}


@lru_cache(maxsize=4)
def _eval_split(data_yaml: str):
    import yaml

    from ..config import Config
    from ..data import load_dataset

    return load_dataset(Config.from_dict({"data": yaml.safe_load(data_yaml)}).data).test


@torch.inference_mode()
def compute_probe(record: "RunRecord", name: str, which: str = "last") -> float:
    """Probe ``name`` on ``record``'s checkpoint ``which`` (``last`` or ``best``) and its test
    split (data located as for training: ``data.data_dir``, then ``$VAELAB_DATA_DIR``, then the
    cache).

    Raises:
        KeyError: unknown probe.
    """
    import yaml

    from ..training import load_model

    if name not in PROBES:
        raise KeyError(f"unknown probe {name!r} (known: {', '.join(PROBES)})")
    model = load_model(record.run_dir, which)
    split = _eval_split(yaml.safe_dump(record.config.to_dict()["data"], sort_keys=True))
    if name in LABELLED:
        return float(PROBES[name](model, split.images, split.labels, record.config.data.dataset))
    return float(PROBES[name](model, split.images))
