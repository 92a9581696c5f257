"""Sweeps: a base config, a grid and/or a list of variants, and seeds, trained in parallel
worker processes, resumable, summarised as mean ± std over seeds.

A sweep file (YAML)::

    name: latent-size                 # the sweep directory's name
    base: {data: {dataset: mnist}, training: {epochs: 10}}   # a config (or `base: path.yaml`)
    grid: {model.latent_dim: [1, 2, 3]}                     # cartesian product over these keys
    variants:                         # and/or explicit variants (each a dict of dotted keys)
      - {name: cnn, model.network: conv3}
    seeds: [1, 2, 3]
    budgets:                          # overrides per --budget (quick is the default)
      quick: {training.epochs: 3, data.train_examples: 10000}
      full: {}

Each run trains in ``<output_dir>/<name>/runs/<differing values>-seed<k>/``. A run whose
``summary.json`` exists is finished and skipped on re-launch; one with a checkpoint but no
summary is resumed. A failing run writes ``error.txt`` and the sweep goes on.

The summary (:func:`summarize_sweep`, ``vaelab sweep-summary DIR``) writes ``results.csv`` and
``results.md`` (mean ± std over seeds of the final metrics) and ``figures/compare_<key>.png``,
the ``vaelab compare`` curves of each swept key (:func:`sweep_figures`).
"""

from __future__ import annotations

import concurrent.futures as futures
import itertools
import json
import math
import multiprocessing
import os
import re
import signal
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from ..config import Config, load_config, set_dotted, yaml_load
from ..errors import ConfigError, VaelabError
from ..io import atomic_write_text, read_text

METRICS = ("neg_elbo", "recon", "kl")


@dataclass
class RunSpec:
    """One run of a sweep: its directory name, the values that set it apart, its full config."""

    name: str
    values: dict[str, Any]
    seed: int
    config: dict[str, Any]


@dataclass
class Sweep:
    """A parsed sweep: where it writes and the runs it is made of."""

    name: str
    directory: Path
    runs: list[RunSpec]
    keys: list[str]
    spec: dict[str, Any] = field(default_factory=dict)


def _format(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(_format(v) for v in value)
    if isinstance(value, float):
        value = f"{value:g}"
    return re.sub(r"[^A-Za-z0-9._+-]", "_", str(value))


def run_name(values: dict[str, Any], seed: int) -> str:
    """``latent_dim=2-beta=0.5-seed1``: the leaf names and values that set a run apart."""
    parts = [f"{key.split('.')[-1]}={_format(v)}" for key, v in values.items() if key != "name"]
    if "name" in values:
        parts.insert(0, _format(values["name"]))
    return "-".join(parts + [f"seed{seed}"])


def setting_of(run_name: str) -> str:
    """``latent_dim=2-seed3`` -> ``latent_dim=2`` (``base`` when only the seed differs)."""
    return re.sub(r"-?seed\d+$", "", run_name) or "base"


def _settings(grid: dict[str, list], variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The values of each setting, in sweep order: every variant with every grid point (the grid
    value wins where both set a key)."""
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else [{}]
    return [{**dict(variant), **combo} for variant in variants for combo in combos]


def load_sweep(spec: dict[str, Any] | str | Path, budget: str = "quick", output_dir: str | Path | None = None) -> Sweep:
    """Parse and validate a sweep (a dict or a YAML file) for ``budget``.

    Every run's config is built and validated before anything runs.

    Raises:
        ConfigError: unknown top-level keys, an empty grid, an unknown budget, or invalid run
            configs (all problems listed).
    """
    source = None
    if isinstance(spec, (str, Path)):
        source = Path(spec)
        try:
            spec = yaml_load(read_text(source, "sweep file"))
        except FileNotFoundError:
            raise ConfigError(f"sweep file {source} does not exist; check the path") from None
        except VaelabError as exc:
            raise ConfigError(str(exc)) from None
        except yaml.constructor.ConstructorError as exc:
            raise ConfigError(f"sweep file {source}: {exc.problem}") from None
        except yaml.YAMLError:
            raise ConfigError(f"sweep file {source} is not valid YAML; fix its syntax") from None
    if not isinstance(spec, dict):
        raise ConfigError("a sweep must be a mapping with base, grid and/or variants, seeds")
    allowed = {"name", "base", "grid", "variants", "seeds", "budgets", "output_dir", "description", "claims"}
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ConfigError(f"unknown sweep keys {', '.join(unknown)} (valid: {', '.join(sorted(allowed))})")
    base = spec.get("base") or {}
    if isinstance(base, str):
        path = Path(base) if source is None or Path(base).is_absolute() else source.parent / base
        base = load_config(path).to_dict()
    base = Config.from_dict(base).to_dict()
    budgets = spec.get("budgets") or {}
    if budget not in ("quick", "full") and budget not in budgets:
        raise ConfigError(f"unknown budget {budget!r}; use quick or full (or one the sweep defines)")
    grid = spec.get("grid") or {}
    variants = spec.get("variants") or ([{}] if grid or not spec.get("variants") else [])
    seeds = spec.get("seeds") or [base["seed"]]
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise ConfigError("sweep grid must map dotted config keys to non-empty lists of values")
    name = str(spec.get("name") or (source.stem if source else "sweep"))
    if "/" in name or name.startswith("."):
        raise ConfigError(f"sweep name must be a plain directory name, got {name!r}")
    directory = Path(output_dir or spec.get("output_dir") or "runs/sweeps") / name
    runs, problems = [], []
    for values in _settings(grid, variants):
        for seed in seeds:
            overrides = {k: v for k, v in values.items() if k != "name"}
            overrides.update(budgets.get(budget) or {})
            config = dict(base)
            config = json.loads(json.dumps(config))  # deep copy
            set_dotted(config, overrides)
            rname = run_name(values, seed)
            config.update(seed=seed, name=rname, output_dir=str(directory / "runs"))
            try:
                Config.from_dict(config)
            except ConfigError as exc:
                problems.append(f"{rname}: {exc}")
                continue
            runs.append(RunSpec(rname, values, seed, config))
    if problems:
        raise ConfigError("invalid sweep:\n  - " + "\n  - ".join(problems))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError("two runs of the sweep get the same name; give variants distinct `name`s")
    keys = list(dict.fromkeys([k for v in variants for k in v] + list(grid)))
    return Sweep(name, directory, runs, keys, spec)


def read_summary(path: Path) -> dict[str, Any] | None:
    """A run's ``summary.json``, or None when it is missing or damaged (not UTF-8, truncated)."""
    try:
        value = json.loads(read_text(path, "run summary"))
    except (FileNotFoundError, VaelabError, ValueError):
        return None
    return value if isinstance(value, dict) and value.get("epochs") else None


def _read_meta(path: Path) -> dict[str, Any]:
    """A sweep directory's ``sweep.yaml``.

    Raises:
        VaelabError: it is not UTF-8 text or not a valid YAML mapping.
    """
    try:
        meta = yaml_load(read_text(path, "sweep file"))
    except yaml.YAMLError:
        raise VaelabError(f"{path} is not valid YAML; it is damaged: launch the sweep again to rewrite "
                          "it") from None
    if meta is not None and not isinstance(meta, dict):
        raise VaelabError(f"{path} should hold a mapping; it is damaged: launch the sweep again to rewrite it")
    return meta or {}


def _worker_init(threads: int, init: Callable[[], None] | None) -> None:
    import torch

    from ..processes import die_with_parent

    die_with_parent()  # a sweep killed with SIGKILL leaves no orphaned worker training on
    torch.set_num_threads(threads)
    # The parent decides when to stop: it sends SIGTERM, which a training run answers by
    # checkpointing and stopping; outside a run it must not kill the worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)
    if init is not None:
        init()


_STOPPING = False
"""Set in a worker once the sweep is stopping: runs the pool had already queued are not started."""


def _stop_worker(signum, frame) -> None:
    global _STOPPING
    _STOPPING = True


def _train_one(config: dict[str, Any]) -> dict[str, Any]:
    """Train (or resume, or skip) one run in a worker; never raises. Once the sweep is stopping
    (SIGTERM to the worker, or a run of this worker interrupted) it starts nothing new."""
    global _STOPPING
    from ..training import resume, train

    run_dir = Path(config["output_dir"]) / config["name"]
    start = time.perf_counter()
    if read_summary(run_dir / "summary.json") is not None:
        return {"status": "skipped", "seconds": 0.0}
    if _STOPPING:
        return {"status": "not started", "seconds": 0.0}
    try:
        if (run_dir / "config.yaml").exists():
            run = resume(run_dir, verbose=False)
        else:
            run = train(config, verbose=False)
        (run_dir / "error.txt").unlink(missing_ok=True)
        return {"status": "done", "seconds": time.perf_counter() - start, "final": run.summary.get("final")}
    except Exception as exc:  # recorded, and the sweep goes on
        run_dir.mkdir(parents=True, exist_ok=True)
        message = f"{type(exc).__name__}: {exc}"
        atomic_write_text(run_dir / "error.txt", message + "\n")
        status = "interrupted" if type(exc).__name__ == "TrainingInterrupted" else "failed"
        _STOPPING = _STOPPING or status == "interrupted"
        return {"status": status, "seconds": time.perf_counter() - start, "error": message}


def run_sweep(sweep: Sweep | dict | str | Path, jobs: int | None = None, budget: str = "quick",
              verbose: bool = True, worker_init: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run every run of ``sweep`` in ``jobs`` worker processes and write its summary.

    Torch threads are divided among the workers (``cpu_count // jobs`` each). SIGINT/SIGTERM
    make every running run checkpoint and stop; a re-launch skips finished runs and resumes the
    others. ``worker_init`` runs in each worker first (e.g. to register a dataset).

    Returns:
        the summary (see :func:`summarize_sweep`) plus ``statuses``: run name -> status.

    Raises:
        RunDirectoryBusy: another process is running this sweep (its directory is locked).
        VaelabError: the sweep directory cannot be written.
    """
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep, budget)
    from ..runlock import run_lock

    with run_lock(sweep.directory, doing="launching a sweep", kind="sweep"):
        return _run_sweep_locked(sweep, jobs, budget, verbose, worker_init)


def _run_sweep_locked(sweep: Sweep, jobs, budget, verbose, worker_init) -> dict[str, Any]:
    atomic_write_text(sweep.directory / "sweep.yaml", yaml.safe_dump(
        {**sweep.spec, "resolved_runs": [r.name for r in sweep.runs], "keys": sweep.keys, "budget": budget},
        sort_keys=False))
    cpus = os.cpu_count() or 1
    jobs = max(1, min(jobs or cpus, len(sweep.runs)))
    threads = max(1, cpus // jobs)
    say = print if verbose else (lambda *a, **k: None)
    say(f"sweep {sweep.name}: {len(sweep.runs)} runs, {jobs} workers x {threads} threads -> {sweep.directory}")
    from tqdm.auto import tqdm

    statuses: dict[str, str] = {}
    context = multiprocessing.get_context("spawn")
    bar = tqdm(total=len(sweep.runs), desc="sweep", unit="run", disable=None if verbose else True)
    pool = futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init,
                                       initargs=(threads, worker_init))
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signal.Signals(signum).name

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        pending = {pool.submit(_train_one, run.config): run for run in sweep.runs}
        not_done = set(pending)
        while not_done:
            done, not_done = futures.wait(not_done, timeout=0.5)
            for future in done:
                if future.cancelled():
                    continue
                run = pending[future]
                try:
                    result = future.result()
                except Exception as exc:  # a worker died (e.g. killed): record and go on
                    result = {"status": "failed", "seconds": 0.0, "error": f"worker died: {exc}"}
                statuses[run.name] = result["status"]
                detail = ""
                if result.get("final"):
                    detail = f": test -ELBO {result['final']['neg_elbo']:.3f}"
                elif result.get("error"):
                    detail = f": {result['error'].splitlines()[0][:160]}"
                if verbose:
                    bar.write(f"[{len(statuses)}/{len(sweep.runs)}] {run.name} {result['status']}{detail} "
                              f"({result['seconds']:.1f} s)")
                bar.update(1)
            if stop["signal"]:  # start nothing new; ask running runs to checkpoint and stop
                for future in not_done:
                    future.cancel()
                for process in list((getattr(pool, "_processes", None) or {}).values()):
                    try:
                        os.kill(process.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    summary = summarize_sweep(sweep.directory)
    summary["statuses"] = statuses
    if stop["signal"]:
        from ..errors import TrainingInterrupted

        raise TrainingInterrupted(
            f"sweep stopped by {stop['signal']}; finished runs are kept, interrupted ones checkpointed; "
            f"re-launch the same command to continue"
        )
    if verbose:
        say((sweep.directory / "results.md").read_text())
    return summary


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
    meta_path = directory / "sweep.yaml"
    if not meta_path.is_file():
        raise VaelabError(f"{directory} is not a sweep directory (no sweep.yaml); check the path")
    meta = _read_meta(meta_path)
    groups: dict[str, dict[str, Any]] = {}
    failed = []
    for name in meta.get("resolved_runs", []):
        run_dir = directory / "runs" / name
        group = groups.setdefault(setting_of(name), {"runs": [], "values": {}})
        summary = read_summary(run_dir / "summary.json")
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
    atomic_write_text(directory / "results.csv", "\n".join(csv_lines) + "\n")
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
    atomic_write_text(directory / "results.md", "\n".join(md) + "\n")
    return {"directory": str(directory), "table": table, "unfinished": failed, "figures": paths,
            "not_plotted": not_plotted}


def sweep_figures(directory: str | Path, meta: dict[str, Any] | None = None,
                  metrics: tuple[str, ...] = METRICS) -> tuple[list[Path], dict[str, str]]:
    """Draw the ``vaelab compare`` figure of a sweep's finished runs once per swept key.

    A swept key is a grid key that takes two or more values among the finished runs, or
    ``variant`` when two or more of the sweep's variants finished. Each gets
    ``figures/compare_<key>.png``: one panel per metric (evaluation-split negative ELBO,
    reconstruction NLL and KL per epoch, nats per example), one colour per value of the key
    shared by the seeds of a setting, and with several swept keys one row of panels per value
    of the other keys. A sweep with a single setting gets ``compare_seed.png`` (its seeds).
    Older ``compare_*.png`` files that this call does not write are removed.

    Returns:
        the written paths, and run name -> reason for each run left out (no ``summary.json``,
        unreadable, or without the metrics).

    Raises:
        VaelabError: ``directory`` is not a sweep directory.
    """
    from ..plots.compare import metric_values
    from ..plots.run import read_run

    directory = Path(directory)
    if meta is None:
        if not (directory / "sweep.yaml").is_file():
            raise VaelabError(f"{directory} is not a sweep directory (no sweep.yaml); check the path")
        meta = _read_meta(directory / "sweep.yaml")
    records, skipped = [], {}
    for name in meta.get("resolved_runs", []):
        run_dir = directory / "runs" / name
        if not (run_dir / "summary.json").is_file():
            skipped[name] = "not finished"
            continue
        try:
            record = read_run(run_dir)
        except VaelabError as exc:
            skipped[name] = str(exc).splitlines()[0]
            continue
        missing = [m for m in metrics if not (metric_values(record, m) or ([], []))[1]]
        if missing:
            skipped[name] = f"no {', '.join(missing)} in metrics.csv"
            continue
        records.append(record)
    figures_dir = directory / "figures"
    paths = [] if not records else _draw_sweep_figures(records, meta, figures_dir, metrics)
    for stale in set(figures_dir.glob("compare_*.png")) - set(paths):  # from an earlier summary
        stale.unlink(missing_ok=True)
    return paths, skipped


def _draw_sweep_figures(records: list, meta: dict[str, Any], figures_dir: Path, metrics: tuple[str, ...]) -> list[Path]:
    from ..plots.compare import comparison_figure, run_labels, sort_key
    from ..plots.figures import save_figure

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

    name = meta.get("name", figures_dir.parent.name)
    datasets = ", ".join(sorted({r.config.data.dataset for r in records}))
    paths = []
    named = {f: (keys[0] if keys else f) for f, (labels, keys) in factors.items()}  # objective.beta
    for factor, (labels, keys) in factors.items():
        order = sorted(range(len(records)), key=lambda i: sort_key(records[i], keys))  # stable: sweep order
        others = [f for f in factors if f != factor]
        rows = [", ".join(factors[f][0][i] for f in others) for i in order] if others else None
        notes = [f"one row per {', '.join(named[f] for f in others)}"] if others else []
        if factor != "seed":
            notes.append("the seeds of a setting share a colour")
        title = f"sweep {name} ({datasets}): {len(records)} runs by {named[factor]}"
        title += ("\n" + "; ".join(notes)) if notes else ""
        fig = comparison_figure([records[i] for i in order], [labels[i] for i in order], list(metrics), keys,
                                title=title, rows=rows, legend_title=named[factor])
        paths.append(save_figure(fig, figures_dir / f"compare_{factor}.png"))
    return paths
