"""Likelihoods p(x|z): turn decoder outputs into a log-density of the data.

A likelihood reads the decoder's raw outputs ``params: (..., C, H, W)`` (one value per pixel)
and gives ``log_prob(x, params) -> (...)``: the log-density (or log-probability) of each image
in nats, summed over its pixels, so that ``-log_prob`` is a true negative log-likelihood. Each
is built on a ``torch.distributions`` object. A learned scale (sigma of a Gaussian, b of a
Laplace) is a parameter of the likelihood itself, one scalar or one per pixel, or (``learn_scale:
decoder``) a second output of the decoder for every pixel of every image, so that the variance
depends on z (Kingma & Welling 2014, Appendix C.2: the Gaussian MLP decoder outputs mu and
log sigma^2); either way it is kept above ``scale_floor`` by ``floor + softplus(raw)``.

Adding a likelihood: write one class here with ``distribution(params)`` and ``mean(params)``,
and add it to :data:`LIKELIHOODS`: the config, its validation and the CLI's ``--likelihood``
read the names from there (:mod:`vaelab.registry`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import (ContinuousBernoulli, Distribution, Independent, Laplace, Normal,
                                 SigmoidTransform, TransformedDistribution)

from ..config import ModelConfig

_PIXEL_DIMS = (-3, -2, -1)


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


class Likelihood(nn.Module):
    """Base class. ``distribution(params)`` has event shape ``(C, H, W)``."""

    params_per_pixel = 1
    has_scale = False
    """Whether it has a scale (``likelihood_scale``, ``learn_scale``, ``scale_floor`` apply)."""
    unit_interval = True
    """Whether it models values in [0, 1] only (data below 0 are refused)."""
    binary_data = True
    """Whether it can model binarised data (a density on (0, 1) cannot)."""

    def __init__(self, config: ModelConfig | None = None, image_shape: tuple[int, int, int] = (1, 1, 1)):
        super().__init__()

    def distribution(self, params: torch.Tensor) -> Distribution:
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``x: (B, C, H, W)``; ``params: (..., B, C, H, W)`` -> ``(..., B)`` nats per image."""
        return self.distribution(params).log_prob(x.expand_as(params))

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """What the figures show for ``params``: ``(..., C, H, W)`` in [0, 1]."""
        raise NotImplementedError


class BernoulliLikelihood(Likelihood):
    """p(x|z) = prod_i Bernoulli(x_i; sigmoid(logit_i)): minus the binary cross-entropy ("BCE").

    ``log_prob`` is computed in the numerically stable form ``x*l - softplus(l)``. For binary
    ``x`` it is a proper log-probability; for gray levels in [0, 1] it is the "BCE loss" of
    pytorch/examples, which is not a normalised density (see the continuous Bernoulli).
    """

    def __init__(self, config: ModelConfig | None = None, image_shape: tuple[int, int, int] = (1, 1, 1)):
        super().__init__(config, image_shape)
        self.binary_inputs = False
        """Whether the data it is evaluated on are known to be binary (0 or 1): decided once
        from the data config (``data.binarize`` other than ``none``, :func:`declare_binary_data`),
        never by looking at a batch, which would make the host wait for the device."""

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        if self.binary_inputs and params.numel() > x.numel():
            # binary x under K > 1 samples of z (IWAE, n_samples > 1, an IS-NLL): log p =
            # -softplus((1 - 2x) * logit), the same value in two cheap passes, about 2.5x faster than
            # the BCE kernel over the K*B*pixels values (with one sample the fused BCE is as fast)
            return -F.softplus(params * (1.0 - 2.0 * x)).sum(_PIXEL_DIMS)
        x = x.expand_as(params)  # fused BCE: the same value as Bernoulli(logits).log_prob(x), faster
        return -F.binary_cross_entropy_with_logits(params, x, reduction="none").sum(_PIXEL_DIMS)

    def distribution(self, params):
        return Independent(torch.distributions.Bernoulli(logits=params, validate_args=False), 3,
                           validate_args=False)

    def mean(self, params):
        return torch.sigmoid(params)


class ContinuousBernoulliLikelihood(Likelihood):
    """The continuous Bernoulli (Loaiza-Ganem & Cunningham 2019, eq. 4): BCE plus the log of its
    normalising constant C(lambda), a proper density on [0, 1] for gray-level pixels. The figures
    show its mean, which differs from lambda = sigmoid(logit)."""

    def distribution(self, params):
        return Independent(ContinuousBernoulli(logits=params, validate_args=False), 3, validate_args=False)

    def mean(self, params):
        return ContinuousBernoulli(logits=params, validate_args=False).mean


class _ScaledLikelihood(Likelihood):
    """A location-scale likelihood with a fixed or learned scale (scalar or per pixel), or with
    the scale as a second decoder output per pixel (``learn_scale: decoder``; then ``params``
    holds ``2C`` channels: the C location outputs, then the C raw scales)."""

    has_scale = True
    unit_interval = False

    def __init__(self, config: ModelConfig | None = None, image_shape: tuple[int, int, int] = (1, 1, 1)):
        super().__init__(config, image_shape)
        config = config or ModelConfig()
        self.floor = config.scale_floor
        self.from_decoder = config.learn_scale == "decoder"
        self.params_per_pixel = 2 if self.from_decoder else 1
        raw = _inverse_softplus(max(config.likelihood_scale - config.scale_floor, 1e-6))
        shape = {"none": None, "decoder": None, "scalar": (1, 1, 1), "pixel": tuple(image_shape)}[config.learn_scale]
        if shape is None:
            # with learn_scale: decoder, the initial scale is an offset of the decoder's raw output
            self.register_buffer("raw_scale", torch.tensor(raw), persistent=False)
        else:
            self.raw_scale = nn.Parameter(torch.full(shape, raw))

    def scale(self, params: torch.Tensor | None = None) -> torch.Tensor:
        """sigma or b: scalar, ``(C, H, W)`` when learned per pixel, or ``(..., C, H, W)`` from
        the decoder outputs ``params: (..., 2C, H, W)`` under ``learn_scale: decoder``."""
        if self.from_decoder:
            if params is None:
                raise ValueError("learn_scale=decoder: the scale depends on the decoder outputs; pass params")
            return self.floor + F.softplus(params[..., params.shape[-3] // 2:, :, :] + self.raw_scale)
        return self.floor + F.softplus(self.raw_scale)

    def location(self, params: torch.Tensor) -> torch.Tensor:
        """The location outputs ``(..., C, H, W)`` (the first C channels under learn_scale decoder)."""
        return params[..., : params.shape[-3] // 2, :, :] if self.from_decoder else params

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        return self.distribution(params).log_prob(x.expand_as(self.location(params)))


class _SquashedLocationScale(_ScaledLikelihood):
    """A location-scale family per pixel with location sigmoid(out) in (0, 1)."""

    family: type = Normal

    def distribution(self, params):
        base = self.family(torch.sigmoid(self.location(params)), self.scale(params), validate_args=False)
        return Independent(base, 3, validate_args=False)

    def mean(self, params):
        return torch.sigmoid(self.location(params))


class GaussianLikelihood(_SquashedLocationScale):
    """p(x|z) = N(x; sigmoid(out), sigma^2) per pixel. With a fixed sigma this is the "MSE loss"
    up to constants: -log p = ||x - mu||^2 / (2 sigma^2) + D log(sigma sqrt(2 pi))."""

    family = Normal


class LaplaceLikelihood(_SquashedLocationScale):
    """p(x|z) = Laplace(x; sigmoid(out), b) per pixel: the "MAE / L1 loss" as a density,
    -log p = |x - mu| / b + D log(2b)."""

    family = Laplace


class LogitNormalLikelihood(_ScaledLikelihood):
    """p(x|z): logit(x) ~ N(out, sigma^2), a density on (0, 1). Pixels are clamped to
    [eps, 1 - eps]; the log-Jacobian -log x - log(1 - x) of the sigmoid is included, so the NLL is
    a density on the pixel scale (``TransformedDistribution`` with ``SigmoidTransform``). The
    figures show sigmoid(out), the median of x."""

    unit_interval = True
    binary_data = False

    def __init__(self, config: ModelConfig | None = None, image_shape: tuple[int, int, int] = (1, 1, 1)):
        super().__init__(config, image_shape)
        self.eps = (config or ModelConfig()).logit_eps

    def distribution(self, params):
        base = Normal(self.location(params), self.scale(params), validate_args=False)
        return Independent(TransformedDistribution(base, [SigmoidTransform()], validate_args=False), 3,
                           validate_args=False)

    def log_prob(self, x, params):
        return super().log_prob(x.clamp(self.eps, 1 - self.eps), params)

    def mean(self, params):
        return torch.sigmoid(self.location(params))


LIKELIHOODS: dict[str, type[Likelihood]] = {
    "bernoulli": BernoulliLikelihood,
    "continuous_bernoulli": ContinuousBernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "laplace": LaplaceLikelihood,
    "logit_normal": LogitNormalLikelihood,
}


def declare_binary_data(likelihood: nn.Module, binary: bool) -> None:
    """Tell ``likelihood`` whether the data it will be evaluated on are binary, as the data
    config says (``data.binarize`` other than ``none`` makes every training batch and evaluation
    split 0/1): a Bernoulli likelihood then takes its cheaper form with several samples of z.
    Other likelihoods do not depend on it."""
    if isinstance(likelihood, BernoulliLikelihood):
        likelihood.binary_inputs = bool(binary)


def binarised_data_problem(likelihood: str, binarize: str, reason: str, advice: str) -> str | None:
    """The one rule on likelihoods and binarised data (checked on the config, and again on the
    loaded data, whose dataset may imply binarisation): None when ``likelihood`` can model data
    binarised by ``binarize``, else why not (``reason``) and what to do (``advice``)."""
    if binarize == "none" or LIKELIHOODS[likelihood].binary_data:
        return None
    return (f"model.likelihood {likelihood} is a density on (0, 1) and cannot model binarised data ({reason}); "
            f"{advice}")


def config_problems(config) -> list[str]:
    """The likelihood's checks of a whole :class:`~vaelab.config.Config` (see :mod:`vaelab.registry`)."""
    m, d = config.model, config.data
    cls, problems = LIKELIHOODS[m.likelihood], []
    problem = binarised_data_problem(m.likelihood, d.binarize, f"data.binarize={d.binarize}",
                                     "use bernoulli, or binarize: none")
    if problem:
        problems.append(problem)
    if cls.has_scale and m.likelihood_scale < m.scale_floor:
        problems.append(
            f"model.likelihood_scale={m.likelihood_scale} is below model.scale_floor={m.scale_floor}, the "
            "smallest scale the likelihood takes; raise the scale or lower scale_floor")
    if m.learn_scale != "none" and not cls.has_scale:
        problems.append(f"model.learn_scale={m.learn_scale}: the {m.likelihood} likelihood has no scale")
    return problems
