"""Building blocks of vaelab's figures, and the figures of images: loss curves,
reconstructions and samples.

Every figure is a :class:`matplotlib.figure.Figure` made with matplotlib's object API (no
pyplot, no global state, no display), drawn under :func:`styled` (readable font sizes) and
returned to the caller, who saves it with :func:`save_figure` (an atomic PNG write) or embeds
:func:`figure_png` bytes. Image grids are laid out pixel-exactly (:func:`grid_figure`): every
image pixel becomes an integer number of screen pixels, so tiles keep their aspect ratio (Frey
faces are 28 high by 20 wide) and colour images (CIFAR-10, SVHN) are shown in RGB.

Losses are in nats per example (summed over pixels and latent dimensions, averaged over
examples), as in ``metrics.csv``.
"""

from __future__ import annotations

import contextlib
import io
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..errors import option
from ..io import atomic_write_bytes
from ..models.priors import sample_prior
from ..models.vae import VAE, posterior_means

DPI = 100
"""Figures are rendered at 100 dots per inch, so a figure of W x H inches is 100W x 100H pixels."""

STYLE = {
    "font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10,
    "xtick.labelsize": 10, "ytick.labelsize": 10, "figure.titlesize": 13,
    "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False,
    "savefig.dpi": DPI, "figure.dpi": DPI, "image.interpolation": "nearest",
}
"""Matplotlib settings of every vaelab figure (applied by :func:`styled`)."""

UNITS = "nats per example"

TERM_TITLES = {
    "neg_elbo": "negative ELBO",
    "recon": "reconstruction NLL  -E_q[log p(x|z)]",
    "kl": "KL(q(z|x) || p(z))",
    "elbo": "ELBO",
}


@contextlib.contextmanager
def styled() -> Iterator[None]:
    """Draw inside this block to get vaelab's font sizes and grid style (restored on exit)."""
    with matplotlib.rc_context(STYLE):
        yield


def figure_png(fig: Figure) -> bytes:
    """The PNG bytes of ``fig`` at :data:`DPI` (its size in inches times 100 pixels)."""
    buffer = io.BytesIO()
    with styled():
        fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG file atomically (:func:`vaelab.io.atomic_write_bytes`); return the path."""
    return atomic_write_bytes(path, figure_png(fig))


def to_numpy_images(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """``(N, C, H, W)`` tensor or array -> float32 numpy array on the CPU."""
    if isinstance(images, torch.Tensor):
        images = images.detach().float().cpu().numpy()
    return np.asarray(images, dtype=np.float32)


def image_grid(images: torch.Tensor | np.ndarray, n_cols: int, pad: int = 1, pad_value: float = 1.0) -> np.ndarray:
    """Tile ``images: (N, C, H, W)`` in [0, 1] row by row into one array
    ``(rows*(H+pad)+pad, n_cols*(W+pad)+pad, C)`` (C is 1 or 3), ``pad`` pixels of
    ``pad_value`` (white) between and around tiles; unused tiles of the last row stay blank."""
    images = to_numpy_images(images)
    n, c, h, w = images.shape
    n_rows = -(-n // n_cols)
    grid = np.full((n_rows * (h + pad) + pad, n_cols * (w + pad) + pad, c), pad_value, dtype=np.float32)
    for i in range(n):
        r, col = divmod(i, n_cols)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[top:top + h, left:left + w] = images[i].transpose(1, 2, 0)
    return grid


def tile_centres(n: int, size: int, pad: int) -> list[float]:
    """Centres (in grid pixels) of ``n`` tiles of ``size`` pixels laid out by :func:`image_grid`."""
    return [pad + i * (size + pad) + size / 2 for i in range(n)]


def grid_scale(grid_height: int, grid_width: int, max_width: int = 900, max_height: int = 1100) -> int:
    """Screen pixels per image pixel: an integer (crisp, aspect-true), about ``max_width`` wide."""
    return int(max(1, min(6, round(max_width / grid_width), round(max_height / grid_height))))


def tick_label_width(n_chars: int) -> int:
    """Screen pixels kept left of an image grid for tick labels of ``n_chars`` characters
    (9-point DejaVu Sans digits are about 8 pixels wide at 100 dpi)."""
    return 10 + 8 * n_chars


def grid_figure(grid: np.ndarray, title: str, *, scale: int | None = None,
                xticks: Sequence[tuple[float, str]] = (), yticks: Sequence[tuple[float, str]] = (),
                xlabel: str | None = None, ylabel: str | None = None) -> Figure:
    """A figure showing ``grid: (H, W, C)`` in [0, 1] pixel-exactly under ``title``.

    The image area is exactly ``scale * (W, H)`` screen pixels (``scale`` from
    :func:`grid_scale` unless given), with fixed margins for the title, optional ticks
    (``(position in grid pixels, label)``) and axis labels, so the PNG's size is known and
    every tile keeps its aspect ratio. One channel is drawn in gray levels (0 black, 1 white),
    three as RGB.
    """
    gh, gw, c = grid.shape
    scale = scale or grid_scale(gh, gw)
    left = 12 + (tick_label_width(max(len(t) for _, t in yticks)) if yticks else 0) + (22 if ylabel else 0)
    bottom = 12 + (22 if xticks else 0) + (22 if xlabel else 0)
    right = 12
    width = gw * scale + left + right
    lines = textwrap.wrap(title, width=max(24, int(width / 9.5)))  # 12-point characters are up to ~9 px
    top = 14 + 19 * len(lines)
    height = gh * scale + top + bottom
    with styled():
        fig = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
        ax = fig.add_axes((left / width, bottom / height, gw * scale / width, gh * scale / height))
        if c == 1:
            ax.imshow(grid[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest",
                      extent=(0, gw, gh, 0), aspect="auto")
        else:
            ax.imshow(np.clip(grid, 0, 1), interpolation="nearest", extent=(0, gw, gh, 0), aspect="auto")
        ax.grid(False)
        for side in ax.spines.values():
            side.set_visible(False)
        ax.set_xticks([p for p, _ in xticks], [t for _, t in xticks], fontsize=9)
        ax.set_yticks([p for p, _ in yticks], [t for _, t in yticks], fontsize=9)
        ax.tick_params(length=0, pad=3)
        if xlabel:
            ax.set_xlabel(xlabel)
        if ylabel:
            ax.set_ylabel(ylabel)
        fig.text(0.5, 1 - 8 / height, "\n".join(lines), ha="center", va="top", fontsize=12)
    return fig


def fixed_indices(labels: torch.Tensor | np.ndarray, n: int) -> list[int]:
    """``n`` example indices chosen by a fixed rule, the same in every run on the same data:
    round-robin over the classes in label order, taking each class's examples in index order
    (for MNIST's test set: the first 0, the first 1, ..., the first 9, the second 0, ...).

    With a single class (unlabelled data such as Frey faces, whose neighbours are consecutive
    video frames) the ``n`` indices are evenly spaced over the split instead.
    """
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    if len(np.unique(labels)) <= 1:
        count = min(n, len(labels))
        return sorted(set(np.linspace(0, len(labels) - 1, count).round().astype(int).tolist())) if count else []
    per_class = [np.flatnonzero(labels == c).tolist() for c in np.unique(labels)]
    chosen: list[int] = []
    for k in range(max((len(p) for p in per_class), default=0)):
        for members in per_class:
            if k < len(members):
                chosen.append(members[k])
                if len(chosen) == n:
                    return chosen
    return chosen


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def _label_parts(labels: torch.Tensor | None, n: int, batch_size: int, device) -> list:
    if labels is None:
        return [None] * len(range(0, n, batch_size))
    return [y.to(device) for y in torch.as_tensor(labels).long().split(batch_size)]


@torch.no_grad()
def encode_means(model: VAE, images: torch.Tensor, batch_size: int = 1000,
                 labels: torch.Tensor | None = None) -> np.ndarray:
    """Posterior means E_q[z|x] of ``images: (N, C, H, W)`` -> ``(N, D)`` float64 numpy
    (E_q[z|x,y] with ``labels: (N,)`` for a conditional VAE)."""
    model.eval()
    labels = torch.as_tensor(labels).long() if labels is not None else None
    return posterior_means(model, images, batch_size, labels).numpy()


@torch.no_grad()
def decode_means(model: VAE, z: torch.Tensor | np.ndarray, batch_size: int = 1000,
                 labels: torch.Tensor | None = None) -> torch.Tensor:
    """Decoder means E[x|z] of ``z: (N, D)`` -> ``(N, C, H, W)`` float32 on the CPU (E[x|z,y] with
    ``labels: (N,)`` for a conditional VAE)."""
    model.eval()
    device = model_device(model)
    z = torch.as_tensor(np.asarray(z), dtype=torch.float32) if not isinstance(z, torch.Tensor) else z.float()
    parts = _label_parts(labels, z.shape[0], batch_size, device)
    return torch.cat([model.decode_mean(part.to(device), y).float().cpu() for part, y in zip(z.split(batch_size), parts)])


# --- loss curves --------------------------------------------------------------------------


def set_log_scale(ax) -> str:
    """A logarithmic y axis, or a symmetric-log one (linear within +-1) when the axes hold
    values <= 0 (a continuous likelihood's NLL can be negative); returns the scale used."""
    data = [line for line in ax.lines if line.get_transform() is ax.transData]  # not axvline markers
    values = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in data] or [np.ones(1)])
    values = values[np.isfinite(values)]
    scale = "log" if values.size == 0 or values.min() > 0 else "symlog"
    ax.set_yscale(scale)
    return scale


def plot_loss_curves(history: list[dict[str, float]], eval_name: str = "test", log_scale: bool = False,
                     title: str | None = None) -> Figure:
    """Negative ELBO, reconstruction NLL and KL per epoch, train and ``eval_name`` split, each
    term on its own axes (nats per example), the best epoch (lowest evaluation negative ELBO)
    marked. ``history`` holds the rows of ``metrics.csv`` (``epoch``, ``train_recon``, ...); a
    hierarchical VAE's KL per layer (``test_kl_1``, ...) is drawn dotted on the KL axes.

    Train values are running averages over each epoch's batches (the model changes during the
    epoch); evaluation values are computed after the epoch.
    """
    epochs = [row["epoch"] for row in history]
    key = f"{eval_name}_neg_elbo"
    finite = [row for row in history if np.isfinite(row.get(key, np.nan))]
    best = min(finite, key=lambda row: row[key])["epoch"] if finite else None
    with styled():
        fig = Figure(figsize=(14, 4.2), layout="constrained")
        for ax, term in zip(fig.subplots(1, 3), ("neg_elbo", "recon", "kl")):
            for split, style in (("train", dict(marker="o", linestyle="-")),
                                 (eval_name, dict(marker="s", linestyle="--"))):
                key = f"{split}_{term}"
                if history and key in history[0]:  # markers only where they can be told apart
                    ax.plot(epochs, [row[key] for row in history], markersize=4 if len(epochs) <= 60 else 0,
                            label=split, **style)
            layers = sorted((k for k in (history[0] if history and term == "kl" else ())
                             if k.startswith(f"{eval_name}_kl_") and k.rsplit("_", 1)[1].isdigit()),
                            key=lambda k: int(k.rsplit("_", 1)[1]))
            for k in layers:  # a hierarchical VAE: each layer's KL, z_1 next to x
                ax.plot(epochs, [row[k] for row in history], linewidth=1, linestyle=":",
                        label=f"{eval_name}, layer z_{k.rsplit('_', 1)[1]}")
            if best is not None:
                ax.axvline(best, color="0.5", linestyle=":", linewidth=1.2, label=f"best epoch ({best})")
            ax.set_title(TERM_TITLES[term])
            ax.set_xlabel("epoch")
            ax.set_ylabel(UNITS)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if log_scale:
                set_log_scale(ax)
            ax.legend()
        fig.suptitle(title or f"loss per epoch (lower is better{', log scale' if log_scale else ''})")
    return fig


# --- reconstructions and samples ----------------------------------------------------------


@torch.no_grad()
def plot_reconstructions(model: VAE, images: torch.Tensor, labels: torch.Tensor | None = None,
                         class_names: Sequence[str] | None = None, n_cols: int = 10,
                         layout: str = "interleaved", n_draws: int = 7, seed: int = 0) -> Figure:
    """Test images and their reconstructions, ``images: (N, C, H, W)`` in [0, 1].

    ``layout``: ``interleaved`` puts each row of ``n_cols`` inputs above the row of their
    reconstructions; ``block`` puts all input rows above all reconstruction rows (as in the
    SJTU report: 4 rows of inputs, then 4 rows of outputs); ``columns`` gives each image a row,
    the original in the first column and then decoder means at ``n_draws`` draws z ~ q(z|x)
    (seeded by ``seed``; as in Albu's report, Fig. 1b). Otherwise a reconstruction is the
    decoder mean at the posterior mean, E[x | z = E_q[z|x]] (for a Bernoulli decoder: the pixel
    probabilities, not a binary draw). When ``labels`` are given and the first row holds
    ``n_cols`` different classes (as :func:`fixed_indices` arranges), columns are labelled with
    ``class_names``.

    Raises:
        ValueError: an unknown ``layout``.
    """
    n = images.shape[0]
    _, _, h, w = images.shape
    cond = labels if model.conditional else None  # a conditional VAE encodes and decodes with the true label
    if layout == "columns":
        device = model_device(model)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            q = model.posterior(images.to(device), None if cond is None else cond.to(device))
            eps = torch.randn((n_draws, *q.mean.shape), generator=generator).to(device)
            z = q.mean + q.stddev * eps                                    # (n_draws, N, D)
        repeated = None if cond is None else cond.repeat(n_draws)
        decoded = decode_means(model, z.reshape(-1, z.shape[-1]).cpu(), labels=repeated)
        decoded = decoded.reshape(n_draws, n, *images.shape[1:])
        tiles = torch.cat([images.float().cpu()[:, None], decoded.transpose(0, 1)], dim=1).reshape(-1, *images.shape[1:])
        grid = image_grid(tiles, n_draws + 1)
        xticks = list(zip(tile_centres(n_draws + 1, w, 1), ["input"] + [f"z{i + 1}" for i in range(n_draws)]))
        return grid_figure(grid, f"test images (first column) and decoder means E[x|z] at {n_draws} draws "
                           "z ~ q(z|x)", xticks=xticks)
    if layout not in ("interleaved", "block"):
        raise ValueError(f"layout must be interleaved, block or columns, got {layout!r}")
    recon = decode_means(model, encode_means(model, images, labels=cond), labels=cond)
    inputs, outputs, ylabels = [], [], []
    for start in range(0, n, n_cols):
        part = images[start:start + n_cols].float().cpu()
        blank = torch.ones((n_cols - part.shape[0], *part.shape[1:]))
        inputs.append(torch.cat([part, blank]))
        outputs.append(torch.cat([recon[start:start + n_cols], blank]))
    if layout == "block":
        rows = inputs + outputs
        ylabels = ["input"] * len(inputs) + ["recon."] * len(outputs)
    else:
        rows = [r for pair in zip(inputs, outputs) for r in pair]
        ylabels = ["input", "recon."] * len(inputs)
    grid = image_grid(torch.cat(rows), n_cols)
    yticks = list(zip(tile_centres(len(ylabels), h, 1), ylabels))
    xticks: list[tuple[float, str]] = []
    if labels is not None and layout == "interleaved":
        first = [int(v) for v in labels[:n_cols]]
        if len(set(first)) == len(first) == n_cols:
            names = [class_names[v] if class_names and v < len(class_names) else str(v) for v in first]
            xticks = list(zip(tile_centres(n_cols, w, 1), names))
    return grid_figure(grid, "test images and their reconstructions: decoder means E[x|z] at the "
                       "posterior mean z = E_q[z|x]", xticks=xticks, yticks=yticks)


@torch.no_grad()
def prior_samples(model: VAE, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` latents drawn from the model's prior with a generator seeded by ``seed``: ``(n, D)``
    on the CPU (the same draws in every run with the same seed and latent size)."""
    generator = torch.Generator().manual_seed(seed)
    return sample_prior(model.prior_distribution(), n, generator).detach().cpu()  # mixtures too


@torch.no_grad()
def plot_samples(model: VAE, n: int = 64, seed: int = 0) -> Figure:
    """A square grid of decoder means E[x|z] for ``n`` latents z ~ p(z) (seeded by ``seed``); a
    conditional VAE decodes them with every class in turn."""
    labels = torch.arange(n) % model.num_classes if model.conditional else None
    samples = decode_means(model, prior_samples(model, n, seed), labels=labels)
    n_cols = int(np.ceil(np.sqrt(n)))
    return grid_figure(image_grid(samples, n_cols), f"samples: decoder means E[x|z] of {n} draws z ~ p(z)")


@torch.no_grad()
def plot_class_samples(model: VAE, class_names: Sequence[str] | None = None, n_per_class: int = 10,
                       seed: int = 0) -> Figure:
    """A conditional VAE's samples per class: row c holds E[x | z_j, y = c] for the same
    ``n_per_class`` latents z_j ~ p(z) in every row (seeded by ``seed``), so a column keeps the
    "style" z and a row the class (Sohn et al. 2015; Kingma et al. 2014, Fig. 5).

    Raises:
        ValueError: ``model`` is not conditional.
    """
    if not model.conditional:
        raise ValueError(f"a per-class sample grid needs a conditional VAE ({option('model.conditional')})")
    k = model.num_classes
    z = prior_samples(model, n_per_class, seed).repeat(k, 1)  # (k * n, D): the same z in every row
    labels = torch.arange(k).repeat_interleave(n_per_class)
    samples = decode_means(model, z, labels=labels)
    h = samples.shape[-2]
    names = [class_names[c] if class_names and c < len(class_names) else str(c) for c in range(k)]
    yticks = list(zip(tile_centres(k, h, 1), names))
    return grid_figure(image_grid(samples, n_per_class), f"samples per class: E[x|z,y], the same {n_per_class} "
                       "draws z ~ p(z) in every row, one class y per row", yticks=yticks)
