"""A perceptual reconstruction term: distances between a classifier's feature maps.

Instead of -log p(x|z), the reconstruction is scored in the feature space of a classifier
trained on the data (the "feature perceptual loss" of Hou et al. 2017, "Deep Feature Consistent
Variational Autoencoder", eq. 5, with our classifier in place of VGG-19):

    perceptual(x, x_hat) = sum_l 1/2 * || phi_l(x) - phi_l(x_hat) ||^2

with phi_l the activations of layer l (e.g. ``relu2``, ``relu4``), the squared differences
summed over the layer's elements, and x_hat the decoder mean E[x|z]. Hou et al. divide each
layer's sum by its size C_l H_l W_l; vaelab sums, as a likelihood sums over pixels, so that with
weight lambda = 1 the term has the scale of a reconstruction NLL (hundreds on MNIST) against the
KL (``perceptual_weight`` = lambda / (C_l H_l W_l) gives their normalisation).

**This is not a likelihood.** It is not the negative log of a density of x, so a loss built on
it is not a bound on -log p(x) and its value is not in nats of the data. vaelab therefore keeps
reporting the plain likelihood's reconstruction NLL, KL and negative ELBO beside it (the
``recon`` and ``neg_elbo`` columns and ``vaelab evaluate``), computed with the model's own
likelihood p(x|z).
"""

from __future__ import annotations

import torch
from torch import nn

from ..models.classifier import Classifier, check_layer_names


class PerceptualDistance(nn.Module):
    """``forward(x, x_hat) -> (..., B)``: the distance above for ``x: (B, C, H, W)`` and
    ``x_hat: (..., B, C, H, W)`` (leading sample dimensions allowed), both in [0, 1].

    The classifier is frozen (no parameter receives gradients) and kept in eval mode; gradients
    flow through it to ``x_hat``. It is not a submodule of the VAE, so it is neither saved in the
    run's checkpoints nor updated by its optimiser.

    Raises:
        ConfigError: an unknown layer name.
    """

    def __init__(self, classifier: Classifier, layers: list[str]):
        super().__init__()
        check_layer_names(layers)
        self.layers = list(layers)
        self.classifier = classifier.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> "PerceptualDistance":
        super().train(mode)
        self.classifier.eval()  # dropout never active: the features are a fixed function
        return self

    def forward(self, x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
        lead = x_hat.shape[:-3]
        with torch.no_grad():
            target = self.classifier.feature_maps(x, self.layers)  # each (B, ...)
        recon = self.classifier.feature_maps(x_hat.reshape(-1, *x_hat.shape[-3:]), self.layers)
        total = x_hat.new_zeros(lead)
        for name in self.layers:
            a = recon[name].reshape(*lead, -1)  # (..., B, n_l)
            b = target[name].reshape(x.shape[0], -1)  # (B, n_l)
            total = total + 0.5 * (a - b).square().sum(-1)
        return total
