"""Encoder and decoder networks.

The encoder maps an image batch ``x: (B, C, H, W)`` to the parameters of the diagonal Gaussian
posterior q(z|x): ``mean`` and ``log_var``, each ``(B, D)``. The decoder maps latents
``z: (..., D)`` to the likelihood's parameters ``(..., K*C, H, W)`` (K parameters per pixel,
e.g. K=1 Bernoulli logits).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

ACTIVATIONS = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
}


class EncoderOutput(NamedTuple):
    """Parameters of q(z|x) = N(mean, diag(exp(log_var))); each (B, D)."""

    mean: torch.Tensor
    log_var: torch.Tensor


def mlp(sizes: list[int], activation: str) -> nn.Sequential:
    """Linear layers ``sizes[0] -> sizes[1] -> ...`` with ``activation`` after each one."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
    return nn.Sequential(*layers)


class MLPEncoder(nn.Module):
    """Flatten ``x`` and apply an MLP with ``hidden`` widths, then the mean and log-variance heads
    (the encoder of Kingma & Welling 2014, Appendix C.2)."""

    def __init__(self, image_shape: tuple[int, int, int], hidden: list[int], latent_dim: int,
                 activation: str = "relu"):
        super().__init__()
        n_in = int(torch.tensor(image_shape).prod())
        self.body = mlp([n_in, *hidden], activation)
        self.mean = nn.Linear(hidden[-1] if hidden else n_in, latent_dim)
        self.log_var = nn.Linear(hidden[-1] if hidden else n_in, latent_dim)

    def forward(self, x: torch.Tensor) -> EncoderOutput:
        h = self.body(x.flatten(1))  # (B, hidden[-1])
        return EncoderOutput(self.mean(h), self.log_var(h))


class MLPDecoder(nn.Module):
    """MLP from ``z: (..., D)`` through ``hidden`` widths to ``params_per_pixel`` parameters per
    pixel, reshaped to ``(..., params_per_pixel * C, H, W)``. No output non-linearity: the
    likelihood interprets the raw outputs (e.g. as logits)."""

    def __init__(self, image_shape: tuple[int, int, int], hidden: list[int], latent_dim: int,
                 activation: str = "relu", params_per_pixel: int = 1):
        super().__init__()
        c, h, w = image_shape
        self.out_shape = (params_per_pixel * c, h, w)
        self.body = mlp([latent_dim, *hidden], activation)
        self.out = nn.Linear(hidden[-1] if hidden else latent_dim, params_per_pixel * c * h * w)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(z)).unflatten(-1, self.out_shape)
