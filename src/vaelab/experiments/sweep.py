"""Sweeps: a base config, a grid and/or a list of variants, and seeds, trained in parallel
worker processes, resumable, summarised as mean ± std over seeds.

A sweep file (YAML)::

    name: latent-size                 # the sweep directory's name
    base: {data: {dataset: mnist}, training: {epochs: 10}}   # a config (or `base: path.yaml`)
    grid: {model.latent_dim: [1, 2, 3]}                     # cartesian product over these keys
    variants:                         # and/or explicit variants (each a dict of dotted keys)
      - {name: cnn, model.network: conv3}
    seeds: [1, 2, 3]
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
from ..rundir import RunDir

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
    allowed = {"name", "base", "grid", "variants", "seeds", "seed_keys", "budgets", "output_dir", "description",
               "claims", "figures", "evaluate"}  # claims, figures, evaluate: read by experiments.studies
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
    seed_keys = spec.get("seed_keys") or []
    if not isinstance(seed_keys, list) or not all(isinstance(k, str) for k in seed_keys):
        raise ConfigError("sweep seed_keys must be a list of dotted config keys, e.g. [data.subset_seed]")
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
            overrides.update({key: seed for key in seed_keys})
            config = dict(base)
            config = json.loads(json.dumps(config))  # deep copy
            set_dotted(config, overrides)
            rname = run_name(values, seed)
            config.update(seed=seed, name=rname, output_dir=str(directory / "runs"))
            if config.get("training", {}).get("tracker_group") is None:  # MLflow parent run / W&B group
                config.setdefault("training", {})["tracker_group"] = name
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
    """A run's ``summary.json``, or None when it is missing, damaged (not UTF-8, truncated) or
    records no epoch."""
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


def _train_one(config: dict[str, Any], device: str | None = None) -> dict[str, Any]:
    """Train (or resume, or skip) one run in a worker; never raises. Once the sweep is stopping
    (SIGTERM to the worker, or a run of this worker interrupted) it starts nothing new.
    ``device``: train on it (``training.device``, also when resuming) instead of the config's."""
    global _STOPPING
    from ..api import resume, train

    if device is not None:
        config = {**config, "training": {**config["training"], "device": device}}

    files = RunDir(Path(config["output_dir"]) / config["name"])
    run_dir = files.path
    start = time.perf_counter()
    if read_summary(files.summary_json) is not None:
        return {"status": "skipped", "seconds": 0.0}
    if _STOPPING:
        return {"status": "not started", "seconds": 0.0}
    try:
        if files.config_yaml.exists():
            run = resume(run_dir, None if device is None else {"training.device": device}, verbose=False)
        else:
            run = train(config, verbose=False)
        files.error_txt.unlink(missing_ok=True)
        return {"status": "done", "seconds": time.perf_counter() - start, "final": run.summary.get("final")}
    except Exception as exc:  # recorded, and the sweep goes on
        run_dir.mkdir(parents=True, exist_ok=True)
        message = f"{type(exc).__name__}: {exc}"
        atomic_write_text(files.error_txt, message + "\n")
        status = "interrupted" if type(exc).__name__ == "TrainingInterrupted" else "failed"
        _STOPPING = _STOPPING or status == "interrupted"
        return {"status": status, "seconds": time.perf_counter() - start, "error": message}


class _ProcessPool:
    """The local backend's submission: runs go to ``jobs`` spawned worker processes on this
    machine, each with ``threads`` torch threads."""

    def __init__(self, jobs: int, threads: int, worker_init: Callable[[], None] | None) -> None:
        self.describe = f"{jobs} workers x {threads} threads"
        self.pool = futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                                initializer=_worker_init, initargs=(threads, worker_init))

    def submit(self, config: dict[str, Any]) -> futures.Future:
        return self.pool.submit(_train_one, config)

    def wait(self, handles: set, timeout: float) -> tuple[set, set]:
        return futures.wait(handles, timeout=timeout)

    def result(self, future: futures.Future) -> dict[str, Any] | None:
        """The run's result; None for a run cancelled before it started."""
        if future.cancelled():
            return None
        try:
            return future.result()
        except Exception as exc:  # a worker died (e.g. killed): record and go on
            return {"status": "failed", "seconds": 0.0, "error": f"worker died: {exc}"}

    def stop(self, not_done: set) -> None:
        """Start nothing new; ask running runs to checkpoint and stop."""
        for future in not_done:
            future.cancel()
        for process in list((getattr(self.pool, "_processes", None) or {}).values()):
            try:
                os.kill(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


RAY_INSTALL_HINT = "--backend ray needs Ray: pip install 'vaelab[ray]'"
RAY_MAX_RETRIES = 3
"""How often Ray runs a task again after its worker process died or its node was lost (the
retry resumes the run from its last checkpoint); errors of the run itself are never retried."""


def _import_ray():
    """The ``ray`` module, imported on first use (it is an optional extra).

    Raises:
        VaelabError: Ray is not installed (with the install command).
    """
    try:
        import ray
    except ImportError:
        raise VaelabError(RAY_INSTALL_HINT) from None
    return ray


def _ray_run(config: dict[str, Any], threads: int, worker_init: Callable[[], None] | None) -> dict[str, Any]:
    """One run as a Ray task, in a Ray worker process: torch gets ``threads`` threads (the
    task's CPUs) and the task's GPU when Ray assigned one (Ray sets ``CUDA_VISIBLE_DEVICES``
    to it), else the CPU; then :func:`_train_one`, as in a local worker.

    ``ray.cancel`` interrupts the worker's main thread as a SIGINT would: a training run
    checkpoints after its current step and stops (status ``interrupted``); a run that has not
    begun training is not started."""
    global _STOPPING
    import ray
    import torch

    _STOPPING = False  # a Ray worker process runs task after task, of this sweep and of later ones
    torch.set_num_threads(threads)
    previous = signal.signal(signal.SIGINT, _stop_worker)  # the trainer sets its own while it trains
    try:
        if worker_init is not None:
            worker_init()
        return _train_one(config, device="cuda" if ray.get_gpu_ids() else "cpu")
    finally:
        signal.signal(signal.SIGINT, previous)


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Raise VaelabError unless a TCP connection to ``HOST:PORT`` opens within ``timeout`` s."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise VaelabError(f"--ray-address {address!r} is not auto or HOST:PORT, e.g. 10.0.0.5:6379")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise VaelabError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); check the address (the head "
            "node's GCS port, 6379 by default) and that `ray start --head` runs there") from None


class _RayTasks:
    """The Ray backend's submission: each run is a Ray core task asking for ``cpus_per_run``
    CPUs and ``gpus_per_run`` GPUs, on the cluster at ``address`` (``auto``, ``HOST:PORT``), on
    the Ray instance this process is already connected to, or else on a local instance started
    here and sized to the machine (stopped again by :meth:`close`).

    Raises:
        VaelabError: Ray is missing, the cluster cannot be reached, or (on a local instance)
            a run asks for more CPUs or GPUs than the machine has.
    """

    def __init__(self, address: str | None, cpus_per_run: int, gpus_per_run: float,
                 worker_init: Callable[[], None] | None, say: Callable[..., None]) -> None:
        import logging

        ray = self.ray = _import_ray()
        if cpus_per_run < 1:
            raise ConfigError(f"cpus_per_run (--cpus-per-run) must be >= 1, got {cpus_per_run}")
        if gpus_per_run < 0:
            raise ConfigError(f"gpus_per_run (--gpus-per-run) must be >= 0, got {gpus_per_run}")
        self.connected = not ray.is_initialized()  # connected (or started) here: disconnect in close()
        if self.connected:
            if address and address != "auto" and "://" not in address:
                _check_reachable(address)  # ray.init would retry an unreachable address for minutes
            try:
                if address:
                    ray.init(address=address, logging_level=logging.WARNING)
                else:  # a new single-machine instance, reachable from this machine only
                    ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1",
                             logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError) as exc:  # RuntimeError: e.g. a Ray version mismatch
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0].rstrip(".")
                raise VaelabError(
                    f"cannot connect to the Ray cluster at {address} ({reason}); start one with "
                    "`ray start --head`, or pass the head node's HOST:PORT") from None
        try:
            nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
            most = {kind: max((node.get(kind, 0.0) for node in nodes), default=0.0) for kind in ("CPU", "GPU")}
            for kind, wanted in (("CPU", cpus_per_run), ("GPU", gpus_per_run)):
                if wanted > most[kind]:
                    problem = (f"each run asks for {wanted:g} {kind}s (--{kind.lower()}s-per-run) but the largest "
                               f"node of the Ray cluster has {most[kind]:g}")
                    if not address:  # a local instance does not grow
                        raise ConfigError(f"{problem}; ask for at most {most[kind]:g}")
                    say(f"warning: {problem}: runs wait until such a node joins")
        except BaseException:
            self.close()
            raise
        total = ray.cluster_resources()
        gpus = f", {gpus_per_run:g} GPU" if gpus_per_run else ""
        self.describe = (f"Ray tasks of {cpus_per_run} CPU{'s' if cpus_per_run > 1 else ''}{gpus} each on "
                         f"{len(nodes)} node(s) with "
                         f"{total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs")
        self.threads = cpus_per_run
        self.worker_init = worker_init
        self.task = ray.remote(_ray_run)
        self.options = {"num_cpus": cpus_per_run, "num_gpus": gpus_per_run, "max_retries": RAY_MAX_RETRIES,
                        "retry_exceptions": False}

    def submit(self, config: dict[str, Any]):
        # absolute paths: a task may run in another directory or on another node (which must
        # see the same storage)
        config = json.loads(json.dumps(config))
        config["output_dir"] = str(Path(config["output_dir"]).resolve())
        if config.get("data", {}).get("data_dir"):
            config["data"]["data_dir"] = str(Path(config["data"]["data_dir"]).resolve())
        task = self.task.options(name=f"vaelab-run {config['name']}", **self.options)
        return task.remote(config, self.threads, self.worker_init)

    def wait(self, handles: set, timeout: float) -> tuple[set, set]:
        ready, not_ready = self.ray.wait(list(handles), num_returns=len(handles), timeout=timeout)
        return set(ready), set(not_ready)

    def result(self, ref) -> dict[str, Any] | None:
        """The run's result; None for a run cancelled before it started."""
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.TaskCancelledError:
            return None
        except self.ray.exceptions.RayError as exc:  # retries used up (worker or node lost), or a Ray failure
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return {"status": "failed", "seconds": 0.0, "error": f"Ray task failed: {type(exc).__name__}: {message}"}

    def stop(self, not_done: set) -> None:
        """Cancel the tasks: queued ones never start, running ones checkpoint and stop. Called
        again every half second while tasks run, like the local backend's SIGTERM: a run
        interrupted before its training loop began would otherwise train to the end."""
        for ref in not_done:
            self.ray.cancel(ref)

    def close(self) -> None:
        if self.connected and self.ray.is_initialized():
            self.ray.shutdown()  # stops a local instance started here; only disconnects from a cluster


def _create_tracker_groups(sweep: Sweep) -> None:
    """Create the MLflow parent run of the sweep's runs before the workers start, so that
    parallel workers do not each create one (runs logging to MLflow only)."""
    from ..training.trackers import logger_names, mlflow_parent_run

    done = set()
    for run in sweep.runs:
        config = Config.from_dict(run.config)
        t = config.training
        key = (t.mlflow_uri, config.output_dir, t.mlflow_experiment, t.tracker_group)
        if "mlflow" in logger_names(t.logger) and t.tracker_group and key not in done:
            mlflow_parent_run(config)
            done.add(key)


def run_sweep(sweep: Sweep | dict | str | Path, jobs: int | None = None, budget: str = "quick",
              verbose: bool = True, worker_init: Callable[[], None] | None = None, backend: str = "local",
              ray_address: str | None = None, cpus_per_run: int = 1, gpus_per_run: float = 0.0) -> dict[str, Any]:
    """Run every run of ``sweep`` in ``jobs`` worker processes and write its summary.

    Torch threads are divided among the workers (``cpu_count // jobs`` each). SIGINT/SIGTERM
    make every running run checkpoint and stop; a re-launch skips finished runs and resumes the
    others. ``worker_init`` runs in each worker first (e.g. to register a dataset).

    With ``backend="ray"`` each run is a Ray core task instead (``jobs`` is not used): on the
    cluster at ``ray_address`` (``auto`` or ``HOST:PORT``), on the Ray instance this process is
    connected to, or else on a local instance started for the sweep and sized to the machine.
    A task asks for ``cpus_per_run`` CPUs (its torch threads) and ``gpus_per_run`` GPUs (it
    trains on its GPU when it gets one, else on the CPU); a task whose worker process or node
    is lost is run again (up to ``RAY_MAX_RETRIES`` times) and resumes from the run's
    checkpoint; SIGINT/SIGTERM cancel the tasks (running runs checkpoint and stop). Every node
    must see the sweep directory at the same path. Everything but the submission is shared
    with the local backend: the runs, their statuses, skipping and resuming, the summary.

    Returns:
        the summary (see :func:`summarize_sweep`) plus ``statuses``: run name -> status.

    Raises:
        ConfigError: an unknown backend, or resources a run cannot get.
        VaelabError: ``backend="ray"`` without Ray installed, an unreachable cluster, or a sweep
            directory that cannot be written.
        RunDirectoryBusy: another process is running this sweep (its directory is locked).
        TrainingInterrupted: the sweep was stopped by a signal (re-launch to continue).
    """
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown sweep backend {backend!r}; use local or ray")
    if not isinstance(sweep, Sweep):
        sweep = load_sweep(sweep, budget)
    from ..runlock import run_lock

    say = print if verbose else (lambda *a, **k: None)
    originals = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}  # ray.init sets its own
    # the runner first: a missing Ray or resources a run cannot get are refused before anything is written
    if backend == "ray":
        runner: _ProcessPool | _RayTasks = _RayTasks(ray_address, cpus_per_run, gpus_per_run, worker_init, say)
    else:
        cpus = os.cpu_count() or 1
        jobs = max(1, min(jobs or cpus, len(sweep.runs)))
        threads = max(1, cpus // jobs)
        runner = _ProcessPool(jobs, threads, worker_init)
    try:
        with run_lock(sweep.directory, doing="launching a sweep", kind="sweep"):
            return _run_sweep_locked(sweep, runner, budget, say, originals, verbose)
    finally:
        runner.close()


def _run_sweep_locked(sweep: Sweep, runner, budget: str, say, originals, verbose: bool) -> dict[str, Any]:
    """:func:`run_sweep` once it holds the sweep directory's lock: the runs go to ``runner``
    (closed here when they are done, and again, harmlessly, by the caller)."""
    sweep.directory.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sweep.directory / "sweep.yaml", yaml.safe_dump(
        {**sweep.spec, "resolved_runs": [r.name for r in sweep.runs], "keys": sweep.keys, "budget": budget},
        sort_keys=False))
    say(f"sweep {sweep.name}: {len(sweep.runs)} runs, {runner.describe} -> {sweep.directory}")
    from tqdm.auto import tqdm

    _create_tracker_groups(sweep)
    statuses: dict[str, str] = {}
    bar = tqdm(total=len(sweep.runs), desc="sweep", unit="run", disable=None if verbose else True)
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signal.Signals(signum).name

    for s in originals:
        signal.signal(s, on_signal)
    try:
        pending = {runner.submit(run.config): run for run in sweep.runs}
        not_done = set(pending)
        while not_done:
            done, not_done = runner.wait(not_done, timeout=0.5)
            for future in done:
                result = runner.result(future)
                if result is None:  # cancelled before it started
                    continue
                run = pending[future]
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
                runner.stop(not_done)
    finally:
        runner.close()
        bar.close()
        for s, handler in originals.items():
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
        summary = read_summary(RunDir(run_dir).summary_json)
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

    directory = Path(directory)
    if meta is None:
        if not (directory / "sweep.yaml").is_file():
            raise VaelabError(f"{directory} is not a sweep directory (no sweep.yaml); check the path")
        meta = _read_meta(directory / "sweep.yaml")
    records, skipped = [], {}
    for name in meta.get("resolved_runs", []):
        run_dir = directory / "runs" / name
        if not RunDir(run_dir).finished():
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
        likelihoods = [r.config.model.likelihood for r in records]
        if len(set(likelihoods)) > 1:  # NLLs of different likelihoods: one row (own axes) each
            rows = [f"likelihood={likelihoods[i]}" + (f", {rows[j]}" if rows else "") for j, i in enumerate(order)]
            others = others + ["likelihood"]
            named.setdefault("likelihood", "likelihood")
        notes = [f"one row per {', '.join(named[f] for f in others)}"] if others else []
        if factor != "seed":
            notes.append("the seeds of a setting share a colour")
        title = f"sweep {name} ({datasets}): {len(records)} runs by {named[factor]}"
        title += ("\n" + "; ".join(notes)) if notes else ""
        fig = comparison_figure([records[i] for i in order], [labels[i] for i in order], list(metrics), keys,
                                title=title, rows=rows, legend_title=named[factor])
        paths.append(save_figure(fig, figures_dir / f"compare_{factor}.png"))
    return paths
