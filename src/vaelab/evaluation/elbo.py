"""Batched evaluation of the ELBO's terms over a whole split."""

from __future__ import annotations

import torch

from ..models.vae import VAE
from ..objectives.elbo import elbo_terms
from ..runtime import flush_denormals


@torch.inference_mode()
def evaluate_elbo(model: VAE, images: torch.Tensor, batch_size: int = 1000, n_samples: int = 1,
                  seed: int = 0, device: torch.device | str = "cpu") -> dict[str, float]:
    """Mean reconstruction NLL, KL and negative ELBO over ``images: (N, C, H, W)``.

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
        for x in images.split(batch_size):
            terms = elbo_terms(model, x.to(device, non_blocking=True), n_samples, generator)
            totals += torch.stack([terms.recon.sum(), terms.kl.sum()]).double()
    model.train(was_training)
    recon, kl = (totals / images.shape[0]).tolist()
    return {"recon": recon, "kl": kl, "neg_elbo": recon + kl}
