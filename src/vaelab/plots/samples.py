"""``vaelab sample``: a grid of generated images from a trained run, with the prior or the
ex-post GMM sampler (:mod:`vaelab.evaluation.samplers`)."""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CheckpointError, option
from ..io import atomic_write_bytes
from ..rundir import RunDir


@dataclass
class Samples:
    """What :func:`sample_run` wrote: the PNG grid and, on request, the ``.npy`` of the images
    ``(n, C, H, W)`` float32 decoder means in [0, 1] (``npy`` None otherwise)."""

    png: Path
    npy: Path | None
    n: int
    sampler: str


def sample_run(run_dir: str | Path, sampler: str = "prior", n: int = 64, *, seed: int = 0, which: str = "best",
               npy: bool = False, output: str | Path | None = None, components: int = 10,
               data_dir: str | None = None, device: str = "auto") -> Samples:
    """Draw ``n`` images from the run in ``run_dir`` and write them as a PNG grid.

    Args:
        sampler: ``prior`` (z ~ p(z)) or ``gmm`` (a ``components``-component full-covariance
            Gaussian mixture fitted to the posterior means of the whole training split, Ghosh
            et al. 2020).
        seed: seeds the prior's draws, or the GMM's fit and draws.
        which: the checkpoint, ``best`` or ``last``.

    A conditional VAE's samples are decoded with every class in turn (0, 1, ..., 0, 1, ...).
        npy: also write the images as ``.npy`` beside the PNG.
        output: the PNG path (default ``RUN_DIR/samples-<sampler>.png``).
        data_dir: where to find the dataset (gmm only; default the run's).

    Raises:
        CheckpointError: not a run directory, or no such checkpoint.
        ConfigError: an unknown sampler or ``n < 1``.
        DataError: (gmm) the dataset cannot be found.
    """
    from ..data import load_dataset
    from ..errors import ConfigError
    from ..evaluation.samplers import SAMPLERS, decode_latents, draw_latents, training_view
    from ..runtime import resolve_device
    from ..training import load_model
    from .figures import grid_figure, image_grid, save_figure

    run_dir = Path(run_dir)
    if sampler not in SAMPLERS:
        raise ConfigError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    if n < 1:
        raise ConfigError(f"{option('n')} must be >= 1, got {n}")
    if not RunDir(run_dir).is_run():
        raise CheckpointError(f"{run_dir} is not a run directory (no config.yaml); pass a directory written by `vaelab train`")
    device = resolve_device(device)
    config = RunDir(run_dir).read_config()
    model = load_model(run_dir, which).to(device)
    train_images = train_labels = None
    if sampler == "gmm":
        data = dataclasses.replace(config.data, train_examples=None, data_dir=data_dir or config.data.data_dir)
        dataset = load_dataset(data)
        train = training_view(dataset.train, dataset.binarize, config.data.binarize_seed)
        train_images, train_labels = train.images, (train.labels if model.conditional else None)
    z = draw_latents(model, sampler, n, seed, train_images, components, device, train_labels=train_labels)
    images = decode_latents(model, z, device=device)
    png = Path(output) if output is not None else run_dir / f"samples-{sampler}.png"
    what = "z ~ p(z)" if sampler == "prior" else f"z ~ {components}-component GMM of the training posterior means"
    fig = grid_figure(image_grid(images, int(np.ceil(np.sqrt(n)))), f"{n} samples: decoder means E[x|z], {what}")
    save_figure(fig, png)
    npy_path = None
    if npy:
        npy_path = png.with_suffix(".npy")
        buffer = io.BytesIO()
        np.save(buffer, images.numpy())
        atomic_write_bytes(npy_path, buffer.getvalue())
    return Samples(png, npy_path, n, sampler)
