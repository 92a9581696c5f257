"""Priors p(z) over the latent space; each returns a torch.distributions object of event
shape ``(D,)``.

Adding a prior: one class here with ``distribution()``, registered in :data:`PRIORS`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Distribution, Independent, Normal

from ..config import ModelConfig


class NormalPrior(nn.Module):
    """p(z) = N(loc, diag(scale^2)), a diagonal Gaussian; N(0, I) by default (Kingma & Welling
    2014, Sec. 3). ``loc`` and ``scale`` are one value or one per dimension.

    The KL of a Gaussian posterior to it is closed-form: per dimension
    ``log(s_p / s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2``.
    """

    def __init__(self, latent_dim: int, loc: list[float] | float = 0.0, scale: list[float] | float = 1.0):
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim) + torch.as_tensor(loc, dtype=torch.float32),
                             persistent=False)
        self.register_buffer("scale", torch.ones(latent_dim) * torch.as_tensor(scale, dtype=torch.float32),
                             persistent=False)

    @classmethod
    def from_config(cls, config: ModelConfig) -> "NormalPrior":
        return cls(config.latent_dim, config.prior_loc, config.prior_scale())

    def distribution(self) -> Distribution:
        """``Independent(Normal(loc, scale), 1)``: batch shape (), event shape (D,)."""
        return Independent(Normal(self.loc, self.scale, validate_args=False), 1, validate_args=False)


PRIORS = {"normal": NormalPrior, "standard_normal": NormalPrior}
