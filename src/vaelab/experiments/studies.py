"""Keep a study sweep's results: the small files its claims and figures need, copied out of the
sweep directory (which holds checkpoints and TensorBoard logs, far too large to keep) into a
results folder that is committed beside the study pages.

For a sweep file and a budget, :func:`export_sweep` writes ``<results>/<budget>/<sweep name>/``::

    sweep.yaml                the sweep's resolved runs and budget (as `vaelab sweep` wrote it)
    results.csv               mean ± std over seeds of the final metrics
    figures/compare_*.png     the per-epoch curves of `vaelab sweep-summary` (redrawn first)
    figures/<id>/<setting>.png   per-setting figures (seed 1 of each setting) listed in the sweep
                              file's ``figures:``
    figures/<id>.png          figures over the whole grid (``toy2d_grid``) or over a claim's
                              settings (``reference_bars``)
    runs/<run>/config.yaml, summary.json, metrics.csv, evaluation.json, probes.json

``probes.json`` holds every ``probe:`` metric that a claim of the study asks of the run,
computed once from its last checkpoint, so the verdicts can be recomputed without the
checkpoints. A sweep file's ``figures:`` is a list of::

    - {kind: latent_scatter}                       # a vaelab plot kind, for each setting
    - {kind: reconstructions, id: recon-block, where: {model.latent_dim: 2},
       options: {figures.reconstruction_layout: block}}
    - {kind: toy2d_grid, rows: objective.beta, cols: training.weight_decay}
    - {kind: reference_bars, claim: "2.4"}          # the claim's metric beside its reference

An ``evaluate:`` mapping in the sweep file (``vaelab evaluate`` options) makes the export
evaluate every finished run that has no ``evaluation.json`` yet.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..io import atomic_write_text
from ..rundir import RunDir
from .claims import Pending, RunRecord, collect_runs, group_stats, matches
from .sweep import summarize_sweep

GRID_KINDS = ("toy2d_grid", "reference_bars")


def study_probes(study_dir: Path) -> dict[str, list[tuple[str, list[dict]]]]:
    """Sweep name -> (probe name, the ``where`` selections of the runs it is needed for) for
    every ``probe:`` metric a claim of the study asks of that sweep's runs (a claim pools other
    sweeps with ``sweeps:``; their runs are all selected)."""
    wanted: dict[str, list[tuple[str, list[dict]]]] = {}
    for path in sorted(study_dir.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text()) or {}
        for claim in spec.get("claims") or []:
            metric = str(claim.get("metric", ""))
            if not metric.startswith("probe:"):
                continue
            where = dict(claim.get("where") or {})
            sides = [{**where, **claim[k]} for k in ("first", "second") if k in claim] or [where]
            wanted.setdefault(spec["name"], []).append((metric[len("probe:"):], sides))
            for other in claim.get("sweeps") or []:
                wanted.setdefault(other, []).append((metric[len("probe:"):], [{}]))
    return wanted


def _first_seed_per_setting(records: list[RunRecord], where: dict | None) -> list[RunRecord]:
    chosen: dict[str, RunRecord] = {}
    for record in sorted(records, key=lambda r: r.seed):
        if matches(record, where) and record.setting not in chosen:
            chosen[record.setting] = record
    order = [r.setting for r in records]
    return sorted(chosen.values(), key=lambda r: order.index(r.setting))


def _value_label(key: str, value: Any) -> str:
    short = {"objective.beta": "β", "training.weight_decay": "λ"}.get(key, key.split(".")[-1])
    return f"{short} = {value:g}" if isinstance(value, float) else f"{short} = {value}"


def export_sweep(spec_path: str | Path, runs_root: str | Path, budget: str, results_root: str | Path,
                 verbose: bool = True) -> Path | None:
    """Copy the results of ``spec_path``'s sweep at ``budget`` from
    ``runs_root/<budget>/<name>/`` into ``results_root/<budget>/<name>/`` (replacing what was
    there), computing the probes and drawing the figures the sweep file lists.

    Returns:
        The results folder, or None when the sweep has not been run at that budget.

    Raises:
        ConfigError: a malformed ``figures:`` entry.
    """
    from ..evaluation import evaluate
    from ..plots.run import plot_run
    from .probes import compute_probe

    spec_path = Path(spec_path)
    spec = yaml.safe_load(spec_path.read_text()) or {}
    name = spec["name"]
    sweep_dir = Path(runs_root) / budget / name
    if not (sweep_dir / "sweep.yaml").is_file():
        return None
    say = print if verbose else (lambda *a, **k: None)
    records = collect_runs(sweep_dir)
    if spec.get("evaluate"):
        for record in records:
            if record.evaluation is None:
                say(f"evaluating {record.run_dir}")
                evaluate(record.run_dir, dict(spec["evaluate"]), verbose=False)
        records = collect_runs(sweep_dir)
    summarize_sweep(sweep_dir)  # tables and curve figures drawn by the current code
    out = Path(results_root) / budget / name
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=out.parent if out.parent.exists() else None))
    try:
        shutil.copyfile(sweep_dir / "sweep.yaml", staging / "sweep.yaml")
        if (sweep_dir / "results.csv").is_file():
            shutil.copyfile(sweep_dir / "results.csv", staging / "results.csv")
        (staging / "figures").mkdir()
        for png in sorted((sweep_dir / "figures").glob("compare_*.png")):
            shutil.copyfile(png, staging / "figures" / png.name)
        probes = study_probes(spec_path.parent).get(name, [])
        for record in records:
            target = staging / "runs" / record.name
            target.mkdir(parents=True)
            files = RunDir(record.run_dir)
            for path in (files.config_yaml, files.summary_json, files.metrics_csv, files.evaluation_json()):
                if path.is_file():
                    shutil.copyfile(path, target / path.name)
            needed = sorted({p for p, sides in probes if any(matches(record, side) for side in sides)})
            if needed:
                values = {p: compute_probe(record, p) for p in needed}
                values = {p: (None if v != v else v) for p, v in values.items()}  # NaN -> null
                atomic_write_text(RunDir(target).probes_json, json.dumps(values, indent=2, sort_keys=True) + "\n")
                record.probes = {p: (float("nan") if v is None else v) for p, v in values.items()}
        for entry in spec.get("figures") or []:
            _draw(entry, spec, records, staging / "figures", plot_run)
        for png in sorted(staging.rglob("*.png")):
            compact_png(png)
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    say(f"kept {len(records)} runs of {name} ({budget}) in {out}")
    return out


def short_setting(name: str) -> str:
    """A setting's name without the values its variant sets (``n12-kaiming-mae-likelihood=laplace``
    -> ``n12-kaiming-mae``) and with a pooled sweep's study prefix dropped (``02-perceptual/x`` ->
    ``perceptual/x``); grid settings (``beta=0.1``) stay as they are."""
    import re

    prefix, _, rest = name.rpartition("/")
    prefix = re.sub(r"^\d+-", "", prefix)
    short = re.sub(r"-[A-Za-z_]+=.*$", "", rest) if not re.match(r"^[A-Za-z_]+=", rest) else rest
    return f"{prefix}/{short}" if prefix else short


def compact_png(path: Path, colors: int = 128) -> None:
    """Re-encode a figure as a palette PNG (Pillow's median-cut quantiser, no dithering): about a
    third of the bytes, with no visible change to line plots, scatters and digit grids."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors=colors, method=Image.Quantize.MEDIANCUT,
                                              dither=Image.Dither.NONE)
    small.save(path, optimize=True)


def _draw(entry: dict[str, Any], spec: dict[str, Any], records: list[RunRecord], out: Path, plot_run) -> None:
    from ..plots.figures import save_figure
    from ..plots.run import KINDS

    if not isinstance(entry, dict) or "kind" not in entry:
        raise ConfigError(f"sweep {spec['name']}: each figures entry needs a kind, got {entry!r}")
    kind = entry["kind"]
    fid = str(entry.get("id", kind))
    if kind in KINDS:
        options = dict(entry.get("options") or {})
        folder = out / fid
        folder.mkdir(parents=True, exist_ok=True)
        for record in _first_seed_per_setting(records, entry.get("where")):
            with tempfile.TemporaryDirectory() as tmp:
                plot_run(record.run_dir, [kind], output_dir=tmp, overrides=options)
                shutil.copyfile(Path(tmp) / f"{kind}.png", folder / f"{record.setting}.png")
        return
    if kind == "toy2d_grid":
        from ..data import load_dataset
        from ..plots.latents import plot_toy2d_grid
        from ..training import load_model

        rows_key, cols_key = entry["rows"], entry["cols"]
        chosen = _first_seed_per_setting(records, entry.get("where"))
        if not chosen:
            return
        row_values = sorted({r.value(rows_key) for r in chosen})
        col_values = sorted({r.value(cols_key) for r in chosen})
        cells = [(row_values.index(r.value(rows_key)), col_values.index(r.value(cols_key)),
                  load_model(r.run_dir, "last")) for r in chosen]
        test = load_dataset(chosen[0].config.data).test
        fig = plot_toy2d_grid(cells, test.images, test.labels, [_value_label(rows_key, v) for v in row_values],
                              [_value_label(cols_key, v) for v in col_values],
                              title=entry.get("title", ""), seed=chosen[0].seed)
        save_figure(fig, out / f"{fid}.png")
        return
    if kind == "reference_bars":
        from ..plots.claims import plot_reference_bars

        claim = next((c for c in spec.get("claims") or [] if str(c.get("id")) == str(entry["claim"])), None)
        if claim is None or "reference" not in claim:
            raise ConfigError(f"sweep {spec['name']}: reference_bars needs a claim with a reference, "
                              f"got claim {entry.get('claim')!r}")
        pooled = records + [r for other in claim.get("sweeps") or []
                            for r in collect_runs(records[0].run_dir.parents[1].parent / other, prefix=f"{other}/")]
        try:
            stats = {s.setting: s for s in group_stats(pooled, claim["metric"], claim.get("where"))}
        except Pending as exc:  # a pooled sweep not evaluated yet: drawn on a later export
            print(f"{fid}: not drawn ({exc}: {', '.join(claim.get('sweeps') or [])})")
            return
        names = [n for n in claim["reference"] if n in stats] + sorted(set(stats) - set(claim["reference"]))
        fig = plot_reference_bars([short_setting(n) for n in names], [stats[n].mean for n in names], [stats[n].std for n in names],
                                  [claim["reference"].get(n) for n in names], entry.get("ours", claim["metric"]),
                                  entry.get("reference_label", "the report's number"),
                                  entry.get("title", f"claim {claim['id']}: ours beside the report's"))
        save_figure(fig, out / f"{fid}.png")
        return
    raise ConfigError(f"sweep {spec['name']}: unknown figure kind {kind!r} (plot kinds: {', '.join(KINDS)}; "
                      f"grid kinds: {', '.join(GRID_KINDS)})")


__all__ = ["compact_png", "export_sweep", "study_probes"]
