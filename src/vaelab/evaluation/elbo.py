"""Batched evaluation of the ELBO's terms over a whole split."""

from __future__ import annotations

import torch

from ..models.vae import VAE
from ..objectives.elbo import elbo_terms
from ..runtime import flush_denormals


@torch.inference_mode()
def evaluate_elbo(model: VAE, images: torch.Tensor, batch_size: int = 1000, n_samples: int = 1,
                  seed: int = 0, device: torch.device | str = "cpu",
                  labels: torch.Tensor | None = None) -> dict[str, float]:
    """Mean reconstruction NLL, KL and negative ELBO over ``images: (N, C, H, W)`` (with
    ``labels: (N,)`` for a conditional VAE: the bound on -log p(x|y)).

    The latent samples come from a generator seeded with ``seed``, so evaluating the same model
    twice gives the same numbers and does not disturb the training RNG.

    Returns:
        ``{"recon", "kl", "neg_elbo"}``: nats per example (summed over pixels and latent
        dimensions, averaged over the N examples), accumulated in float64.
    """
    was_training = model.training
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    totals = torch.zeros(2, dtype=torch.float64, device=device)
    with flush_denormals():
        label_batches = labels.split(batch_size) if labels is not None else [None] * len(images.split(batch_size))
        for x, y in zip(images.split(batch_size), label_batches):
            y = y.to(device, non_blocking=True) if y is not None else None
            terms = elbo_terms(model, x.to(device, non_blocking=True), n_samples, generator, y)
            totals += torch.stack([terms.recon.sum(), terms.kl.sum()]).double()
    model.train(was_training)
    recon, kl = (totals / images.shape[0]).tolist()
    return {"recon": recon, "kl": kl, "neg_elbo": recon + kl}
