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
    - {kind: reconstructions, id: recon-train, checkpoint: best, options: {figures.split: train}}
    - {kind: toy2d_grid, rows: objective.beta, cols: training.weight_decay}
    - {kind: reference_bars, claim: "2.4"}          # the claim's metric beside its reference

An ``evaluate:`` mapping in the sweep file (``vaelab evaluate`` options) makes the export
evaluate every finished run that has no ``evaluation.json`` yet.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from ..errors import ConfigError, VaelabError
from ..io import atomic_write_text
from ..rundir import RunDir, SweepDir
from ..schema import yaml_load
from .claims import Pending, RunRecord, collect_runs, evaluated_otherwise, group_stats, matches
from .sweep import summarize_sweep

GRID_KINDS = ("toy2d_grid", "reference_bars")


def study_probes(study_dir: Path, prefix: str = "probe:") -> dict[str, list[tuple[str, list[dict]]]]:
    """Sweep name -> (probe name, the ``where`` selections of the runs it is needed for) for
    every ``probe:`` metric a claim of the study asks of that sweep's runs (a claim pools other
    sweeps with ``sweeps:``; their runs are all selected). With ``prefix="eval:"``, the same for
    the ``evaluation.json`` keys the claims read."""
    wanted: dict[str, list[tuple[str, list[dict]]]] = {}
    for path in sorted(study_dir.glob("*.yaml")):
        spec = yaml_load(path.read_text()) or {}
        for claim in spec.get("claims") or []:
            metric = str(claim.get("metric", ""))
            if not metric.startswith(prefix):
                continue
            where = dict(claim.get("where") or {})
            sides = [{**where, **claim[k]} for k in ("first", "second") if k in claim] or [where]
            wanted.setdefault(spec["name"], []).append((metric[len(prefix):], sides))
            for other in claim.get("sweeps") or []:
                wanted.setdefault(other, []).append((metric[len(prefix):], [{}]))
    return wanted


def _evaluated_split(spec: dict[str, Any]) -> str:
    """The split the sweep file's ``evaluate:`` scores (``vaelab evaluate``'s default: test), not
    the run's own selection split: a run with a validation split is still evaluated on test."""
    return str((spec.get("evaluate") or {}).get("split", "test"))


def _lacks(folder: Path, record: RunRecord, spec: dict[str, Any], needs: tuple[dict, dict], figures: Path,
           first_seed: int) -> list[str]:
    """What the sweep file now asks of a kept run that its kept results lack: a probe, an
    evaluation key a claim reads, or (for the first seed of a setting) a per-setting figure.
    ``needs``: the study's :func:`study_probes` for ``probe:`` and ``eval:`` metrics."""
    from ..plots.run import KINDS

    lacks = []
    files = RunDir(folder)
    probes = files.read_probes()
    for probe, sides in needs[0].get(spec["name"], []):
        if probe not in probes and any(matches(record, side) for side in sides):
            lacks.append(f"probe {probe}")
    wanted = spec.get("evaluate") or needs[1].get(spec["name"])
    evaluation = files.read_evaluation(_evaluated_split(spec)) if wanted else None
    if spec.get("evaluate") and evaluation is None:
        lacks.append("evaluation.json")
    elif spec.get("evaluate"):
        lacks += [f"an evaluation with {what}" for what in evaluated_otherwise(evaluation, spec["evaluate"])]
    for key, sides in needs[1].get(spec["name"], []):
        node: Any = evaluation or {}
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None and any(matches(record, side) for side in sides):
            lacks.append(f"evaluation key {key}")
    if record.seed == first_seed:
        for entry in spec.get("figures") or []:
            if isinstance(entry, dict) and entry.get("kind") in KINDS and matches(record, entry.get("where")):
                fid = str(entry.get("id", entry["kind"]))
                if not (figures / fid / f"{record.setting}.png").is_file():
                    lacks.append(f"figure {fid}")
    return sorted(set(lacks))


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


IGNORED_KEYS = ("output_dir", "data.data_dir", "training.device", "training.progress", "training.tracker_group")
"""Config keys that do not change what a run computes: a kept run whose config differs from the
sweep's only in these is still the sweep's run."""


def _identity(config: dict[str, Any]) -> dict[str, Any]:
    from ..config import Config

    resolved = Config.from_dict(config).to_dict()
    for dotted in IGNORED_KEYS:
        node = resolved
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.get(part, {})
        node.pop(leaf, None)
    return resolved


def kept_runs(spec_path: str | Path, budget: str, results_root: str | Path, complete: bool = True) -> dict[str, Path]:
    """The runs of ``spec_path``'s sweep at ``budget`` whose results are kept under
    ``results_root/<budget>/<name>/runs/``: run name -> kept folder. A kept run counts only
    while its config is the one the sweep file now gives it (up to :data:`IGNORED_KEYS`), so
    results of an edited sweep are never mixed with the new ones, and (``complete``) while its
    results hold everything the sweep file's claims and figures now ask of it (probes,
    evaluation keys, its setting's figures when it is the first seed), which only its
    checkpoint could add."""
    from ..rundir import read_run
    from .sweep_spec import load_sweep, setting_of

    spec_path = Path(spec_path)
    spec = yaml_load(spec_path.read_text()) or {}
    sweep = load_sweep(spec_path, budget)
    results = SweepDir(Path(results_root) / budget / sweep.name)
    first_seed = min((r.seed for r in sweep.runs), default=None)
    needs = (study_probes(spec_path.parent), study_probes(spec_path.parent, "eval:")) if complete else ({}, {})
    kept = {}
    for run in sweep.runs:
        files = results.run(run.name)
        if files.completed_summary() is None or not files.config_yaml.is_file():
            continue
        try:
            same = _identity(yaml_load(files.config_yaml.read_text()) or {}) == _identity(run.config)
            if same and complete:
                record = read_run(files.path)
                record.setting, record.seed = setting_of(run.name), run.seed
                same = not _lacks(files.path, record, spec, needs, results.figures, first_seed)
        except (ConfigError, VaelabError, yaml.YAMLError, ValueError):
            same = False
        if same:
            kept[run.name] = files.path
    return kept


def keep_run(record: RunRecord, spec: dict[str, Any], probes: list[tuple[str, list[dict]]], target: Path,
             say: Callable[..., None] = print) -> None:
    """Copy one finished run's small result files into ``target`` (replacing it): its config,
    summary, metrics, evaluation (made first with the sweep file's ``evaluate:`` when missing)
    and ``probes.json`` with the ``probes`` (name, selections) that select it. Written to a
    staging folder and renamed, so ``target`` is always whole."""
    from ..evaluation import evaluate

    if spec.get("evaluate") and record.evaluation is None:
        say(f"evaluating {record.run_dir}")
        evaluate(record.run_dir, dict(spec["evaluate"]), verbose=False)
        record.evaluation = RunDir(record.run_dir).read_evaluation(_evaluated_split(spec))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        files = RunDir(record.run_dir)
        for path in (files.config_yaml, files.summary_json, files.metrics_csv, files.steps_csv,
                     files.evaluation_json(_evaluated_split(spec))):
            if path.is_file():
                shutil.copyfile(path, staging / path.name)
        _relative_paths(staging / files.config_yaml.name, staging / files.summary_json.name)
        needed = sorted({p for p, sides in probes if any(matches(record, side) for side in sides)})
        if needed:
            from .probes import compute_probe

            which = (spec.get("evaluate") or {}).get("checkpoint", "last")  # the checkpoint the sweep is judged on
            values = {p: compute_probe(record, p, which) for p in needed}
            values = {p: (None if v != v else v) for p, v in values.items()}  # NaN -> null
            RunDir(staging).write_probes(values)
            record.probes = {p: (float("nan") if v is None else v) for p, v in values.items()}
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _relative_paths(*paths: Path) -> None:
    """Kept results go into the repository: the run's directory (``output_dir`` in
    ``config.yaml``, ``run_dir`` in ``summary.json``) is written relative to the current
    directory, as a campaign started from the repository root names it, not as this machine's
    absolute path."""
    prefix = str(Path.cwd().resolve()) + "/"
    for path in paths:
        if path.is_file():
            text = path.read_text()
            if prefix in text:
                atomic_write_text(path, text.replace(prefix, ""))


def keep_collected(spec_path: str | Path, budget: str, runs_root: str | Path, results_root: str | Path,
                   run_name: str, verbose: bool = True) -> Path:
    """Keep one finished run of ``spec_path``'s sweep (trained in ``runs_root/<budget>/<name>/``)
    in ``results_root/<budget>/<name>/runs/<run_name>/`` at once, and bring the folder's
    ``sweep.yaml``, ``results.csv`` and curves up to date; the per-setting figures wait for
    :func:`export_sweep`. Returns the kept folder.

    Raises:
        VaelabError: the run has not finished.
    """
    from ..errors import VaelabError
    from ..rundir import read_run
    from .sweep_runner import sweep_meta
    from .sweep_spec import load_sweep

    spec_path = Path(spec_path)
    spec = yaml_load(spec_path.read_text()) or {}
    sweep = load_sweep(spec_path, budget)
    run_dir = SweepDir(Path(runs_root) / budget / sweep.name).run(run_name).path
    record = read_run(run_dir)
    if not record.finished:
        raise VaelabError(f"{run_dir} has not finished; it cannot be kept yet")
    out = SweepDir(Path(results_root) / budget / sweep.name)
    probes = study_probes(spec_path.parent).get(sweep.name, [])
    keep_run(record, spec, probes, out.run(run_name).path, print if verbose else (lambda *a, **k: None))
    out.write_meta(sweep_meta(sweep, budget))
    summarize_sweep(out.path)
    out.results_md.unlink(missing_ok=True)
    for png in sorted(out.figures.glob("compare_*.png")):
        compact_png(png)
    return out.run(run_name).path


def export_sweep(spec_path: str | Path, runs_root: str | Path, budget: str, results_root: str | Path,
                 verbose: bool = True) -> Path | None:
    """Keep the results of ``spec_path``'s sweep at ``budget``: the finished runs of
    ``runs_root/<budget>/<name>/`` and the runs already kept in
    ``results_root/<budget>/<name>/`` (still the sweep's, :func:`kept_runs`) go together into
    that results folder (rewritten whole), with the probes computed and the figures the sweep
    file lists drawn. A figure that needs a checkpoint which only a kept run had is kept as it
    was drawn then.

    Returns:
        The results folder, or None when the sweep has no finished run at that budget.

    Raises:
        ConfigError: a malformed ``figures:`` entry.
    """
    from ..plots.run import plot_run
    from .sweep_runner import sweep_meta
    from .sweep_spec import load_sweep

    spec_path = Path(spec_path)
    spec = yaml_load(spec_path.read_text()) or {}
    sweep = load_sweep(spec_path, budget)
    name = sweep.name
    sweep_dir = Path(runs_root) / budget / name
    out = SweepDir(Path(results_root) / budget / name)
    say = print if verbose else (lambda *a, **k: None)
    trained = {r.name: r for r in collect_runs(sweep_dir)}
    trained = {n: r for n, r in trained.items() if n in {run.name for run in sweep.runs}}
    kept = {n: p for n, p in kept_runs(spec_path, budget, results_root, complete=False).items() if n not in trained}
    if not trained and not kept:
        return None
    out.path.parent.mkdir(parents=True, exist_ok=True)
    staging = SweepDir(tempfile.mkdtemp(prefix=f".{name}-", dir=out.path.parent))
    try:
        staging.write_meta(sweep_meta(sweep, budget))
        probes = study_probes(spec_path.parent).get(name, [])
        for run_name, record in trained.items():
            earlier = out.run(run_name)
            needed = {p for p, sides in probes if any(matches(record, side) for side in sides)}
            have = set(earlier.read_probes())
            if (_same_file(earlier.summary_json, record.files.summary_json) and needed <= have
                    and (not spec.get("evaluate") or earlier.evaluation_json().is_file())):
                shutil.copytree(earlier.path, staging.run(run_name).path)  # kept as it ended: nothing to redo
            else:
                keep_run(record, spec, probes, staging.run(run_name).path, say)
        for run_name, folder in kept.items():
            shutil.copytree(folder, staging.run(run_name).path)
        summarize_sweep(staging.path)  # results.csv and the curves, drawn by the current code
        staging.results_md.unlink(missing_ok=True)
        records = collect_runs(staging.path)
        checkpointed = {n: r.run_dir for n, r in trained.items()}
        for entry in spec.get("figures") or []:
            _draw(entry, spec, records, staging.figures, plot_run, checkpointed, out.figures)
        for png in sorted(staging.path.rglob("*.png")):
            compact_png(png)
        if out.path.exists():
            shutil.rmtree(out.path)
        staging.path.rename(out.path)
    finally:
        if staging.path.exists():
            shutil.rmtree(staging.path)
    say(f"kept {len(trained) + len(kept)} runs of {name} ({budget}) in {out}"
        + (f" ({len(kept)} from earlier)" if kept else ""))
    return out.path


def _same_file(a: Path, b: Path) -> bool:
    return a.is_file() and b.is_file() and a.read_bytes() == b.read_bytes()


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


def _draw(entry: dict[str, Any], spec: dict[str, Any], records: list[RunRecord], out: Path, plot_run,
          checkpointed: dict[str, Path] | None = None, earlier: Path | None = None) -> None:
    """Draw one ``figures:`` entry into ``out`` from ``records``; a model is read from the run
    directory in ``checkpointed`` (run name -> run directory with checkpoints; default each
    record's own). A figure whose runs have no checkpoint here is copied from ``earlier`` (the
    figures folder of an earlier export) when it is there, else left out."""
    from ..plots.figures import save_figure
    from ..plots.run import KINDS

    if not isinstance(entry, dict) or "kind" not in entry:
        raise ConfigError(f"sweep {spec['name']}: each figures entry needs a kind, got {entry!r}")
    checkpointed = {r.name: r.run_dir for r in records} if checkpointed is None else checkpointed
    kind = entry["kind"]
    fid = str(entry.get("id", kind))

    def copy_earlier(relative: str) -> None:
        source = None if earlier is None else earlier / relative
        if source is not None and source.is_file():
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, out / relative)

    if kind in KINDS:
        options = dict(entry.get("options") or {})
        folder = out / fid
        folder.mkdir(parents=True, exist_ok=True)
        for record in _first_seed_per_setting(records, entry.get("where")):
            if record.name not in checkpointed:
                copy_earlier(f"{fid}/{record.setting}.png")
                continue
            with tempfile.TemporaryDirectory() as tmp:
                plot_run(checkpointed[record.name], [kind], which=entry.get("checkpoint", "last"), output_dir=tmp,
                         overrides=options)
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
        if any(r.name not in checkpointed for r in chosen):
            copy_earlier(f"{fid}.png")
            return
        row_values = sorted({r.value(rows_key) for r in chosen})
        col_values = sorted({r.value(cols_key) for r in chosen})
        cells = [(row_values.index(r.value(rows_key)), col_values.index(r.value(cols_key)),
                  load_model(checkpointed[r.name], "last")) for r in chosen]
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


__all__ = ["compact_png", "export_sweep", "keep_collected", "keep_run", "kept_runs", "study_probes"]
