"""TensorBoard extras written during training: the run's config as hyper-parameters (the
HPARAMS tab) and as text, and image grids (reconstructions, samples, latent manifold) every
``figures.tensorboard_images_every`` epochs.

Images are raw grids of decoder means (``image_grid``), not rendered figures, so they cost a
few milliseconds; point data gets the rendered toy 2-D figure instead. Nothing here draws from
the training random number generators, so exact resume is unaffected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..config import Config
from ..schema import flatten

def hparam_values(config: Config) -> dict[str, Any]:
    """The config flattened to ``{"model.latent_dim": 20, ...}`` with values TensorBoard accepts
    (numbers and strings; lists and None become strings, booleans 'true'/'false')."""
    def shown(value: Any) -> Any:
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value) if value is None or isinstance(value, (list, tuple)) else value

    return {key: shown(value) for key, value in flatten(config.to_dict()).items()}


def log_config(writer, config: Config, eval_name: str = "test") -> None:
    """Write ``config`` as TensorBoard hyper-parameters of this run (into the run's own event
    file, not a sub-run as ``SummaryWriter.add_hparams`` does), with the per-epoch scalars
    ``<split>/neg_elbo``, ``/recon`` and ``/kl`` as its metrics, and as YAML text."""
    from torch.utils.tensorboard.summary import hparams

    metrics = {f"{split}/{term}": 0.0 for split in (eval_name, "train") for term in ("neg_elbo", "recon", "kl")}
    for summary in hparams(hparam_values(config), metrics):
        writer.file_writer.add_summary(summary)
    writer.add_text("config", "```\n" + config.to_yaml() + "```", 0)


def should_log_images(config: Config, epoch: int) -> bool:
    every = config.figures.tensorboard_images_every
    return every > 0 and (epoch % every == 0 or epoch == config.training.epochs)


@torch.no_grad()
def log_epoch_images(writer, model, dataset, config: Config, epoch: int) -> bool:
    """Add image grids of ``model`` at ``epoch`` when the schedule says so; True if written.

    Tags: ``images/reconstructions`` (20 fixed test images above their reconstructions),
    ``images/samples`` (64 decoder means, z ~ p(z) seeded by the run's seed) and
    ``images/latent_manifold`` (a grid over the first two latent dimensions, or the one of a
    1-D latent, within the configured bounds); ``images/toy2d`` for point data.
    """
    if not should_log_images(config, epoch):
        return False
    was_training = model.training
    try:
        if dataset.spec.kind == "points":
            from .figures import figure_png
            from .latents import plot_toy2d

            png = figure_png(plot_toy2d(model, dataset.test.images, dataset.test.labels, dataset.spec.classes))
            writer.add_image("images/toy2d", _png_to_array(png), epoch, dataformats="HWC")
            return True
        from .figures import decode_means, encode_means, fixed_indices, image_grid, prior_samples
        from .latents import manifold_latents, prior_bounds

        test = dataset.test
        idx = fixed_indices(test.labels, 20)
        images = test.images[idx].float().cpu()
        cond = test.labels[idx] if model.conditional else None  # a conditional VAE takes the label
        recon = decode_means(model, encode_means(model, images, labels=cond), labels=cond)
        pairs = torch.cat([images[:10], recon[:10], images[10:], recon[10:]])
        writer.add_image("images/reconstructions", image_grid(pairs, 10), epoch, dataformats="HWC")
        sample_labels = torch.arange(64) % model.num_classes if model.conditional else None
        samples = decode_means(model, prior_samples(model, 64, config.seed), labels=sample_labels)
        writer.add_image("images/samples", image_grid(samples, 8), epoch, dataformats="HWC")
        if model.conditional:
            return True  # the latent manifold decodes z without a label
        f = config.figures
        dims = [d - 1 for d in f.manifold_dims] if f.manifold_dims is not None else list(range(min(2, model.latent_dim)))
        lo, hi = prior_bounds(model, f.manifold_range, f.manifold_quantile)
        z, _ = manifold_latents(model, f.manifold_steps, dims, lo, hi)
        grid = image_grid(decode_means(model, z), f.manifold_steps, pad=0)
        writer.add_image("images/latent_manifold", grid, epoch, dataformats="HWC")
        return True
    finally:
        model.train(was_training)


def _png_to_array(png: bytes) -> np.ndarray:
    import io

    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))

