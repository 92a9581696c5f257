"""Priors p(z) over the latent space; each returns a torch.distributions object of event
shape ``(D,)``."""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) in ``latent_dim`` dimensions (Kingma & Welling 2014, Sec. 3)."""

    def __init__(self, latent_dim: int):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim), persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim), persistent=False)

    def distribution(self) -> Distribution:
        """``Independent(Normal(loc, scale), 1)``: batch shape (), event shape (D,)."""
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1, validate_args=False)


PRIORS = {"standard_normal": StandardNormalPrior}
