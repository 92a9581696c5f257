"""Figures of a run: loss curves, reconstructions, samples, latent manifold and scatter."""

from __future__ import annotations

from pathlib import Path

from .figures import (image_grid, plot_latent_manifold, plot_latent_scatter, plot_loss_curves,
                      plot_reconstructions, plot_samples, save_figure)

__all__ = [
    "draw_run_figures", "image_grid", "plot_latent_manifold", "plot_latent_scatter",
    "plot_loss_curves", "plot_reconstructions", "plot_samples", "save_figure",
]

N_RECONSTRUCTIONS = 20
"""reconstructions.png shows the first 20 test images, the same in every run."""


def draw_run_figures(model, dataset, history, out_dir: str | Path, seed: int = 0) -> list[Path]:
    """Write every figure a run has to ``out_dir`` and return their paths.

    ``dataset`` is a :class:`vaelab.data.Dataset`; ``history`` the per-epoch metric rows. The
    latent manifold and latent scatter figures are drawn for a 2-D latent space only.
    """
    out_dir = Path(out_dir)
    test = dataset.test
    paths = [
        plot_loss_curves(history, out_dir / "loss_curves.png", eval_name=dataset.eval_name),
        plot_reconstructions(model, test.images[:N_RECONSTRUCTIONS],
                             out_dir / "reconstructions.png"),
        plot_samples(model, out_dir / "samples.png", seed=seed),
    ]
    if model.latent_dim == 2:
        paths.append(plot_latent_manifold(model, out_dir / "latent_manifold.png"))
        paths.append(plot_latent_scatter(model, test.images, test.labels, out_dir / "latent_scatter.png",
                                         class_names=dataset.spec.classes))
    return paths
