"""Figures of the latent space: manifold, scatter (1-D, 2-D, 3-D, PCA), singular values,
interpolations, and the toy 2-D figure for point data.

Latent codes are posterior means E_q[z|x] of test examples, ``(N, D)``; decoded images are
decoder means E[x|z], ``(N, C, H, W)`` in [0, 1]. Point data (a dataset of ``kind ==
"points"``, stored as ``(N, 1, 1, d)``) is drawn as scatter plots instead of images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from matplotlib.figure import Figure

from ..models.vae import VAE
from .figures import (UNITS, decode_means, encode_means, grid_figure, image_grid, prior_samples, styled,
                      tile_centres, to_numpy_images)

EXPLAINED_THRESHOLDS = (0.95, 0.985, 0.99)
"""Fractions of variance for which the singular-value figure reports the dimensions needed."""


# --- colours by label -----------------------------------------------------------------------


def class_colours(n_classes: int) -> list:
    """One distinct colour per class: tab10 up to 10 classes, tab20 up to 20, else viridis."""
    import matplotlib

    if n_classes <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n_classes)]
    if n_classes <= 20:
        return [matplotlib.colormaps["tab20"](i) for i in range(n_classes)]
    return [matplotlib.colormaps["viridis"](i / max(1, n_classes - 1)) for i in range(n_classes)]


def _label_groups(labels: np.ndarray, class_names: Sequence[str] | None):
    """[(name, mask, colour)] per label present; a single group when all labels are equal."""
    values = np.unique(labels)
    colours = class_colours(int(values.max()) + 1 if values.size else 1)
    groups = []
    for v in values:
        name = class_names[v] if class_names and 0 <= v < len(class_names) else str(v)
        groups.append((name, labels == v, colours[int(v)] if len(values) > 1 else "tab:blue"))
    return groups


def _legend(ax, title: str | None = None, outside: bool = True) -> None:
    kwargs = dict(markerscale=3, title=title, frameon=False)
    if outside:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), **kwargs)
    else:
        ax.legend(**kwargs)


# --- latent manifold ------------------------------------------------------------------------


def prior_bounds(model: VAE, manifold_range: Sequence[float] | None = None,
                 quantile: float = 0.025) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension bounds ``(lo, hi)``, each ``(D,)``, of the latent manifold grid.

    With ``manifold_range`` = ``[B]`` or ``[LO, HI]`` every dimension spans ``[-B, B]`` or
    ``[LO, HI]``. Otherwise each dimension spans the prior marginal's quantiles ``quantile``
    and ``1 - quantile`` (for N(0, 1) and 0.025: +-1.96), so decoded images come from where the
    prior has mass (Kingma & Welling 2014, Fig. 4, map a uniform grid through the inverse
    Gaussian CDF the same way). Priors without an inverse CDF use mean +- k std with the
    Gaussian k.
    """
    d = model.latent_dim
    if manifold_range is not None:
        lo, hi = (-abs(manifold_range[0]), abs(manifold_range[0])) if len(manifold_range) == 1 else manifold_range
        return np.full(d, float(lo)), np.full(d, float(hi))
    p = model.prior_distribution()
    probs = torch.tensor([quantile, 1 - quantile], dtype=torch.float32)
    base = getattr(p, "base_dist", p)
    try:
        q = base.icdf(probs.to(base.mean.device)[:, None].expand(2, d))
        lo, hi = q.detach().cpu().double().numpy()
    except (NotImplementedError, AttributeError, RuntimeError, ValueError):
        k = float(torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(1 - quantile)))
        mean, std = p.mean.detach().cpu().double().numpy(), p.stddev.detach().cpu().double().numpy()
        lo, hi = mean - k * std, mean + k * std
    return np.broadcast_to(lo, (d,)).copy(), np.broadcast_to(hi, (d,)).copy()


def most_active_dims(means: np.ndarray, k: int = 2) -> list[int]:
    """The ``k`` latent dimensions whose posterior means vary most over the data (largest
    Var_x E_q[z_d|x]; Burda et al. 2016 call a dimension active when this exceeds 0.01),
    in increasing index order."""
    order = np.argsort(-means.var(axis=0), kind="stable")[:k]
    return sorted(int(i) for i in order)


def manifold_latents(model: VAE, steps: int, dims: Sequence[int], lo: np.ndarray, hi: np.ndarray
                     ) -> tuple[torch.Tensor, list[np.ndarray]]:
    """The latent grid: ``steps`` evenly spaced values per dimension in ``dims`` (one or two),
    the other dimensions at the prior mean.

    Returns ``z: (steps**len(dims), D)`` row-major for display (for two dimensions the first
    row is the *largest* value of ``dims[1]``, so it grows upwards, and ``dims[0]`` grows
    rightwards) and the values along each dimension (increasing).
    """
    centre = model.prior_distribution().mean.detach().cpu().float()
    axes = [np.linspace(lo[d], hi[d], steps) for d in dims]
    if len(dims) == 1:
        z = centre.repeat(steps, 1)
        z[:, dims[0]] = torch.as_tensor(axes[0], dtype=torch.float32)
    else:
        rows, cols = np.meshgrid(axes[1][::-1], axes[0], indexing="ij")  # (steps, steps)
        z = centre.repeat(steps * steps, 1)
        z[:, dims[0]] = torch.as_tensor(cols.reshape(-1), dtype=torch.float32)
        z[:, dims[1]] = torch.as_tensor(rows.reshape(-1), dtype=torch.float32)
    return z, axes


def _bounds_text(manifold_range, quantile: float) -> str:
    if manifold_range is not None:
        lo, hi = (-abs(manifold_range[0]), abs(manifold_range[0])) if len(manifold_range) == 1 else manifold_range
        return f"z in [{lo:g}, {hi:g}]"
    return f"prior quantiles {100 * quantile:g}%-{100 * (1 - quantile):g}%"


def _value_ticks(values: np.ndarray, centres: list[float]) -> list[tuple[float, str]]:
    """Round z values within ``values`` (evenly spaced, increasing or decreasing) at their
    positions between the tile centres ``centres`` (the map from z to position is linear)."""
    from matplotlib.ticker import MaxNLocator

    lo, hi = sorted((float(values[0]), float(values[-1])))
    ticks = [v for v in MaxNLocator(nbins=6).tick_values(lo, hi) if lo - 1e-9 <= v <= hi + 1e-9]
    span = float(values[-1] - values[0])
    return [(centres[0] + (v - values[0]) / span * (centres[-1] - centres[0]), f"{v:g}") for v in ticks]


@torch.no_grad()
def plot_latent_manifold(model: VAE, steps: int = 20, manifold_range: Sequence[float] | None = None,
                         quantile: float = 0.025, dims: Sequence[int] | None = None,
                         dims_note: str = "") -> Figure:
    """Decoder means E[x|z] over an evenly spaced grid of the latent space (images).

    1-D latents give a strip of ``steps`` images, 2-D latents a ``steps x steps`` square
    (z_1 grows rightwards, z_2 upwards; Kingma & Welling 2014, Fig. 4); for D > 2 the grid
    spans ``dims`` (default 0 and 1) with every other dimension at the prior mean (``dims_note``
    says in the title why these two). Bounds: see :func:`prior_bounds`. Axis ticks give z values.
    """
    d = model.latent_dim
    dims = list(dims) if dims is not None else list(range(min(d, 2)))
    if len(dims) not in (1, 2) or max(dims) >= d or len(set(dims)) != len(dims):
        raise ValueError(f"manifold dims {dims} must be one or two different dimensions below {d}")
    lo, hi = prior_bounds(model, manifold_range, quantile)
    z, axes = manifold_latents(model, steps, dims, lo, hi)
    images = decode_means(model, z)
    _, _, h, w = images.shape
    names = [f"z_{i + 1}" for i in dims]  # 1-based, as in the papers
    rest = "" if d == len(dims) else f"; z_{dims[0] + 1} and z_{dims[1] + 1}{dims_note}, the other {d - 2} at the prior mean"
    grid = image_grid(images, steps, pad=0)
    title = f"latent manifold: decoder means E[x|z] over a grid of {_bounds_text(manifold_range, quantile)}{rest}"
    xticks = _value_ticks(axes[0], tile_centres(steps, w, 0))
    if len(dims) == 1:
        return grid_figure(grid, title, xticks=xticks, xlabel=names[0])
    yticks = _value_ticks(axes[1][::-1], tile_centres(steps, h, 0))
    return grid_figure(grid, title, xticks=xticks, yticks=yticks, xlabel=names[0], ylabel=names[1])


@torch.no_grad()
def plot_points_manifold(model: VAE, data: np.ndarray, steps: int = 20,
                         manifold_range: Sequence[float] | None = None, quantile: float = 0.025,
                         dims: Sequence[int] | None = None) -> Figure:
    """For point data ``(N, 2)``: the latent grid decoded into data space (decoder means),
    drawn over the data in gray. A 1-D latent gives a curve coloured by z; a 2-D grid gives a
    mesh whose lines hold z_1 (red to yellow) or z_2 (blue to green) fixed."""
    d = model.latent_dim
    dims = list(dims) if dims is not None else list(range(min(d, 2)))
    lo, hi = prior_bounds(model, manifold_range, quantile)
    z, axes = manifold_latents(model, steps, dims, lo, hi)
    points = decode_means(model, z).reshape(z.shape[0], -1).numpy()[:, :2]
    with styled():
        fig = Figure(figsize=(7.2, 6.2), layout="constrained")
        ax = fig.subplots()
        ax.scatter(data[:, 0], data[:, 1], s=3, color="0.75", label="data", zorder=1)
        if len(dims) == 1:
            ax.plot(points[:, 0], points[:, 1], color="0.3", linewidth=1, zorder=2)
            sc = ax.scatter(points[:, 0], points[:, 1], c=axes[0], cmap="viridis", s=25, zorder=3,
                            label=f"decoded grid of z_{dims[0] + 1}")
            fig.colorbar(sc, ax=ax, label=f"z_{dims[0] + 1}")
        else:
            mesh = points.reshape(steps, steps, 2)  # [row = z_b from high to low, col = z_a]
            import matplotlib

            warm, cool = matplotlib.colormaps["autumn"], matplotlib.colormaps["winter"]
            for j in range(steps):
                ax.plot(mesh[:, j, 0], mesh[:, j, 1], color=warm(j / (steps - 1)), linewidth=1,
                        label=f"z_{dims[0] + 1} fixed (red low, yellow high)" if j == 0 else None)
            for i in range(steps):
                ax.plot(mesh[i, :, 0], mesh[i, :, 1], color=cool(1 - i / (steps - 1)), linewidth=1,
                        label=f"z_{dims[1] + 1} fixed (blue low, green high)" if i == 0 else None)
        ax.set_xlabel("x_1")
        ax.set_ylabel("x_2")
        ax.set_aspect("equal", adjustable="datalim")
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=9,
                   markerscale=2, frameon=False)
        ax.set_title(f"latent grid decoded into data space ({_bounds_text(manifold_range, quantile)})")
    return fig


# --- latent scatter -------------------------------------------------------------------------


def plot_latent_scatter(means: np.ndarray, labels: torch.Tensor | np.ndarray,
                        class_names: Sequence[str] | None = None, seed: int = 0,
                        title: str | None = None) -> Figure:
    """Posterior means ``means: (N, D)`` coloured by ``labels: (N,)``.

    D = 1: a strip per class (z on the x axis, the class plus uniform jitter on the y axis);
    D = 2: a scatter plot; D = 3: a 3-D scatter plot; D > 3: the projection on the first two
    principal components (scikit-learn's PCA), with the share of variance each explains.
    """
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    n, d = means.shape
    groups = _label_groups(labels, class_names)
    title = title or f"posterior means E_q[z|x] of {n} test examples"
    with styled():
        if d == 3:
            fig = Figure(figsize=(8.6, 7.2), layout="constrained")
            ax = fig.add_subplot(projection="3d")
            for name, mask, colour in groups:
                ax.scatter(means[mask, 0], means[mask, 1], means[mask, 2], s=3, alpha=0.6, color=colour,
                           label=name, depthshade=False)
            ax.set_xlabel("z_1")
            ax.set_ylabel("z_2")
            ax.set_zlabel("z_3")
            ax.set_title(title)
            _legend(ax)
            return fig
        fig = Figure(figsize=(8.6, 6.4 if d > 1 else 5.0), layout="constrained")
        ax = fig.subplots()
        if d == 1:
            rng = np.random.default_rng(seed)
            for row, (name, mask, colour) in enumerate(groups):
                jitter = rng.uniform(-0.35, 0.35, int(mask.sum()))
                ax.scatter(means[mask, 0], row + jitter, s=3, alpha=0.6, color=colour, label=name)
            ax.set_yticks(range(len(groups)), [name for name, _, _ in groups])
            ax.set_xlabel("z_1")
            ax.set_ylabel("label (points jittered vertically)")
        elif d == 2:
            for name, mask, colour in groups:
                ax.scatter(means[mask, 0], means[mask, 1], s=3, alpha=0.6, color=colour, label=name)
            ax.set_xlabel("z_1")
            ax.set_ylabel("z_2")
            ax.set_aspect("equal", adjustable="datalim")
        else:
            from sklearn.decomposition import PCA

            pca = PCA(n_components=2)
            projected = pca.fit_transform(means)
            share = pca.explained_variance_ratio_
            for name, mask, colour in groups:
                ax.scatter(projected[mask, 0], projected[mask, 1], s=3, alpha=0.6, color=colour, label=name)
            ax.set_xlabel(f"principal component 1 ({100 * share[0]:.1f}% of variance)")
            ax.set_ylabel(f"principal component 2 ({100 * share[1]:.1f}% of variance)")
            ax.set_aspect("equal", adjustable="datalim")
            title += f", projected from {d} dimensions by PCA"
        ax.set_title(title)
        _legend(ax, "label")
    return fig


# --- singular values --------------------------------------------------------------------------


@dataclass
class LatentSpectrum:
    """Singular values of the centred matrix of latent means and the variance they explain.

    ``singular_values: (D,)`` in decreasing order; ``explained: (D,)`` the share of total
    variance of each principal direction (s_i^2 / sum_j s_j^2); ``cumulative: (D,)`` its
    running sum; ``dims_needed[t]`` the fewest directions explaining at least ``t`` of it.
    """

    singular_values: np.ndarray
    explained: np.ndarray
    cumulative: np.ndarray
    dims_needed: dict[float, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain JSON-serialisable values (``dims_needed`` keyed by the percentage as a string)."""
        return {
            "singular_values": self.singular_values.tolist(),
            "explained_variance_ratio": self.explained.tolist(),
            "cumulative_explained_variance": self.cumulative.tolist(),
            "dims_needed": {f"{100 * t:g}%": k for t, k in self.dims_needed.items()},
            "note": "singular values of the test posterior means (N x D), columns centred",
        }


def latent_spectrum(means: np.ndarray, thresholds: Sequence[float] = EXPLAINED_THRESHOLDS) -> LatentSpectrum:
    """SVD of ``means: (N, D)`` after centring each column (so s_i^2 / (N-1) are the PCA
    variances), in float64. ``dims_needed[t]`` = min k with cumulative share >= t."""
    centred = np.asarray(means, dtype=np.float64)
    centred = centred - centred.mean(axis=0, keepdims=True)
    s = np.linalg.svd(centred, compute_uv=False)
    power = s ** 2
    total = power.sum()
    explained = power / total if total > 0 else np.zeros_like(power)
    cumulative = np.cumsum(explained)
    needed = {}
    for t in thresholds:
        reached = np.flatnonzero(cumulative >= t - 1e-12)
        needed[t] = int(reached[0]) + 1 if reached.size else len(s)
    return LatentSpectrum(s, explained, cumulative, needed)


def plot_singular_values(spectrum: LatentSpectrum, title: str | None = None) -> Figure:
    """Left: singular values of the centred test latent means by rank (log scale). Right: the
    cumulative share of variance with the dimensions needed for 95%, 98.5% and 99% marked."""
    s = spectrum.singular_values
    ranks = np.arange(1, len(s) + 1)
    needed = spectrum.dims_needed
    summary = ", ".join(f"{k} for {100 * t:g}%" for t, k in needed.items())
    with styled():
        fig = Figure(figsize=(13, 4.6), layout="constrained")
        left, right = fig.subplots(1, 2)
        log = s[0] > 0 and (s[-1] <= 0 or s[0] / s[-1] > 50)  # collapsed dimensions: show them on a log scale
        left.bar(ranks, np.maximum(s, s[0] * 1e-6) if log else s, color="tab:blue", label="singular value")
        if log:
            left.set_yscale("log")
        left.set_xlabel("rank i")
        left.set_ylabel("singular value s_i (latent units)")
        left.set_title("singular values of the centred N x D matrix of test latent means")
        left.legend()
        right.plot(ranks, 100 * spectrum.cumulative, marker="o", markersize=4, color="tab:blue",
                   label="cumulative share")
        colours = ["tab:green", "tab:orange", "tab:red"]
        for (t, k), colour in zip(needed.items(), colours):
            right.axhline(100 * t, color=colour, linestyle=":", linewidth=1)
            right.axvline(k, color=colour, linestyle="--", linewidth=1,
                          label=f"{100 * t:g}% with {k} of {len(s)} dimensions")
        right.set_xlabel("number of principal directions k")
        right.set_ylabel("cumulative explained variance (%)")
        right.set_ylim(min(100 * spectrum.cumulative[0], 90) - 2, 100.5)
        right.set_title("variance explained by the first k directions")
        right.legend(loc="lower right")
        for ax in (left, right):
            ax.set_xticks(ranks if len(s) <= 25 else ranks[::max(1, len(s) // 20)])
        fig.suptitle(title or f"latent spectrum: dimensions needed: {summary}")
    return fig


# --- interpolations -----------------------------------------------------------------------------


def lerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Linear interpolation: ``z0, z1: (D,)``, ``t: (T,)`` -> ``(T, D)``."""
    return z0[None] + t[:, None] * (z1 - z0)[None]


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical linear interpolation (Shoemake 1985; for latent spaces White 2016, "Sampling
    Generative Networks"): ``sin((1-t)W)/sin W z0 + sin(tW)/sin W z1`` with W the angle between
    ``z0`` and ``z1``; falls back to :func:`lerp` when they are (anti-)parallel within 1e-6.
    ``z0, z1: (D,)``, ``t: (T,)`` -> ``(T, D)``."""
    z0d, z1d = z0.double(), z1.double()
    cos = torch.dot(z0d, z1d) / (z0d.norm() * z1d.norm()).clamp_min(1e-300)
    omega = torch.arccos(cos.clamp(-1, 1))
    if omega.abs() < 1e-6 or (math.pi - omega).abs() < 1e-6:
        return lerp(z0, z1, t)
    t = t.double()[:, None]
    out = (torch.sin((1 - t) * omega) * z0d[None] + torch.sin(t * omega) * z1d[None]) / torch.sin(omega)
    return out.to(z0.dtype)


@torch.no_grad()
def plot_interpolations(model: VAE, images_a: torch.Tensor, images_b: torch.Tensor, steps: int = 10,
                        method: str = "linear", row_names: Sequence[str] | None = None) -> Figure:
    """One row per pair: image a, decoder means along the path between the posterior means of
    a and b at ``steps`` evenly spaced t in [0, 1] (t = 0 and 1 are the two reconstructions),
    image b. ``images_a, images_b: (P, C, H, W)``; ``method``: 'linear' or 'spherical'."""
    if method not in ("linear", "spherical"):
        raise ValueError(f"interpolation method must be linear or spherical, got {method!r}")
    path = lerp if method == "linear" else slerp
    za = torch.as_tensor(encode_means(model, images_a), dtype=torch.float32)
    zb = torch.as_tensor(encode_means(model, images_b), dtype=torch.float32)
    t = torch.linspace(0, 1, steps)
    tiles = []
    for i in range(za.shape[0]):
        decoded = decode_means(model, path(za[i], zb[i], t))
        tiles += [images_a[i:i + 1].float().cpu(), decoded, images_b[i:i + 1].float().cpu()]
    n_cols = steps + 2
    _, _, h, w = images_a.shape
    grid = image_grid(torch.cat(tiles), n_cols)
    labels = ["a"] + [f"{v:.2g}" for v in t.tolist()] + ["b"]
    xticks = list(zip(tile_centres(n_cols, w, 1), labels))
    yticks = list(zip(tile_centres(za.shape[0], h, 1), row_names)) if row_names else []
    return grid_figure(grid, f"{method} interpolation between posterior means of test images a and b: "
                       f"decoder means at {steps} points of the path", xticks=xticks, yticks=yticks,
                       xlabel="position t along the path from E_q[z|a] (t=0) to E_q[z|b] (t=1)")


def interpolation_pairs(indices: Sequence[int], n_pairs: int, spread: bool = False) -> tuple[list[int], list[int]]:
    """Pairs (indices[0], indices[1]), (indices[2], indices[3]), ... (at most ``n_pairs``); with
    ``spread``, pairs (indices[i], indices[i + n_pairs]) instead, so that evenly spaced
    indices of unlabelled data pair examples far apart."""
    n_pairs = min(n_pairs, len(indices) // 2)
    if spread:
        return list(indices[:n_pairs]), list(indices[n_pairs:2 * n_pairs])
    return list(indices[0:2 * n_pairs:2]), list(indices[1:2 * n_pairs:2])


# --- point data (toy 2-D) -------------------------------------------------------------------------


def points_of(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """Point data stored as ``(N, 1, 1, d)`` (or any ``(N, ...)``) -> ``(N, d)`` float64."""
    return to_numpy_images(images).reshape(len(images), -1).astype(np.float64)


def _same_limits(*axes) -> None:
    lows = [min(ax.get_xlim()[0], ax.get_ylim()[0]) for ax in axes]
    highs = [max(ax.get_xlim()[1], ax.get_ylim()[1]) for ax in axes]
    lo, hi = min(lows), max(highs)
    for ax in axes:
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        ax.set_aspect("equal")


@torch.no_grad()
def plot_toy2d(model: VAE, images: torch.Tensor, labels: torch.Tensor | np.ndarray,
               class_names: Sequence[str] | None = None, seed: int = 0) -> Figure:
    """Three panels for 2-D point data: the input points coloured by label (quadrant), their
    latent codes (posterior means; a jittered strip for a 1-D latent, PCA for D > 2) in the same
    colours, and their reconstructions (decoder means at the posterior means) in the same
    colours, on the same axes as the inputs. ``images: (N, 1, 1, 2)``."""
    x = points_of(images)
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    means = encode_means(model, images)
    recon = points_of(decode_means(model, means))
    groups = _label_groups(labels, class_names)
    d = means.shape[1]
    with styled():
        fig = Figure(figsize=(16, 5.4), layout="constrained")
        ax_in, ax_z, ax_out = fig.subplots(1, 3)
        for name, mask, colour in groups:
            ax_in.scatter(x[mask, 0], x[mask, 1], s=4, color=colour, label=name)
            ax_out.scatter(recon[mask, 0], recon[mask, 1], s=4, color=colour, label=name)
        ax_in.set_title("input points x")
        ax_out.set_title("reconstructions E[x|z = E_q[z|x]]")
        for ax in (ax_in, ax_out):
            ax.set_xlabel("x_1")
            ax.set_ylabel("x_2")
        _same_limits(ax_in, ax_out)
        if d == 1:
            rng = np.random.default_rng(seed)
            for name, mask, colour in groups:
                ax_z.scatter(means[mask, 0], rng.uniform(-1, 1, int(mask.sum())), s=4, color=colour, label=name)
            ax_z.set_xlabel("z_1")
            ax_z.set_ylabel("jitter (no meaning)")
            ax_z.set_yticks([])
        else:
            codes, xlab, ylab = means[:, :2], "z_1", "z_2"
            if d > 2:
                from sklearn.decomposition import PCA

                codes = PCA(n_components=2).fit_transform(means)
                xlab, ylab = "principal component 1", "principal component 2"
            for name, mask, colour in groups:
                ax_z.scatter(codes[mask, 0], codes[mask, 1], s=4, color=colour, label=name)
            ax_z.set_xlabel(xlab)
            ax_z.set_ylabel(ylab)
            ax_z.set_aspect("equal", adjustable="datalim")
        ax_z.set_title(f"latent codes E_q[z|x] ({d}-D)")
        fig.legend(*ax_in.get_legend_handles_labels(), title="label", markerscale=3, loc="outside right upper",
                   frameon=False)
        fig.suptitle(f"toy 2-D data: {len(x)} test points, their codes and reconstructions, coloured by label")
    return fig


@torch.no_grad()
def plot_toy2d_grid(cells: Sequence[tuple[int, int, VAE]], images: torch.Tensor, labels: torch.Tensor | np.ndarray,
                    row_names: Sequence[str], col_names: Sequence[str], class_names: Sequence[str] | None = None,
                    title: str = "", seed: int = 0) -> Figure:
    """A whole grid of toy 2-D runs in one figure (Idler 2022, Figs. 2-3): for each cell
    ``(row, col, model)`` two panels, the latent codes E_q[z|x] of the test points (a strip with
    uniform jitter on the y axis for a 1-D latent) and their reconstructions E[x|z = E_q[z|x]],
    coloured by label (quadrant). Latent panels share one set of axis limits, reconstruction
    panels another (the data's square, widened to hold every reconstruction), so cells compare
    at a glance. ``images: (N, 1, 1, 2)``; ``row_names``/``col_names`` label the grid.
    """
    labels = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).reshape(-1)
    groups = _label_groups(labels, class_names)
    x = points_of(images)
    n_rows, n_cols = len(row_names), len(col_names)
    codes, recons = {}, {}
    rng = np.random.default_rng(seed)
    jitter = rng.uniform(-1, 1, len(x))
    for r, c, model in cells:
        means = encode_means(model, images)
        if means.shape[1] > 2:
            from sklearn.decomposition import PCA

            means = PCA(n_components=2).fit_transform(means)
        codes[r, c] = means if means.shape[1] == 2 else np.stack([means[:, 0], jitter], axis=1)
        recons[r, c] = points_of(decode_means(model, encode_means(model, images)))
    one_d = all(np.array_equal(v[:, 1], jitter) for v in codes.values())

    def limits(arrays, lo=None, hi=None):
        stacked = np.concatenate(list(arrays))
        a, b = float(np.nanmin(stacked)), float(np.nanmax(stacked))
        a, b = (min(a, lo), max(b, hi)) if lo is not None else (a, b)
        pad = 0.04 * (b - a or 1.0)
        return a - pad, b + pad

    z_lim = limits([v[:, 0] for v in codes.values()] + ([] if one_d else [v[:, 1] for v in codes.values()]))
    x_lim = limits([v.reshape(-1) for v in recons.values()] + [x.reshape(-1)], 0.0, 1.0)
    with styled():
        fig = Figure(figsize=(2.3 * 2 * n_cols + 1.2, 2.4 * n_rows + 1.0), layout="constrained")
        axes = fig.subplots(n_rows, 2 * n_cols, squeeze=False)
        for ax in axes.flat:
            ax.set_visible(False)
        for r, c, _ in cells:
            ax_z, ax_x = axes[r, 2 * c], axes[r, 2 * c + 1]
            for ax in (ax_z, ax_x):
                ax.set_visible(True)
                ax.tick_params(labelsize=7)
            for name, mask, colour in groups:
                ax_z.scatter(codes[r, c][mask, 0], codes[r, c][mask, 1], s=1, color=colour, label=name, rasterized=True)
                ax_x.scatter(recons[r, c][mask, 0], recons[r, c][mask, 1], s=1, color=colour, rasterized=True)
            ax_z.set_xlim(*z_lim)
            if one_d:
                ax_z.set_ylim(-1.1, 1.1)
                ax_z.set_yticks([])
            else:
                ax_z.set_ylim(*z_lim)
                ax_z.set_aspect("equal")
            ax_x.set_xlim(*x_lim)
            ax_x.set_ylim(*x_lim)
            ax_x.set_aspect("equal")
            ax_z.set_title(f"{row_names[r]}, {col_names[c]}\nlatent E_q[z|x]", fontsize=8)
            ax_x.set_title("reconstruction", fontsize=8)
        handles, names = next(axes[r, 2 * c] for r, c, _ in cells).get_legend_handles_labels()
        fig.legend(handles, names, title="quadrant", markerscale=6, loc="outside right upper", frameon=False)
        import textwrap

        title = title or ("toy 2-D test points: latent codes (1-D: jittered strip) and reconstructions, "
                          "coloured by quadrant; shared axes within the figure")
        fig.suptitle("\n".join(textwrap.wrap(title, width=int(11 * (2.3 * 2 * n_cols + 1.2) - 20))))
    return fig


@torch.no_grad()
def plot_points_samples(model: VAE, data: np.ndarray, n: int = 2000, seed: int = 0) -> Figure:
    """For point data: decoder means of ``n`` latents z ~ p(z), over the data in gray."""
    decoded = points_of(decode_means(model, prior_samples(model, n, seed)))
    with styled():
        fig = Figure(figsize=(7.2, 6.2), layout="constrained")
        ax = fig.subplots()
        ax.scatter(data[:, 0], data[:, 1], s=3, color="0.75", label="test data")
        ax.scatter(decoded[:, 0], decoded[:, 1], s=3, color="tab:red", alpha=0.6, label="E[x|z], z ~ p(z)")
        ax.set_xlabel("x_1")
        ax.set_ylabel("x_2")
        ax.set_aspect("equal", adjustable="datalim")
        ax.legend(markerscale=3)
        ax.set_title(f"samples: decoder means of {n} draws z ~ p(z)")
    return fig


__all__ = [
    "EXPLAINED_THRESHOLDS", "LatentSpectrum", "class_colours", "interpolation_pairs", "latent_spectrum",
    "lerp", "manifold_latents", "most_active_dims", "plot_interpolations", "plot_latent_manifold",
    "plot_latent_scatter", "plot_points_manifold", "plot_points_samples", "plot_singular_values",
    "plot_toy2d", "plot_toy2d_grid", "points_of", "prior_bounds", "slerp", "UNITS",
]
