"""Importance-sampled log-likelihood: the K-sample IWAE estimate of log p(x).

For each image x, with K samples z_k = mu(x) + sigma(x) * eps_k from q(z|x) (Burda et al. 2016,
eq. 8, who evaluate with K = 5000, Sec. 5):

    log p(x) ~= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)

a stochastic lower bound on log p(x) whose expectation increases with K towards it. vaelab
reports its negative, ``nll_iwae``, in nats per example (summed over pixels), and in bits per
dimension, ``nll / (pixels * ln 2)``.

How it is computed (fast by design):

* vectorised over examples and samples: a batch of B examples is encoded once, and its K*B
  latents are decoded as one matrix, ``chunk_size`` latent samples at a time so that memory stays
  bounded whatever K is; the chunk is sized to the device (:func:`default_chunk_size`: a CPU
  cache's worth on the CPU, a share of the free memory on a GPU, so that a GPU decodes whole
  batches of examples at K = 1000 or 5000 in one go);
* the per-example results stay on the device until the end and come to the host in one copy
  (on a GPU, the host then waits once per call, not per batch);
* the log-mean-exp over K is accumulated chunk by chunk in float64 (:class:`LogMeanExp`: running
  maximum and rescaled sum, so nothing overflows or underflows);
* the noise eps of example n comes from its own random stream, seeded with ``(seed, n)``
  (:func:`example_noise`), so an example's samples do not depend on the batch size, the chunk
  size or the device (its estimate then agrees to float32 rounding), and a plain per-example
  loop reproduces it;
* under ``torch.inference_mode`` and with subnormal floats flushed to zero on the CPU.

The same pass gives the reconstruction term -(1/K) sum_k log p(x|z_k) of the ELBO (a K-sample
estimate) and the KL (closed form for a diagonal Gaussian prior; for a mixture prior, MoG or
VampPrior, the K-sample Monte Carlo estimate), hence the negative ELBO of the same examples.

A hierarchical VAE (:mod:`vaelab.models.hierarchical`) is sampled along whole paths: the noise
of example n covers every layer, ``(K, D_1 + ... + D_L)``, q is the whole inference path and the
weights are p(x|z_1) prod_l p(z_l|z_{l+1}) / q(z_l|.) (Burda et al. 2016, eq. 7); its KL is then
the K-sample Monte Carlo estimate of sum_l E_q[log q_l - log p_l].
log p(z) is always the prior's exact log-density (a mixture's by log-sum-exp over its
components, :class:`vaelab.models.priors.DiagonalGaussianMixture`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch.distributions import Independent, Normal
from ..errors import ConfigError
from ..models.priors import LOG_2PI, factorises
from ..models.vae import VAE
from ..objectives.elbo import kl_estimate
from ..objectives.hierarchical import path_log_weights
from ..objectives.iwae import log_weights
from ..runtime import available_memory, flush_denormals

LN2 = math.log(2.0)


def batch_noise_generator(seed: int, first: int, device: torch.device) -> torch.Generator:
    """The generator of the noise of the batch whose first example is number ``first``, on
    ``device``: seeded with 63 bits of ``SeedSequence((seed, first))`` (distinct per batch)."""
    state = np.random.SeedSequence((seed, first)).generate_state(2, np.uint32)
    return torch.Generator(device).manual_seed((int(state[0]) << 31) ^ int(state[1]))


def example_noise(seed: int, index: int, k: int, latent_dim: int) -> torch.Tensor:
    """The standard-normal noise ``eps: (k, latent_dim)`` float32 of example ``index``.

    Drawn by numpy's PCG64 seeded with ``SeedSequence((seed, index))``: every (seed, example)
    pair gets its own independent stream (a torch CPU generator keeps only 32 bits of its seed,
    too few to give each example of each seed a distinct one).
    """
    if seed < 0 or index < 0:
        raise ConfigError(f"noise seed and example index must be >= 0; got {seed}, {index}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence((seed, index))))
    return torch.from_numpy(rng.standard_normal((k, latent_dim), dtype=np.float32))


class LogMeanExp:
    """Streaming ``log((1/K) sum_k exp(a_k))`` over chunks of ``a: (c, *shape)`` along dim 0, in
    float64. Keeps the running maximum m and ``s = sum_k exp(a_k - m)``; a new chunk with maximum
    m' > m rescales s by exp(m - m'). The result equals ``torch.logsumexp(all a, 0) - log K``.
    """

    def __init__(self, shape: tuple[int, ...], device: torch.device | str = "cpu"):
        self.max = torch.full(shape, -math.inf, dtype=torch.float64, device=device)
        self.sum = torch.zeros(shape, dtype=torch.float64, device=device)
        self.count = 0

    def update(self, values: torch.Tensor) -> None:
        values = values.to(torch.float64)
        new_max = torch.maximum(self.max, values.amax(0))
        shift = torch.where(torch.isfinite(new_max), new_max, torch.zeros_like(new_max))
        self.sum = self.sum * torch.exp(self.max - shift) + torch.exp(values - shift).sum(0)
        self.max = new_max
        self.count += values.shape[0]

    def compute(self) -> torch.Tensor:
        shift = torch.where(torch.isfinite(self.max), self.max, torch.zeros_like(self.max))
        return shift + torch.log(self.sum) - math.log(self.count)


class LogLikelihood(NamedTuple):
    """Per-example results of :func:`importance_log_likelihood`, each ``(N,)`` float64, nats."""

    log_px: torch.Tensor
    """The K-sample IWAE estimate of log p(x)."""
    recon: torch.Tensor
    """-(1/K) sum_k log p(x|z_k): the ELBO's reconstruction NLL from the same K samples."""
    kl: torch.Tensor
    """KL(q(z|x) || p(z)): closed form for a diagonal Gaussian prior, else the Monte Carlo mean of
    log q(z_k|x) - log p(z_k) over the same K samples."""
    k: int

    @property
    def nll(self) -> torch.Tensor:
        """-log p(x) estimate (an upper bound in expectation): ``(N,)`` nats."""
        return -self.log_px

    @property
    def neg_elbo(self) -> torch.Tensor:
        """recon + kl: ``(N,)`` nats, >= nll in expectation."""
        return self.recon + self.kl


def default_batch_size(k: int, chunk_size: int) -> int:
    """Examples per batch: as many as have their K samples decoded in one chunk (at least 1)."""
    return max(1, chunk_size // k)


CPU_CHUNK = 4096
"""Latent samples decoded at once on the CPU: a 784-pixel decoder output of 4096 samples (13 MB)
and its temporaries stay in the last-level cache, which measured 1.27x the decoder's GEMM floor
against 1.65x for 8192 and more (benchmarks/eval_speed.py)."""

MAX_CHUNK = 2 ** 21
"""The most latent samples :func:`default_chunk_size` decodes at once on a GPU (2,048 examples
at K = 1000)."""


def default_chunk_size(model: VAE, device: torch.device | str, free_bytes: int | None = None) -> int:
    """Latent samples to decode at once on ``device``: :data:`CPU_CHUNK` on the CPU; on a GPU
    as many as fit in a quarter of its free memory (``free_bytes``, default
    :func:`vaelab.runtime.available_memory`), between :data:`CPU_CHUNK` and :data:`MAX_CHUNK`.

    A decoded sample is counted as 4 bytes per value for three copies of the decoder's output
    (the output, the likelihood's terms and their sum) and two of its widest layer, found by
    decoding one latent with hooks on the decoder's layers.
    """
    device = torch.device(device)
    if device.type == "cpu":
        return CPU_CHUNK
    free = available_memory(device) if free_bytes is None else free_bytes
    if free is None:
        return CPU_CHUNK
    widths = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: widths.append(out.numel()))
             for m in model.decoder.modules() if not list(m.children())]
    where = next(model.parameters()).device  # the model's (``device`` once the caller moved it there)
    try:
        with torch.inference_mode():
            z = torch.zeros(1, model.latent_dim, device=where)
            y = torch.zeros(1, dtype=torch.long, device=where) if model.conditional else None
            out = model.decode(z, y).numel()
    finally:
        for hook in hooks:
            hook.remove()
    per_sample = 4 * (3 * out + 2 * max(widths, default=out))
    return int(min(MAX_CHUNK, max(CPU_CHUNK, free // 4 // per_sample)))


@torch.inference_mode()
def importance_log_likelihood(model: VAE, images: torch.Tensor, k: int = 1000, *, seed: int = 0,
                              batch_size: int | None = None, chunk_size: int | None = None,
                              device: torch.device | str | None = None, first_index: int = 0,
                              progress: bool = False, labels: torch.Tensor | None = None,
                              noise: str = "auto") -> LogLikelihood:
    """The K-sample importance-sampled log-likelihood of every image.

    Args:
        model: the VAE (put in eval mode for the call, then restored).
        images: ``(N, C, H, W)`` float in the model's data range ([0, 1]; binary for Bernoulli
            likelihoods evaluated as log-probabilities).
        k: importance samples K per example (Burda et al. 2016 report K = 5000).
        seed: seed of the noise; example n uses ``example_noise(seed, first_index + n, k, D)``.
        batch_size: examples encoded together (default :func:`default_batch_size`); the noise
            of a batch takes ``batch_size * k * D * 4`` bytes.
        chunk_size: latent samples decoded at once; the decoder output takes
            ``chunk_size * pixels * 4`` bytes (13 MB for 4096 MNIST samples) and about three times
            that in temporaries. The default (:func:`default_chunk_size`) keeps them in the CPU's
            last-level cache, which measured faster than larger chunks
            (benchmarks/eval_speed.py), and fills a quarter of a GPU's free memory.
        device: where to compute (default: the model's device).
        first_index: the index of ``images[0]`` in its split (so slices reproduce the whole).
        progress: show a progress bar on a terminal.
        labels: ``(N,)`` the labels of a conditional VAE, whose estimate is then of log p(x|y)
            (its encoder and decoder take y; Sohn et al. 2015).
        noise: ``example`` (each example's own stream, :func:`example_noise`, drawn on the
            host: any batching gives the same numbers), ``device`` (each batch's noise drawn on
            ``device`` from :func:`batch_noise_generator`: no host work or copy, but the numbers
            depend on ``batch_size``) or ``auto``: ``device`` on CUDA, else ``example``. CPU and
            GPU estimates therefore differ in their noise only.

    Returns:
        :class:`LogLikelihood` with per-example ``log_px``, ``recon``, ``kl`` (float64, nats).

    Raises:
        ConfigError: ``k``, ``batch_size`` or ``chunk_size`` below 1, or an empty ``images``.
    """
    for name, value in (("k", k), ("batch_size", batch_size), ("chunk_size", chunk_size)):
        if value is None and name != "k":
            continue
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if images.ndim != 4 or images.shape[0] == 0:
        raise ConfigError(f"images must be a non-empty (N, C, H, W) tensor, got shape {tuple(images.shape)}")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    if noise not in ("auto", "example", "device"):
        raise ConfigError(f"noise must be auto, example or device, got {noise!r}")
    on_device = noise == "device" or (noise == "auto" and device.type == "cuda")
    was_training = model.training
    model.eval()
    chunk_size = chunk_size or default_chunk_size(model, device)
    batch_size = batch_size or default_batch_size(k, chunk_size)
    n = images.shape[0]
    results = torch.empty(3, n, dtype=torch.float64, device=device)  # log p(x), recon, kl: one copy at the end
    log_px, recon, kl = results
    prior = model.prior_distribution()  # once: the VampPrior encodes its pseudo-inputs
    hierarchical = getattr(model, "noise_dim", None) is not None  # a path of several stochastic layers
    closed_form = factorises(prior) and (not hierarchical or len(model.latent_dims) == 1)  # one layer: as the VAE
    d = model.noise_dim if hierarchical else model.latent_dim
    starts = range(0, n, batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"log-likelihood (K={k})", unit="ex", leave=False, disable=None)
    try:
        with flush_denormals(device):
            for start in starts:
                x = images[start:start + batch_size].to(device, non_blocking=True)  # (B, C, H, W)
                b = x.shape[0]
                y = labels[start:start + batch_size].to(device) if labels is not None else None
                if hierarchical:
                    encoded = model.encode(x)  # what depends on x alone, once per batch
                    q = Independent(Normal(*encoded[0]), 1)  # one layer: its q(z|x), for the closed-form KL
                else:
                    q = model.posterior(x, y)  # batch (B,), event (D,)
                    mean, std = q.base_dist.loc, q.base_dist.scale  # (B, D)
                if on_device:
                    eps = torch.randn((k, b, d), generator=batch_noise_generator(seed, first_index + start, device),
                                      device=device)  # (K, B, D)
                else:
                    eps = torch.stack([example_noise(seed, first_index + start + j, k, d) for j in range(b)],
                                      1).to(device)  # (K, B, D)
                # log q(z|x) at z = mean + std * eps is log N(eps; 0, I) - sum_d log std_d (change of
                # variables, Kingma & Welling 2014, Sec. 2.4): exact, and cheaper than q.log_prob(z)
                if not hierarchical:
                    log_qz = (-0.5 * eps.square().sum(-1) - std.log().sum(-1)) - 0.5 * d * LOG_2PI  # (K, B)
                lme = LogMeanExp((b,), device)
                log_px_z_sum = torch.zeros(b, dtype=torch.float64, device=device)
                log_ratio_sum = torch.zeros(b, dtype=torch.float64, device=device)  # sum_k log q - log p
                per_chunk = max(1, chunk_size // b)
                for k0 in range(0, k, per_chunk):
                    if hierarchical:  # whole paths: log p(x|z_1) and sum_l log p_l - log q_l
                        log_px_z, log_ratio = path_log_weights(
                            model, x, model.path(x, eps[k0:k0 + per_chunk], encoded, prior))
                    else:
                        z = torch.addcmul(mean, std, eps[k0:k0 + per_chunk])  # (c, B, D)
                        parts = log_weights(model, x, z, q, prior, y, log_qz=log_qz[k0:k0 + per_chunk])  # (c, B) each
                        log_px_z, log_ratio = parts.log_px_z, parts.log_pz - parts.log_qz  # exact log p(z) - log q(z|x)
                    lme.update(log_px_z + log_ratio)  # log w, (c, B)
                    log_px_z_sum += log_px_z.sum(0, dtype=torch.float64)
                    log_ratio_sum -= log_ratio.sum(0, dtype=torch.float64)
                log_px[start:start + b] = lme.compute()
                recon[start:start + b] = -log_px_z_sum / k
                if closed_form:
                    kl[start:start + b] = kl_estimate(q, prior)[0]
                else:  # a mixture prior: the Monte Carlo KL of the same K samples
                    kl[start:start + b] = log_ratio_sum / k
                if bar is not None:
                    bar.update(b)
        results = results.cpu()  # the one copy to the host
    finally:
        if bar is not None:
            bar.close()
        model.train(was_training)
    return LogLikelihood(results[0], results[1], results[2], k)


def mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    """Mean of ``values: (N,)`` and its standard error std / sqrt(N) (0 when N = 1), in float64."""
    values = values.to(torch.float64)
    n = values.numel()
    stderr = values.std().item() / math.sqrt(n) if n > 1 else 0.0
    return values.mean().item(), stderr


def bits_per_dim(nats_per_example: float, dims: int) -> float:
    """Nats per example -> bits per dimension: ``nats / (dims * ln 2)``."""
    return nats_per_example / (dims * LN2)
