"""The standard figures of a VAE run, drawn with matplotlib's object API (no global pyplot
state, no display needed) and written atomically as PNG files."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from ..io import atomic_write_bytes
from ..models.vae import VAE


def save_figure(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    return atomic_write_bytes(path, buffer.getvalue())


def image_grid(images: torch.Tensor | np.ndarray, n_cols: int, pad: int = 1) -> np.ndarray:
    """Tile ``images: (N, C, H, W)`` in [0, 1] into one ``(rows*(H+pad)+pad, cols*(W+pad)+pad, C)``
    array (C is 1 or 3), white padding between tiles."""
    images = np.asarray(images.detach().cpu() if isinstance(images, torch.Tensor) else images)
    n, c, h, w = images.shape
    n_rows = -(-n // n_cols)
    grid = np.ones((n_rows * (h + pad) + pad, n_cols * (w + pad) + pad, c), dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, n_cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top:top + h, left:left + w] = images[i].transpose(1, 2, 0)
    return grid


def _show_grid(ax, grid: np.ndarray) -> None:
    if grid.shape[2] == 1:
        ax.imshow(grid[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(np.clip(grid, 0, 1), interpolation="nearest")
    ax.set_axis_off()


def plot_loss_curves(history: list[dict[str, float]], path: str | Path, eval_name: str = "test",
                     log_scale: bool = False) -> Path:
    """Negative ELBO, reconstruction NLL and KL per epoch, train and evaluation split, each on
    its own axes (nats per example)."""
    epochs = [row["epoch"] for row in history]
    fig = Figure(figsize=(13, 3.6))
    titles = {"neg_elbo": "negative ELBO", "recon": "reconstruction NLL", "kl": "KL(q(z|x) || p(z))"}
    for ax, (term, title) in zip(fig.subplots(1, 3), titles.items()):
        for split, style in (("train", "-o"), (eval_name, "-s")):
            key = f"{split}_{term}"
            if history and key in history[0]:
                ax.plot(epochs, [row[key] for row in history], style, markersize=3, label=split)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.set_ylabel("nats per example")
        if log_scale:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    return save_figure(fig, path)


@torch.no_grad()
def plot_reconstructions(model: VAE, images: torch.Tensor, path: str | Path, n_cols: int = 10) -> Path:
    """Test images (odd rows) above their reconstructions (even rows): the decoder mean at the
    posterior mean, E[x | z = E_q[z|x]]."""
    model.eval()
    device = next(model.parameters()).device
    recon = model.decode_mean(model.posterior(images.to(device)).mean).cpu()
    rows = []
    for start in range(0, images.shape[0], n_cols):
        rows += [images[start:start + n_cols], recon[start:start + n_cols]]
    grid = image_grid(torch.cat(rows), n_cols)
    fig = Figure(figsize=(n_cols * 0.7, len(rows) * 0.7 * images.shape[2] / images.shape[3] + 0.4))
    ax = fig.subplots()
    _show_grid(ax, grid)
    ax.set_title("test images (odd rows) and reconstructions (even rows)", fontsize=9)
    return save_figure(fig, path)


@torch.no_grad()
def plot_samples(model: VAE, path: str | Path, n: int = 64, seed: int = 0) -> Path:
    """A grid of decoder means for z drawn from the prior p(z)."""
    model.eval()
    generator = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    samples = model.sample(n, generator=generator).cpu()
    n_cols = int(np.ceil(np.sqrt(n)))
    fig = Figure(figsize=(6, 6 * samples.shape[2] / samples.shape[3] + 0.3))
    ax = fig.subplots()
    _show_grid(ax, image_grid(samples, n_cols))
    ax.set_title("samples: decoder means, z ~ p(z)", fontsize=9)
    return save_figure(fig, path)


@torch.no_grad()
def plot_latent_manifold(model: VAE, path: str | Path, n: int = 20, bound: float = 5.0) -> Path:
    """Decoder means over an evenly spaced n x n grid of a 2-D latent space in [-bound, bound]^2
    (Kingma & Welling 2014, Fig. 4); z_1 grows to the right, z_2 upwards."""
    if model.latent_dim != 2:
        raise ValueError(f"the latent manifold figure needs a 2-D latent space, got {model.latent_dim}")
    model.eval()
    device = next(model.parameters()).device
    values = torch.linspace(-bound, bound, n)
    z = torch.stack(torch.meshgrid(values.flip(0), values, indexing="ij")[::-1], dim=-1).reshape(-1, 2)
    images = model.decode_mean(z.to(device)).cpu()
    fig = Figure(figsize=(7, 7))
    ax = fig.subplots()
    _show_grid(ax, image_grid(images, n, pad=0))
    ax.set_title(f"decoder means over z in [-{bound:g}, {bound:g}]^2 (z_1 grows rightwards, z_2 upwards)",
                 fontsize=9)
    return save_figure(fig, path)


@torch.no_grad()
def plot_latent_scatter(model: VAE, images: torch.Tensor, labels: torch.Tensor, path: str | Path,
                        class_names: tuple[str, ...] | None = None, batch_size: int = 1000) -> Path:
    """Posterior means E_q[z|x] of ``images`` in a 2-D latent space, coloured by label."""
    if model.latent_dim != 2:
        raise ValueError(f"the latent scatter figure needs a 2-D latent space, got {model.latent_dim}")
    model.eval()
    device = next(model.parameters()).device
    means = torch.cat([model.posterior(x.to(device)).mean.cpu() for x in images.split(batch_size)]).numpy()
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    n_classes = min(len(class_names), 10) if class_names else 10  # tab10: at most 10 colours
    scatter = ax.scatter(means[:, 0], means[:, 1], c=labels.numpy(), cmap="tab10", s=2, alpha=0.7,
                         vmin=-0.5, vmax=9.5)
    cbar = fig.colorbar(scatter, ax=ax, ticks=range(n_classes))
    if class_names:
        cbar.ax.set_yticklabels(class_names[:n_classes])
    ax.set_xlabel("z_1")
    ax.set_ylabel("z_2")
    ax.set_title("posterior means of test images", fontsize=9)
    return save_figure(fig, path)
