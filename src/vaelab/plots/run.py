"""Reading a run directory and drawing its figures: the one entry point :func:`plot_run`,
used by ``vaelab plot RUN_DIR`` and at the end of training.

Plotting reads only the run directory (``config.yaml``, ``metrics.csv``, optionally
``summary.json``, a checkpoint) and the dataset named in its config; it never trains. Files
that are missing or damaged give a :class:`~vaelab.errors.CheckpointError` naming the file and
what to do, never a traceback.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Callable

from ..config import manifold_dims_problem
from ..errors import CheckpointError, ConfigError, option
from ..rundir import RunRecord, read_run  # noqa: F401  (read_run: re-exported for vaelab.plots)

KINDS = ("loss_curves", "reconstructions", "samples", "latent_manifold", "latent_scatter",
         "singular_values", "interpolations", "toy2d", "class_samples")
"""Every figure kind; each is written as ``<kind>.png`` (plus ``latent_spectrum.json`` for
``singular_values``)."""

N_RECONSTRUCTIONS = 20
"""reconstructions.png shows 20 test images chosen by :func:`vaelab.plots.figures.fixed_indices`
(two per class on MNIST), the same in every run on the same data."""

N_INTERPOLATIONS = 8
"""interpolations.png has 8 rows (pairs of consecutive fixed test examples: 0-1, 2-3, ...)."""


# --- drawing -------------------------------------------------------------------------------


class _Context:
    """Lazily loaded model, data and latent means of one run, shared by the figure kinds."""

    def __init__(self, record: RunRecord, which: str, model=None, dataset=None, data_dir=None, networks=(None, None)):
        self.record, self.which, self.data_dir, self.networks = record, which, data_dir, networks
        self._model, self._dataset, self._means = model, dataset, None
        self.figures = record.config.figures

    @property
    def model(self):
        if self._model is None:
            path = self.record.checkpoint(self.which)
            if not path.is_file():
                others = sorted(p.name for p in path.parent.glob("*.safetensors")) if path.parent.is_dir() else []
                hint = (f" (it has {', '.join(others)}: pass {option('checkpoint', others[0].split('.')[0])})"
                        if others else " (the run has not finished an epoch yet, or the checkpoints were not copied)")
                raise CheckpointError(
                    f"{self.record.run_dir} has no checkpoints/{self.which}.safetensors{hint}; every figure "
                    "but loss_curves needs it"
                )
            from ..training import load_model

            encoder, decoder = self.networks
            self._model = load_model(self.record.run_dir, self.which, encoder=encoder, decoder=decoder)
        return self._model

    @property
    def dataset(self):
        if self._dataset is None:
            from ..data import load_dataset

            self._dataset = load_dataset(self.record.config.data, data_dir=self.data_dir)
        return self._dataset

    @property
    def points(self) -> bool:
        """True for point data (the dataset's spec has ``kind == "points"``); known without
        loading the data."""
        if self._dataset is not None:
            return self._dataset.spec.kind == "points"
        from ..data import get_spec, is_user_dataset

        if is_user_dataset(self.record.config.data.dataset):
            return False  # your own data are images
        return get_spec(self.record.config.data.dataset).kind == "points"

    @property
    def latent_dim(self) -> int:
        return self._model.latent_dim if self._model is not None else self.record.config.model.latent_dim

    @property
    def test(self):
        """The split the figures show (``figures.split``: the test split unless it says train)."""
        return self.dataset.train if self.figures.split == "train" else self.dataset.test

    @property
    def means(self):
        """Posterior means of the test split, ``(N, D)`` float64."""
        if self._means is None:
            from .figures import encode_means

            labels = self.test.labels if self.record.config.model.conditional else None
            self._means = encode_means(self.model, self.test.images, labels=labels)
        return self._means

    @property
    def unlabelled(self) -> bool:
        return len(set(self.test.labels.tolist())) <= 1

    @property
    def class_names(self):
        return self.dataset.spec.classes

    def fixed(self, n: int) -> list[int]:
        from .figures import fixed_indices

        return fixed_indices(self.test.labels, n)

    def manifold_dims(self) -> list[int]:
        d = self.model.latent_dim
        if self.figures.manifold_dims is not None:
            problem = manifold_dims_problem(self.figures.manifold_dims, d)  # the checkpoint's model
            if problem:
                raise ConfigError(problem)
            return [d - 1 for d in self.figures.manifold_dims]  # counted from 1 in the config, as in the figures
        if d <= 2:
            return list(range(d))
        from .latents import most_active_dims

        return most_active_dims(self.means)


def _loss_curves(ctx: _Context, out: Path) -> list[Path]:
    from .figures import plot_loss_curves, save_figure

    if not ctx.record.history:
        raise CheckpointError(
            f"{ctx.record.run_dir}/metrics.csv is missing or has no rows: the run has not finished an "
            "epoch yet, or the file was not copied; loss_curves needs it"
        )
    fig = plot_loss_curves(ctx.record.history, ctx.record.eval_name, ctx.figures.log_scale,
                           title=f"{ctx.record.name}: loss per epoch ({ctx.record.config.data.dataset}, lower is better"
                                 f"{', log scale' if ctx.figures.log_scale else ''})")
    return [save_figure(fig, out / "loss_curves.png")]


def _reconstructions(ctx: _Context, out: Path) -> list[Path]:
    from .figures import plot_reconstructions, save_figure

    layout = ctx.figures.reconstruction_layout
    n, cols = {"interleaved": (N_RECONSTRUCTIONS, 10), "block": (32, 8), "columns": (8, 10)}[layout]
    idx = ctx.fixed(n)
    fig = plot_reconstructions(ctx.model, ctx.test.images[idx], ctx.test.labels[idx], ctx.class_names,
                               n_cols=cols, layout=layout, seed=ctx.record.config.seed)
    return [save_figure(fig, out / "reconstructions.png")]


def _samples(ctx: _Context, out: Path) -> list[Path]:
    from .figures import plot_samples, save_figure
    from .latents import plot_points_samples, points_of

    if ctx.points:
        fig = plot_points_samples(ctx.model, points_of(ctx.test.images), seed=ctx.record.config.seed)
    else:
        fig = plot_samples(ctx.model, seed=ctx.record.config.seed)
    return [save_figure(fig, out / "samples.png")]


def _latent_manifold(ctx: _Context, out: Path) -> list[Path]:
    from .figures import save_figure
    from .latents import plot_latent_manifold, plot_points_manifold, points_of

    f = ctx.figures
    options = dict(steps=f.manifold_steps, manifold_range=f.manifold_range, quantile=f.manifold_quantile,
                   dims=ctx.manifold_dims())
    if ctx.points:
        fig = plot_points_manifold(ctx.model, points_of(ctx.test.images), **options)
    else:
        note = " (their test posterior means vary most)" if f.manifold_dims is None else " (chosen)"
        fig = plot_latent_manifold(ctx.model, dims_note=note, **options)
    return [save_figure(fig, out / "latent_manifold.png")]


def _latent_scatter(ctx: _Context, out: Path) -> list[Path]:
    from .figures import save_figure
    from .latents import plot_latent_scatter

    fig = plot_latent_scatter(ctx.means, ctx.test.labels, ctx.class_names, seed=ctx.record.config.seed)
    return [save_figure(fig, out / "latent_scatter.png")]


def _singular_values(ctx: _Context, out: Path) -> list[Path]:
    from ..io import atomic_write_text
    from .figures import save_figure
    from .latents import latent_spectrum, plot_singular_values

    spectrum = latent_spectrum(ctx.means)
    values = {"n_examples": int(ctx.means.shape[0]), "latent_dim": int(ctx.means.shape[1]), **spectrum.to_dict()}
    return [save_figure(plot_singular_values(spectrum), out / "singular_values.png"),
            atomic_write_text(out / "latent_spectrum.json", json.dumps(values, indent=2))]


def _interpolations(ctx: _Context, out: Path) -> list[Path]:
    from .figures import save_figure
    from .latents import interpolation_pairs, plot_interpolations

    a, b = interpolation_pairs(ctx.fixed(2 * N_INTERPOLATIONS), N_INTERPOLATIONS, spread=ctx.unlabelled)
    names = ctx.class_names
    labels = ctx.test.labels
    rows = [f"{names[int(labels[i])] if names else int(labels[i])} → {names[int(labels[j])] if names else int(labels[j])}"
            for i, j in zip(a, b)]
    if len(set(int(v) for v in labels[a + b])) <= 1:
        rows = [f"#{i} → #{j}" for i, j in zip(a, b)]
    fig = plot_interpolations(ctx.model, ctx.test.images[a], ctx.test.images[b],
                              method=ctx.figures.interpolation, row_names=rows)
    return [save_figure(fig, out / "interpolations.png")]


def _toy2d(ctx: _Context, out: Path) -> list[Path]:
    from .figures import save_figure
    from .latents import plot_toy2d

    fig = plot_toy2d(ctx.model, ctx.test.images, ctx.test.labels, ctx.class_names, seed=ctx.record.config.seed)
    return [save_figure(fig, out / "toy2d.png")]


def _class_samples(ctx: _Context, out: Path) -> list[Path]:
    from .figures import plot_class_samples, save_figure

    fig = plot_class_samples(ctx.model, ctx.class_names, seed=ctx.record.config.seed)
    return [save_figure(fig, out / "class_samples.png")]


_DRAW: dict[str, Callable[[_Context, Path], list[Path]]] = {
    "loss_curves": _loss_curves, "reconstructions": _reconstructions, "samples": _samples,
    "latent_manifold": _latent_manifold, "latent_scatter": _latent_scatter,
    "singular_values": _singular_values, "interpolations": _interpolations, "toy2d": _toy2d,
    "class_samples": _class_samples,
}


def _not_applicable(kind: str, points: bool, latent_dim: int, conditional: bool = False) -> str | None:
    """Why ``kind`` does not apply to this run (None when it does)."""
    if kind == "class_samples" and not conditional:
        return f"class_samples is drawn for a conditional VAE ({option('model.conditional')})"
    if kind in ("latent_manifold", "interpolations") and conditional:
        return f"{kind} decodes z without a label; a conditional VAE's samples per class are in class_samples"
    if kind in ("reconstructions", "interpolations") and points:
        return f"{kind} are drawn for image data; for point data see the toy2d figure"
    if kind == "toy2d" and not points:
        return "toy2d is drawn for point data (datasets of kind 'points', such as toy2d)"
    if kind == "singular_values" and latent_dim < 2:
        return "singular_values needs a latent space of 2 or more dimensions"
    return None


def normalise_kinds(kinds) -> list[str] | None:
    """Accept ``latent-manifold`` for ``latent_manifold``; reject unknown kinds with a hint."""
    if kinds is None:
        return None
    import difflib

    out = []
    for kind in kinds:
        name = kind.replace("-", "_").strip()
        if name not in KINDS:
            close = difflib.get_close_matches(name, KINDS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(f"unknown figure kind {kind!r}; {hint}kinds: {', '.join(KINDS)}")
        if name not in out:
            out.append(name)
    return out


def plot_run(run_dir: str | Path, kinds=None, *, which: str = "last", output_dir: str | Path | None = None,
             overrides: dict[str, Any] | None = None, data_dir: str | None = None,
             model=None, dataset=None, only_missing: bool = False, verbose: bool = False, encoder=None,
             decoder=None) -> list[Path]:
    """Draw the figures of the run in ``run_dir`` and return the files written.

    Args:
        run_dir: a directory written by ``vaelab train`` (finished or still training).
        kinds: figure kinds (:data:`KINDS`) to draw; default every kind that applies to the
            run (image or point data, latent size). Asking for one that does not apply is an
            error that says why.
        which: the checkpoint to draw the model of: ``last`` (the end of training, the
            default, matching the last point of the loss curves) or ``best``.
        output_dir: where to write the PNGs (default ``run_dir/figures``).
        overrides: ``{"figures.log_scale": True, ...}`` changes to the run's ``figures``
            config section for this drawing only.
        data_dir: where to find the dataset (default: the run config's, then the usual lookup).
        model, dataset: an already loaded model and :class:`vaelab.data.Dataset` (the trainer
            passes its own so nothing is read twice); default: read from the checkpoint and
            the run config.
        only_missing: draw only kinds whose PNG is not in the output directory yet (nothing
            is loaded when none is missing).
        encoder, decoder: a run of your own modules (``model.network: custom``) is loaded into
            modules of the same architecture (:func:`~vaelab.training.load_model`).
        verbose: print each file written.

    Raises:
        CheckpointError: a file needed for the requested kinds is missing or damaged.
        ConfigError: an unknown or inapplicable kind, or an invalid override.
        DataError: the dataset cannot be found.
    """
    record = read_run(run_dir)
    if overrides:
        bad = sorted(k for k in overrides if not k.startswith("figures."))
        if bad:
            raise ConfigError(f"plot options can change only figures.* settings, not {', '.join(bad)}")
        record.config = record.config.replace(overrides)
    requested = normalise_kinds(kinds)
    if which not in ("last", "best"):
        raise ConfigError(f"checkpoint must be 'last' or 'best', got {which!r}")
    if model is None and record.checkpoint(which).is_file():
        # the model and the data come from the checkpoint's config, whatever config.yaml says
        from ..training.checkpoint import read_checkpoint_config

        trained = read_checkpoint_config(record.checkpoint(which))
        record.config = dataclasses.replace(trained, figures=record.config.figures)
    ctx = _Context(record, which, model=model, dataset=dataset, data_dir=data_dir, networks=(encoder, decoder))
    out = Path(output_dir) if output_dir is not None else record.files.figures
    chosen = requested or list(KINDS)
    if only_missing:
        chosen = [kind for kind in chosen if not (out / f"{kind}.png").is_file()]
    if any(kind != "loss_curves" for kind in chosen):
        for kind in list(chosen):
            reason = _not_applicable(kind, ctx.points, ctx.latent_dim, record.config.model.conditional)
            if reason and requested:
                raise ConfigError(f"cannot draw {kind} for {record.run_dir}: {reason}")
            if reason:
                chosen.remove(kind)
    if not requested and not record.history and "loss_curves" in chosen:
        chosen.remove("loss_curves")  # a run that has not finished an epoch yet
    if any(kind != "loss_curves" for kind in chosen):
        ctx.model  # noqa: B018  fail early on a missing checkpoint, before writing anything
    written: list[Path] = []
    for kind in chosen:
        paths = _DRAW[kind](ctx, out)
        written.extend(paths)
        if verbose:
            for path in paths:
                print(f"wrote {path}")
    return written

