"""Campaigns: a fixed, ordered list of sweeps (each at one budget) run one after the other for as
long as it takes (days), resumable at any moment, with each finished run's small result files
kept as soon as it ends, and a status of what is done, what it cost and what remains.

A plan file (YAML)::

    name: studies-report-budget
    description: every study sweep at the report's budget, cheapest first
    output_dir: runs/studies          # sweeps train in <output_dir>/<budget>/<sweep name>/
    results_dir: docs/studies/results # kept results: <results_dir>/<budget>/<sweep name>/
    steps:                            # in order; sweep files relative to the plan file
      - {sweep: 03-sgd-clipping/clip-value.yaml, budget: full}
      - {sweep: 05-likelihoods-pca/binarized.yaml, budget: full, note: "Albu's Figs. 1-3"}

``output_dir`` and ``results_dir`` are relative to the current directory (as a sweep file's
``output_dir``). :func:`run_campaign` takes the steps in order. A run counts as done once its
results are kept (:func:`vaelab.experiments.studies.kept_runs`: kept results still match the
sweep file), so a fresh clone with the kept results does not train them again; the other runs
train with :func:`vaelab.experiments.sweep_runner.run_sweep` (finished runs skipped, interrupted
ones resumed from their last checkpoint). As each run ends its results are kept
(:func:`vaelab.experiments.studies.keep_run`: evaluation, probes, config, metrics); when a
step's runs are all kept, :func:`vaelab.experiments.studies.export_sweep` draws its figures.

Every run's end (done, interrupted, failed) is one row of ``<results_dir>/campaign/ledger.csv``
(its wall and CPU seconds), and ``<results_dir>/campaign/status.json`` (:func:`campaign_status`)
is rewritten after each: sweeps and runs done, CPU-hours spent, and the hours that remain at the
rate measured so far. A run cut by SIGKILL or a power cut is not in the ledger (its CPU time is
not counted) but its checkpoint is: the next launch loses at most the epoch it was in.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import yaml

from ..errors import ConfigError, TrainingInterrupted, VaelabError
from ..io import atomic_write_text
from ..processes import interrupt_on_signals, signals_ignored
from ..rundir import RunDir, SweepDir, read_metrics_csv
from ..schema import yaml_load

STATUS_EVERY = 300.0
"""Seconds between rewrites of ``status.json`` while a step's runs end (and at every step's end)."""
LEDGER_COLUMNS = ("time", "sweep", "budget", "run", "status", "wall_seconds", "cpu_seconds", "jobs", "threads")
TRAIN_SIZES = {"mnist": 60000, "fashion-mnist": 60000, "binarized-mnist": 60000}
"""Training-set sizes, to scale a quick run's time to a budget that trains on all images."""


@dataclass
class Step:
    """One step of a plan: a sweep file at a budget, or (``classifier``) the training of a
    cached dataset classifier that later sweeps use (``vaelab classifier train`` options)."""

    sweep: Path | None
    budget: str
    note: str = ""
    classifier: dict[str, Any] | None = None


@dataclass
class Plan:
    """A parsed plan file (see the module docstring)."""

    path: Path
    name: str
    description: str
    output_dir: Path
    results_dir: Path
    steps: list[Step]

    @property
    def status_dir(self) -> Path:
        return self.results_dir / "campaign"

    @property
    def ledger(self) -> Path:
        return self.status_dir / "ledger.csv"

    @property
    def status_json(self) -> Path:
        return self.status_dir / "status.json"


def load_plan(path: str | Path) -> Plan:
    """Read and check a plan file: every step's sweep file must load at its budget.

    Raises:
        ConfigError: a missing or malformed plan, or a step whose sweep file or budget is bad.
    """
    from ..config import yaml_load
    from ..io import read_text
    from .sweep_spec import load_sweep

    path = Path(path)
    try:
        spec = yaml_load(read_text(path, "campaign plan"))
    except FileNotFoundError:
        raise ConfigError(f"campaign plan {path} does not exist; check the path") from None
    except yaml.YAMLError:
        raise ConfigError(f"campaign plan {path} is not valid YAML; fix its syntax") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("steps"), list) or not spec["steps"]:
        raise ConfigError(f"campaign plan {path} needs a list of steps, e.g. "
                          "steps: [{sweep: my-sweep.yaml, budget: full}]")
    unknown = sorted(set(spec) - {"name", "description", "output_dir", "results_dir", "steps"})
    if unknown:
        raise ConfigError(f"campaign plan {path}: unknown keys {', '.join(map(str, unknown))} "
                          "(valid: name, description, output_dir, results_dir, steps)")
    for key in ("name", "description", "output_dir", "results_dir"):
        if key in spec and not isinstance(spec[key], str):
            raise ConfigError(f"campaign plan {path}: {key} must be a string, got {spec[key]!r}")
    steps, seen = [], set()
    for i, entry in enumerate(spec["steps"], 1):
        if isinstance(entry, dict) and set(entry) <= {"classifier", "note"} and isinstance(entry.get("classifier"), dict):
            from ..models.classifier import ClassifierConfig

            try:
                ClassifierConfig.from_dict(entry["classifier"])
            except ConfigError as exc:
                raise ConfigError(f"campaign plan {path}: step {i} (classifier): {exc}") from None
            steps.append(Step(None, "", str(entry.get("note", "")), dict(entry["classifier"])))
            continue
        if not isinstance(entry, dict) or not isinstance(entry.get("sweep"), str) or set(entry) - {"sweep", "budget", "note"}:
            raise ConfigError(f"campaign plan {path}: step {i} must be a mapping with sweep (a file) and budget, "
                              f"and optionally note, or with classifier (its options); got {entry!r}")
        sweep_path = (path.parent / entry["sweep"]).resolve()
        budget = str(entry.get("budget", "full"))
        try:
            name = load_sweep(sweep_path, budget).name
        except ConfigError as exc:
            raise ConfigError(f"campaign plan {path}: step {i} ({entry['sweep']}): {exc}") from None
        if (name, budget) in seen:
            raise ConfigError(f"campaign plan {path}: step {i} runs sweep {name} at budget {budget} again")
        seen.add((name, budget))
        steps.append(Step(sweep_path, budget, str(entry.get("note", ""))))
    return Plan(path, str(spec.get("name") or path.stem), str(spec.get("description", "")).strip(),
                Path(spec.get("output_dir", "runs/campaign")), Path(spec.get("results_dir", "results")), steps)


# --- the ledger ---------------------------------------------------------------------------------


def append_ledger(plan: Plan, row: dict[str, Any]) -> None:
    """Append one row to the ledger (written and flushed to disk at once; a row cut short by a
    crash is skipped when read)."""
    plan.status_dir.mkdir(parents=True, exist_ok=True)
    new = not plan.ledger.is_file() or plan.ledger.stat().st_size == 0
    with open(plan.ledger, "a", newline="") as handle:
        if not new and not _ends_with_newline(plan.ledger):
            handle.write("\n")  # a row cut short by a crash stays on a line of its own
        writer = csv.DictWriter(handle, fieldnames=LEDGER_COLUMNS, lineterminator="\n")
        if new:
            writer.writeheader()
        writer.writerow({k: row.get(k, "") for k in LEDGER_COLUMNS})
        handle.flush()
        os.fsync(handle.fileno())


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def read_ledger(plan: Plan) -> list[dict[str, Any]]:
    """The ledger's rows (wall and CPU seconds as floats); malformed rows are skipped."""
    if not plan.ledger.is_file():
        return []
    rows = []
    with open(plan.ledger, newline="") as handle:
        for row in csv.DictReader(handle):
            try:
                row["wall_seconds"] = float(row["wall_seconds"])
                row["cpu_seconds"] = float(row["cpu_seconds"])
            except (KeyError, TypeError, ValueError):
                continue
            rows.append(row)
    return rows


# --- the status ---------------------------------------------------------------------------------


def _train_seconds(run_dir: Path) -> tuple[float, int]:
    """(training seconds summed over the epochs of ``metrics.csv``, epochs done); (0, 0) when
    there is none."""
    try:
        rows = read_metrics_csv(RunDir(run_dir).metrics_csv)
    except (OSError, VaelabError, ValueError):
        return 0.0, 0
    seconds = [r.get("train_seconds", math.nan) for r in rows]
    return float(sum(s for s in seconds if math.isfinite(s))), len(rows)


def _size(data: dict[str, Any]) -> float | None:
    return data.get("train_examples") or TRAIN_SIZES.get(str(data.get("dataset")))


def _expected_seconds(run, quick_dir: Path | None) -> float | None:
    """A run's training seconds expected from the same setting's quick run (scaled by epochs and
    training-set size), or None without one."""
    if quick_dir is None:
        return None
    folder = SweepDir(quick_dir).run(run.name).path
    if not RunDir(folder).config_yaml.is_file():  # a seed the quick budget does not run: another seed of the setting
        others = sorted(quick_dir.glob(f"runs/{_setting(run.name)}-seed*/config.yaml"))
        others = [p for p in others if _setting(p.parent.name) == _setting(run.name)]
        if not others:
            return None
        folder = others[0].parent
    seconds, epochs = _train_seconds(folder)
    if not epochs:
        return None
    quick = yaml_load(RunDir(folder).config_yaml.read_text()) or {}
    n_quick = _size(quick.get("data", {})) or 1
    n_full = _size(run.config["data"]) or n_quick
    return seconds / epochs * run.config["training"]["epochs"] * n_full / n_quick


def campaign_status(plan: Plan, jobs: int | None = None) -> dict[str, Any]:
    """What the plan has done and what remains, from the kept results, the runs directory and
    the ledger (nothing is trained or written).

    Per step: runs in the sweep, runs kept, runs failed at their last attempt, CPU-hours spent
    (the ledger's CPU seconds of its workers), the training hours of the kept runs (their
    ``metrics.csv`` epoch times), and the hours its unfinished runs still need. That estimate is
    per run: the mean training time of the setting's kept seeds, else of the sweep's kept runs,
    else the setting's quick run scaled to the budget's epochs and training-set size and
    corrected by how such scalings compared with measured runs so far; less the epochs an
    interrupted run has done; times the ratio of a run's wall time to its training time (the
    evaluation and figures around it), and of CPU time to wall time, both measured in the
    ledger. Hours are worker-hours: with ``--jobs N`` the wall time is about 1/N of them.
    """
    from .studies import kept_runs

    ledger = read_ledger(plan)
    done_wall: dict[tuple[str, str, str], float] = {}
    cpu_by_step: dict[tuple[str, str], float] = {}
    wall_by_step: dict[tuple[str, str], float] = {}
    last_status: dict[tuple[str, str, str], str] = {}
    segments: dict[tuple[str, str, str], int] = {}
    for row in ledger:
        key = (row["sweep"], row["budget"], row["run"])
        segments[key] = segments.get(key, 0) + 1
        step_key = key[:2]
        cpu_by_step[step_key] = cpu_by_step.get(step_key, 0.0) + row["cpu_seconds"]
        wall_by_step[step_key] = wall_by_step.get(step_key, 0.0) + row["wall_seconds"]
        done_wall[key] = done_wall.get(key, 0.0) + row["wall_seconds"]
        if row["status"] in ("done", "failed", "interrupted"):
            last_status[key] = row["status"]
    total_cpu = sum(cpu_by_step.values())
    total_wall = sum(wall_by_step.values())
    cpu_per_wall = total_cpu / total_wall if total_wall > 0 else 1.0

    steps, wall_over_train, scaled = [], [], []
    loaded = []
    for step in plan.steps:
        if step.classifier is not None:
            continue
        sweep = load_step(plan, step)
        kept = kept_runs(step.sweep, step.budget, plan.results_dir, complete=False)
        complete = set(kept_runs(step.sweep, step.budget, plan.results_dir))
        finished = _finished(sweep)
        timed = dict(kept)  # every kept run of this sweep file's config measures how long such a run takes
        kept = {n: p for n, p in kept.items() if n in complete or n in finished}
        kept.update({n: sweep.files.run(n).path for n in finished - set(kept)})
        timed.update(kept)
        loaded.append((step, sweep, kept, timed))
        quick_dir = plan.results_dir / "quick" / sweep.name
        for run in sweep.runs:
            if run.name not in timed:
                continue
            seconds, _ = _train_seconds(timed[run.name])
            key = (sweep.name, step.budget, run.name)
            # a run trained in one go by the campaign (a resumed one's first part may be missing)
            if last_status.get(key) == "done" and segments.get(key) == 1 and 0 < seconds <= done_wall[key]:
                wall_over_train.append(done_wall[key] / seconds)
            expected = _expected_seconds(run, quick_dir if quick_dir.is_dir() else None)
            if expected and seconds > 0:
                scaled.append(seconds / expected)
    overhead = statistics.median(wall_over_train) if wall_over_train else 1.1
    correction = statistics.median(scaled) if scaled else 1.0
    by_step = {id(step): (sweep, kept, timed) for step, sweep, kept, timed in loaded}
    for step in plan.steps:
        if step.classifier is not None:
            steps.append(_classifier_status(step))
            continue
        sweep, kept, timed = by_step[id(step)]
        quick_dir = plan.results_dir / "quick" / sweep.name
        trained = {n: _train_seconds(p) for n, p in timed.items()}
        by_setting: dict[str, list[float]] = {}
        for run in sweep.runs:
            if run.name in trained and trained[run.name][0] > 0:
                by_setting.setdefault(_setting(run.name), []).append(trained[run.name][0])
        every = [s for values in by_setting.values() for s in values]
        remaining, unknown, failed, in_progress = 0.0, 0, [], []
        for run in sweep.runs:
            if run.name in kept:
                continue
            key = (sweep.name, step.budget, run.name)
            if last_status.get(key) == "failed":
                failed.append(run.name)
            if by_setting.get(_setting(run.name)):
                estimate = statistics.fmean(by_setting[_setting(run.name)])
            elif every:
                estimate = statistics.fmean(every)
            else:
                expected = _expected_seconds(run, quick_dir if quick_dir.is_dir() else None)
                estimate = None if expected is None else expected * correction
            if estimate is None:
                unknown += 1
                continue
            _, epochs_done = _train_seconds(sweep.files.run(run.name).path)
            if epochs_done:
                in_progress.append(run.name)
            share_left = max(0.0, 1 - epochs_done / max(1, run.config["training"]["epochs"]))
            remaining += estimate * share_left * overhead
        step_key = (sweep.name, step.budget)
        state = "done" if len(kept) == len(sweep.runs) else ("started" if kept or in_progress or step_key in cpu_by_step
                                                            else "waiting")
        steps.append({
            "sweep": sweep.name, "file": _relative(step.sweep, plan.path.parent), "budget": step.budget,
            "note": step.note, "state": state, "runs": len(sweep.runs), "kept": len(kept),
            "in_progress": sorted(in_progress), "failed": sorted(failed),
            "cpu_hours_spent": round(cpu_by_step.get(step_key, 0.0) / 3600, 6),
            "train_hours_kept": round(sum(_train_seconds(p)[0] for p in kept.values()) / 3600, 6),
            "hours_left": None if unknown == len(sweep.runs) - len(kept) and unknown else round(remaining / 3600, 6),
            "runs_without_estimate": unknown,
        })
    left = sum(s["hours_left"] or 0.0 for s in steps)
    return {
        "plan": plan.name,
        "steps": steps,
        "sweeps_done": sum(s["state"] == "done" for s in steps if "sweep" in s),
        "sweeps": sum("sweep" in s for s in steps),
        "runs_kept": sum(s["kept"] for s in steps),
        "runs": sum(s["runs"] for s in steps),
        "cpu_hours_spent": round(total_cpu / 3600, 6),  # tiny runs spend seconds: keep them above 0
        "wall_hours_of_runs": round(total_wall / 3600, 6),
        "worker_hours_left": round(left, 4),
        "cpu_hours_left": round(left * cpu_per_wall, 4),
        "rates": {"wall_per_train_second": round(overhead, 3), "measured_per_scaled_quick": round(correction, 3),
                  "cpu_per_wall_second": round(cpu_per_wall, 3)},
        "runs_without_estimate": sum(s["runs_without_estimate"] for s in steps),
        **({"jobs": jobs, "wall_hours_left": round(left / jobs, 4)} if jobs else {}),
    }


def _classifier_status(step: Step) -> dict[str, Any]:
    from ..models.classifier import ClassifierConfig, classifier_paths

    config = ClassifierConfig.from_dict(step.classifier)
    cached = classifier_paths(config.dataset, recipe=config.recipe)[0].is_file()
    return {"classifier": f"{config.dataset} ({config.recipe})", "note": step.note, "state": "done" if cached else "waiting",
            "runs": 0, "kept": 0, "in_progress": [], "failed": [], "cpu_hours_spent": 0.0, "train_hours_kept": 0.0,
            "hours_left": 0.0 if cached else None, "runs_without_estimate": 0}


def _setting(name: str) -> str:
    from .sweep_spec import setting_of

    return setting_of(name)


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(path, start).replace(os.sep, "/")


def write_status(plan: Plan, status: dict[str, Any]) -> Path:
    """Write ``status`` to ``<results_dir>/campaign/status.json`` (atomically)."""
    plan.status_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(plan.status_json, json.dumps(status, indent=2) + "\n")
    return plan.status_json


def format_status(status: dict[str, Any]) -> str:
    """The status as a plain-text table."""
    lines = [f"campaign {status['plan']}: {status['sweeps_done']} of {status['sweeps']} sweeps done, "
             f"{status['runs_kept']} of {status['runs']} runs kept, {status['cpu_hours_spent']:.2f} CPU-hours spent",
             "", f"{'#':>2}  {'sweep':24s} {'budget':7s} {'state':8s} {'runs kept':>10s} {'CPU-h':>7s} "
             f"{'h left':>7s}  notes"]
    for i, step in enumerate(status["steps"], 1):
        if "classifier" in step:
            lines.append(f"{i:>2}  {'classifier':24s} {'':7s} {step['state']:8s} {'':>10s} {'':>7s} "
                         f"{'' if step['state'] == 'done' else '?':>7s}  {step['classifier']}, cached in the user cache")
            continue
        left = "?" if step["hours_left"] is None else f"{step['hours_left']:.1f}"
        notes = []
        if step["in_progress"]:
            notes.append(f"{len(step['in_progress'])} in progress")
        if step["failed"]:
            notes.append(f"{len(step['failed'])} failed: {', '.join(step['failed'][:3])}"
                         + (" ..." if len(step["failed"]) > 3 else ""))
        if step["runs_without_estimate"] and step["hours_left"] is not None:
            notes.append(f"{step['runs_without_estimate']} runs without an estimate")
        lines.append(f"{i:>2}  {step['sweep']:24s} {step['budget']:7s} {step['state']:8s} "
                     f"{step['kept']:>4d} of {step['runs']:<3d} {step['cpu_hours_spent']:7.2f} {left:>7s}  "
                     + "; ".join(notes))
    lines.append("")
    tail = (f"remaining: about {status['worker_hours_left']:.1f} worker-hours ({status['cpu_hours_left']:.1f} CPU-hours)"
            + (f", {status['wall_hours_left']:.1f} h of wall time with --jobs {status['jobs']}" if status.get("jobs") else
               "; with --jobs N the wall time is about 1/N of the worker-hours"))
    if status["runs_without_estimate"]:
        tail += f"; {status['runs_without_estimate']} runs have no estimate yet (no kept or quick run to scale)"
    lines.append(tail)
    return "\n".join(lines)


# --- running ------------------------------------------------------------------------------------


def _clean_staging(plan: Plan) -> None:
    """Remove staging folders (``.<name>-*``) left in the results by a process that was killed
    while writing (the kept results beside them are whole)."""
    for folder in plan.results_dir.glob("*/"):
        for stale in list(folder.glob(".*-*")) + list(folder.glob("*/runs/.*-*")):
            if stale.is_dir():
                shutil.rmtree(stale, ignore_errors=True)


def run_campaign(plan: Plan | str | Path, jobs: int = 1, threads: int | None = None, nice: int = 19,
                 verbose: bool = True, worker_init: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run the plan's steps in order until every run is kept, resuming whatever an earlier
    launch left; returns the final :func:`campaign_status`.

    ``jobs`` runs train at a time, with ``threads`` torch threads each (default: the CPUs shared
    out); the process and its workers run at niceness ``nice`` (19: the lowest priority). A run
    that fails is recorded (ledger, ``error.txt``) and the campaign goes on; a later launch tries
    it again.

    Raises:
        ConfigError: a bad plan, or ``jobs``/``threads`` below 1.
        RunDirectoryBusy: another process runs this campaign or one of its sweeps.
        TrainingInterrupted: SIGINT/SIGTERM stopped it (runs checkpointed, results kept; launch
            the same command again to continue).
    """
    from ..runlock import run_lock

    if not isinstance(plan, Plan):
        plan = load_plan(plan)
    if jobs < 1 or (threads is not None and threads < 1):
        raise ConfigError(f"--jobs and --threads must be >= 1, got {jobs} and {threads}")
    say = print if verbose else (lambda *a, **k: None)
    if nice:
        os.nice(max(0, nice - os.nice(0)))
    plan.output_dir.mkdir(parents=True, exist_ok=True)
    with run_lock(plan.output_dir, doing=f"running campaign {plan.name}", kind="campaign"):
        import torch

        if threads:
            torch.set_num_threads(threads)  # the evaluations and figures made here
        _clean_staging(plan)
        try:  # a sweep stops its runs at a checkpoint on its own; elsewhere the work is dropped
            with interrupt_on_signals("campaign stopped"):
                for i, step in enumerate(plan.steps, 1):
                    _run_step(plan, step, i, jobs, threads, say, worker_init)
        except TrainingInterrupted:
            with signals_ignored():  # the status is written whole
                write_status(plan, campaign_status(plan, jobs))
            raise TrainingInterrupted(
                "campaign stopped; finished runs are kept, interrupted ones checkpointed; launch the same "
                "command again to continue") from None
        status = campaign_status(plan, jobs)
        write_status(plan, status)
        say(format_status(status))
        return status


def _finished(sweep) -> set[str]:
    """The sweep's runs that finished in its runs directory (their checkpoints are there)."""
    return {r.name for r in sweep.runs if sweep.files.run(r.name).completed_summary()}


def _done(plan: Plan, step: Step, sweep) -> set[str]:
    """Runs that need no more training: kept with everything the sweep file asks of them, or
    finished in the runs directory (whatever their kept results lack, their checkpoint gives)."""
    from .studies import kept_runs

    return set(kept_runs(step.sweep, step.budget, plan.results_dir)) | _finished(sweep)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _run_step(plan: Plan, step: Step, index: int, jobs: int, threads: int | None, say,
              worker_init: Callable[[], None] | None) -> None:
    from .studies import export_sweep, keep_collected, kept_runs
    from .sweep_runner import run_sweep

    if step.classifier is not None:
        from ..evaluation.classifier import train_classifier

        say(f"[{index}/{len(plan.steps)}] classifier {step.classifier}")
        _try(say, f"training the classifier {step.classifier}", train_classifier, step.classifier,
             verbose=False)  # a cached one is kept as it is
        return

    sweep = load_step(plan, step)
    kept_any = kept_runs(step.sweep, step.budget, plan.results_dir, complete=False)
    for name in sorted(_finished(sweep) - set(kept_any)):  # finished before an earlier launch could keep them
        _try(say, f"keeping {name}", keep_collected, step.sweep, step.budget, plan.output_dir, plan.results_dir, name,
             verbose=False)
    done = _done(plan, step, sweep)
    todo = [r for r in sweep.runs if r.name not in done]
    say(f"[{index}/{len(plan.steps)}] {sweep.name} ({step.budget}): {len(done)} of {len(sweep.runs)} runs done"
        + (f", {len(todo)} to train" if todo else ""))
    if todo:
        last_status = [time.monotonic()]

        def on_result(run, result):
            if result["status"] == "not started":  # queued when the campaign was stopped
                return
            append_ledger(plan, {"time": _now(), "sweep": sweep.name, "budget": step.budget, "run": run.name,
                                 "status": result["status"], "wall_seconds": f"{result.get('seconds', 0.0):.1f}",
                                 "cpu_seconds": f"{result.get('cpu_seconds', 0.0):.1f}", "jobs": jobs,
                                 "threads": threads or ""})
            if result["status"] in ("done", "skipped"):
                _try(say, f"keeping {run.name}", keep_collected, step.sweep, step.budget, plan.output_dir,
                     plan.results_dir, run.name, verbose=False)
            if time.monotonic() - last_status[0] > STATUS_EVERY:  # the status reads every kept run: now and then
                write_status(plan, campaign_status(plan, jobs))
                last_status[0] = time.monotonic()

        run_sweep(sweep, jobs, step.budget, verbose=False, worker_init=worker_init, threads=threads,
                  skip=done, on_result=on_result)
    complete = set(kept_runs(step.sweep, step.budget, plan.results_dir))
    every = {r.name for r in sweep.runs}
    if _done(plan, step, sweep) == every and (complete != every or _export_due(plan, sweep.name, step.budget)):
        say(f"[{index}/{len(plan.steps)}] {sweep.name} ({step.budget}): all runs done; keeping them with their figures")
        if not _try(say, f"keeping {sweep.name} ({step.budget})", export_sweep, step.sweep, plan.output_dir,
                    step.budget, plan.results_dir, verbose=False):
            return
        append_ledger(plan, {"time": _now(), "sweep": sweep.name, "budget": step.budget, "run": "",
                             "status": "exported", "wall_seconds": "0", "cpu_seconds": "0", "jobs": jobs,
                             "threads": threads or ""})
    write_status(plan, campaign_status(plan, jobs))


def load_step(plan: Plan, step: Step):
    """The step's sweep, training under ``<output_dir>/<budget>/``."""
    from .sweep_spec import load_sweep

    return load_sweep(step.sweep, step.budget, plan.output_dir / step.budget)


def _try(say, what: str, function, *args, **kwargs) -> bool:
    """Run ``function``; on an error print one line (``what`` failed and why) and go on: a long
    campaign is not stopped by one run whose results cannot be kept (a later launch tries again).
    Interruptions (SIGINT, SIGTERM) pass through."""
    import sys

    try:
        function(*args, **kwargs)
        return True
    except TrainingInterrupted:
        raise
    except Exception as exc:  # noqa: BLE001 - recorded, and the campaign goes on
        print(f"vaelab campaign: {what} failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
              "it is tried again at the next launch", file=sys.stderr)
        return False


def _export_due(plan: Plan, sweep: str, budget: str) -> bool:
    """True when the ledger has a run of this step that ended after its last export (a launch
    stopped between keeping the last run and drawing the figures)."""
    last_run = last_export = -1
    for i, row in enumerate(read_ledger(plan)):
        if row["sweep"] == sweep and row["budget"] == budget:
            if row["status"] == "exported":
                last_export = i
            elif row["status"] in ("done", "skipped"):
                last_run = i
    return last_run > last_export


__all__ = ["Plan", "Step", "append_ledger", "campaign_status", "format_status", "load_plan", "read_ledger",
           "run_campaign", "write_status"]
