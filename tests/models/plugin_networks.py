"""A plug-in module as a user would write one: importing it registers the network ``tiny_conv``
(``vaelab --import tests.models.plugin_networks train --network tiny_conv``)."""

from __future__ import annotations

import torch
from torch import nn

import vaelab


class TinyConvEncoder(nn.Module):
    """x: (B, C, H, W) -> (mean, log_var), each (B, D): one strided convolution, then two heads."""

    def __init__(self, image_shape, latent_dim: int):
        super().__init__()
        c, h, w = image_shape
        self.conv = nn.Sequential(nn.Conv2d(c, 4, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten())
        n = 4 * ((h + 1) // 2) * ((w + 1) // 2)
        self.mean, self.log_var = nn.Linear(n, latent_dim), nn.Linear(n, latent_dim)

    def forward(self, x: torch.Tensor) -> vaelab.EncoderOutput:
        h = self.conv(x)
        return vaelab.EncoderOutput(self.mean(h), self.log_var(h))


class TinyDecoder(nn.Module):
    """z: (N, D) -> (N, K*C, H, W): a linear layer reshaped to the image."""

    def __init__(self, image_shape, latent_dim: int, channels: int):
        super().__init__()
        self.shape = (channels, *image_shape[1:])
        self.out = nn.Linear(latent_dim, channels * image_shape[1] * image_shape[2])

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.out(z).view(-1, *self.shape)


def build(model_config, image_shape, params_per_pixel):
    return (TinyConvEncoder(image_shape, model_config.latent_dim),
            TinyDecoder(image_shape, model_config.latent_dim, params_per_pixel * image_shape[0]))


vaelab.register_network("tiny_conv", build)
