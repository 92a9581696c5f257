"""Likelihoods p(x|z): turn decoder outputs into a log-density of the data.

A likelihood reads the decoder's raw outputs ``params: (..., K*C, H, W)`` and gives
``log_prob(x, params) -> (...)``: the log-density of each image in nats, summed over its
pixels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_PIXEL_DIMS = (-3, -2, -1)


class BernoulliLikelihood(nn.Module):
    """p(x|z) = prod_i Bernoulli(x_i; sigmoid(logit_i)), one logit per pixel (K=1).

    ``log_prob`` is minus the binary cross-entropy with logits, computed in the numerically
    stable form ``x*l - softplus(l)``. For binary ``x`` it is a proper log-probability; for gray
    levels in [0, 1] it is the "BCE loss" of pytorch/examples, which is not a normalised
    density (see the continuous Bernoulli, Loaiza-Ganem & Cunningham 2019).
    """

    params_per_pixel = 1

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """``x: (B, C, H, W)`` in [0, 1]; ``params: (..., B, C, H, W)`` logits -> ``(..., B)`` nats."""
        x = x.expand_as(params)
        return -F.binary_cross_entropy_with_logits(params, x, reduction="none").sum(_PIXEL_DIMS)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """E[x|z] = sigmoid(logits): ``(..., C, H, W)`` in [0, 1]."""
        return torch.sigmoid(params)

    def distribution(self, params: torch.Tensor) -> torch.distributions.Distribution:
        """The per-image distribution (event shape ``(C, H, W)``)."""
        return torch.distributions.Independent(
            torch.distributions.Bernoulli(logits=params, validate_args=False), 3, validate_args=False
        )


LIKELIHOODS = {"bernoulli": BernoulliLikelihood}
