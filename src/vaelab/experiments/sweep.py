"""Sweeps: a base config, a grid and/or a list of variants, and seeds, trained in parallel
worker processes, resumable, summarised as mean ± std over seeds.

A sweep file (YAML)::

    name: latent-size                 # the sweep directory's name
    base: {data: {dataset: mnist}, training: {epochs: 10}}   # a config (or `base: path.yaml`)
    grid: {model.latent_dim: [1, 2, 3]}                     # cartesian product over these keys
    variants:                         # and/or explicit variants (each a dict of dotted keys)
      - {name: cnn, model.network: conv3}
    seeds: [1, 2, 3]                  # or per budget: {quick: [1, 2, 3], full: [1, 2, 3, 4, 5]}
    seed_keys: [data.subset_seed]     # config keys that also get the run's seed (here: the
                                      # training subset varies with the seed, not only the init)
    budgets:                          # overrides per --budget (quick is the default)
      quick: {training.epochs: 3, data.train_examples: 10000}
      full: {}

Each run trains in ``<output_dir>/<name>/runs/<differing values>-seed<k>/``. A run whose
``summary.json`` exists is finished and skipped on re-launch; one with a checkpoint but no
summary is resumed. A failing run writes ``error.txt`` and the sweep goes on.

Runs train in worker processes of this machine (the default), or as Ray core tasks on a Ray
cluster (``run_sweep(..., backend="ray")``, ``vaelab sweep --backend ray``); the two differ only
in how a run is submitted, waited for and cancelled (:class:`_ProcessPool`, :class:`_RayTasks`).

The summary (:func:`summarize_sweep`, ``vaelab sweep-summary DIR``) writes ``results.csv`` and
``results.md`` (mean ± std over seeds of the final metrics) and ``figures/compare_<key>.png``,
the ``vaelab compare`` curves of each swept key (:func:`sweep_figures`, drawn by
:mod:`vaelab.plots.sweep`).

The file format and run names are :mod:`~vaelab.experiments.sweep_spec`'s, running a sweep is
:mod:`~vaelab.experiments.sweep_runner`'s; this module keeps the tables and re-exports both.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from ..errors import VaelabError
from ..io import atomic_write_text
from ..rundir import SweepDir
from .sweep_runner import run_sweep
from .sweep_spec import RunSpec, Sweep, _settings, load_sweep, run_name, setting_of

__all__ = ["METRICS", "RunSpec", "Sweep", "load_sweep", "run_name", "run_sweep", "setting_of",
           "summarize_sweep", "sweep_figures"]

METRICS = ("neg_elbo", "recon", "kl")


def summarize_sweep(directory: str | Path, figures: bool = True) -> dict[str, Any]:
    """Mean ± std over seeds of each setting's final metrics, and the comparison figures of the
    swept keys (:func:`sweep_figures`); writes ``results.csv``, ``results.md`` (which links the
    figures) and ``figures/compare_<key>.png`` in the sweep directory, each atomically.

    Args:
        directory: the sweep directory (holding ``sweep.yaml`` and ``runs/``).
        figures: also draw the figures (False: the tables only).

    Returns:
        ``directory``, ``table`` (one entry per setting), ``unfinished`` (runs without
        ``summary.json``), ``figures`` (the PNG paths) and ``not_plotted`` (run name -> why it
        is missing from the figures).

    Raises:
        VaelabError: ``directory`` is not a sweep directory.
    """
    directory = Path(directory)
    files = SweepDir(directory)
    meta = files.read_meta()
    groups: dict[str, dict[str, Any]] = {}
    failed = []
    for name in meta.get("resolved_runs", []):
        group = groups.setdefault(setting_of(name), {"runs": [], "values": {}})
        summary = files.run(name).completed_summary()
        if summary is None:  # not finished, or a damaged summary (a relaunch resumes it)
            failed.append(name)
            continue
        row = {f"{split}_{m}": summary[key][m] for split, key in (("test", "final"), ("train", "final_train"))
               for m in METRICS if key in summary}
        if "seconds_per_epoch" in summary:
            row["seconds_per_epoch"] = summary["seconds_per_epoch"]
        group["runs"].append(row)
    columns = [f"{s}_{m}" for s in ("test", "train") for m in METRICS] + ["seconds_per_epoch"]
    table = []
    for setting, group in groups.items():
        entry: dict[str, Any] = {"setting": setting, "seeds": len(group["runs"])}
        for column in columns:
            values = [r[column] for r in group["runs"] if column in r]
            entry[f"{column}_mean"] = statistics.fmean(values) if values else math.nan
            entry[f"{column}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0 if values else math.nan
        table.append(entry)
    csv_lines = [",".join(["setting", "seeds"] + [f"{c}_{s}" for c in columns for s in ("mean", "std")])]
    for entry in table:
        csv_lines.append(",".join([entry["setting"], str(entry["seeds"])] +
                                  [f"{entry[f'{c}_{s}']:.6g}" for c in columns for s in ("mean", "std")]))
    atomic_write_text(files.results_csv, "\n".join(csv_lines) + "\n")
    shown = ["test_neg_elbo", "test_recon", "test_kl", "train_kl", "seconds_per_epoch"]
    budget_name = meta.get("budget", "?")
    if not (meta.get("budgets") or {}).get(budget_name):  # a budget the sweep does not define changes nothing
        budget_name = "no budget overrides"
    else:
        budget_name = f"{budget_name} budget"
    md = [f"# Sweep {meta.get('name', directory.name)} ({budget_name})", "",
          "Final-epoch metrics, mean ± std over seeds, nats per example (seconds: training time per epoch).", "",
          "| setting | seeds | " + " | ".join(shown) + " |", "| --- | ---: | " + " | ".join("---:" for _ in shown) + " |"]
    for entry in table:
        cells = [f"{entry[f'{c}_mean']:.2f} ± {entry[f'{c}_std']:.2f}" for c in shown]
        md.append(f"| {entry['setting']} | {entry['seeds']} | " + " | ".join(cells) + " |")
    if failed:
        md += ["", f"Not finished ({len(failed)}): " + ", ".join(failed) + " (see each run's error.txt)."]
    paths, not_plotted = sweep_figures(directory, meta) if figures else ([], {})
    if paths:
        md += ["", "## Figures", "",
               "Per-epoch curves on the evaluation split (nats per example) of every finished run, one figure "
               "per swept key: one colour per value of the key, shared by the seeds of a setting.", ""]
        md += [f"![{path.stem}](figures/{path.name})" for path in paths]
    unplotted = {name: why for name, why in not_plotted.items() if name not in failed}
    if unplotted:
        md += ["", f"Not in the figures ({len(unplotted)}): " + "; ".join(f"{n} ({why})" for n, why in unplotted.items())]
    atomic_write_text(files.results_md, "\n".join(md) + "\n")
    return {"directory": str(directory), "table": table, "unfinished": failed, "figures": paths,
            "not_plotted": not_plotted}


FIGURE_METRICS = ("neg_elbo", "recon", "kl", "train_kl")
"""The panels of a sweep figure: the evaluation split's negative ELBO, reconstruction NLL and KL,
and the training KL (claims about the KL during training use it)."""


def sweep_figures(directory: str | Path, meta: dict[str, Any] | None = None,
                  metrics: tuple[str, ...] = FIGURE_METRICS) -> tuple[list[Path], dict[str, str]]:
    """Draw the ``vaelab compare`` figure of a sweep's finished runs once per swept key.

    A swept key is a grid key that takes two or more values among the finished runs, or
    ``variant`` when two or more of the sweep's variants finished. Each gets
    ``figures/compare_<key>.png``: one panel per metric (evaluation-split negative ELBO,
    reconstruction NLL and KL, training KL per epoch, nats per example), one colour per value of
    the key shared by the seeds of a setting (ordered by value when the values are numbers or
    lists of numbers), and with several swept keys one row of panels per value of the other keys.
    Runs of different likelihoods never share an axis: each likelihood gets its own row, since
    their NLLs are densities of different families and not comparable. A sweep with a single setting gets ``compare_seed.png`` (its seeds).
    Older ``compare_*.png`` files that this call does not write are removed.

    Returns:
        the written paths, and run name -> reason for each run left out (no ``summary.json``,
        unreadable, or without the metrics).

    Raises:
        VaelabError: ``directory`` is not a sweep directory.
    """
    from ..plots.compare import metric_values
    from ..plots.run import read_run

    files = SweepDir(directory)
    if meta is None:
        meta = files.read_meta()
    records, skipped = [], {}
    for name in meta.get("resolved_runs", []):
        if not files.run(name).finished():
            skipped[name] = "not finished"
            continue
        try:
            record = read_run(files.run(name).path)
        except VaelabError as exc:
            skipped[name] = str(exc).splitlines()[0]
            continue
        missing = [m for m in metrics if not (metric_values(record, m) or ([], []))[1]]
        if missing:
            skipped[name] = f"no {', '.join(missing)} in metrics.csv"
            continue
        records.append(record)
    figures_dir = files.figures
    paths = [] if not records else _draw_sweep_figures(records, meta, figures_dir, metrics)
    for stale in set(figures_dir.glob("compare_*.png")) - set(paths):  # from an earlier summary
        stale.unlink(missing_ok=True)
    return paths, skipped


def _draw_sweep_figures(records: list, meta: dict[str, Any], figures_dir: Path, metrics: tuple[str, ...]) -> list[Path]:
    """The factors of the sweep (its swept keys, named as :func:`load_sweep` names the
    settings), drawn by :func:`vaelab.plots.sweep.draw_sweep_figures`."""
    from ..plots.compare import run_labels
    from ..plots.sweep import draw_sweep_figures

    # the settings of the sweep's grid and variants, named as load_sweep names them
    grid = meta.get("grid") or {}
    variants = meta.get("variants") or [{}]
    variant_of = {}  # setting name -> its variant's label
    for variant in variants:
        label = str(variant["name"]) if "name" in variant else setting_of(run_name(variant, 0))
        for values in _settings(grid, [variant]):
            variant_of[setting_of(run_name(values, 0))] = label
    settings = [setting_of(r.name) for r in records]
    factors: dict[str, tuple[list[str], list[str]]] = {}  # name -> (label per run, config keys)
    if all(s in variant_of for s in settings):
        if len({variant_of[s] for s in settings}) > 1:
            factors["variant"] = ([variant_of[s] for s in settings], [])
        leaves = [key.rsplit(".", 1)[-1] for key in grid]
        for key, leaf in zip(grid, leaves):
            labels, keys = run_labels(records, [key], distinct=False)
            if len(set(labels)) > 1:
                factors[leaf if leaves.count(leaf) == 1 and leaf != "variant" else key] = (labels, keys)
    elif len(set(settings)) > 1:  # runs not made by this sweep file's grid/variants: label by setting name
        factors["setting"] = (settings, [])
    if not factors:
        factors["seed"] = run_labels(records, ["seed"], distinct=False)

    return draw_sweep_figures(records, factors, meta.get("name", figures_dir.parent.name), figures_dir, metrics)
