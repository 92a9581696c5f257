"""Figures of runs, comparisons across runs, TensorBoard images and the HTML report.

* :func:`plot_run` draws every figure of a run directory (``vaelab plot``; also called at the
  end of training): loss curves, reconstructions, samples, latent manifold, latent scatter,
  singular values, interpolations and, for point data, the toy 2-D figure.
* :func:`compare_runs` overlays several runs' curves with legends from their differing config
  values and tabulates their final metrics (``vaelab compare``).
* :func:`write_report` gathers runs into one self-contained HTML file (``vaelab report``).
* :func:`sample_run` writes a grid of samples from the prior or a GMM sampler (``vaelab sample``).
* :mod:`vaelab.plots.tensorboard` writes image grids and hyper-parameters during training.

The figure functions themselves (:mod:`vaelab.plots.figures`, :mod:`vaelab.plots.latents`)
take a model and tensors and return a :class:`matplotlib.figure.Figure`.
"""

from __future__ import annotations

_LAZY = {
    "KINDS": "run", "RunRecord": "run", "plot_run": "run", "read_run": "run",
    "fixed_indices": "figures", "grid_figure": "figures", "image_grid": "figures",
    "plot_loss_curves": "figures", "plot_reconstructions": "figures", "plot_samples": "figures",
    "save_figure": "figures",
    "latent_spectrum": "latents", "plot_interpolations": "latents", "plot_latent_manifold": "latents",
    "plot_latent_scatter": "latents", "plot_singular_values": "latents", "plot_toy2d": "latents",
    "compare_runs": "compare", "write_report": "report", "sample_run": "samples", "Samples": "samples",
}

__all__ = sorted(_LAZY)


def __getattr__(name):  # imported on first use: `vaelab --help` does not wait for matplotlib
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'vaelab.plots' has no attribute {name!r}")
