"""Running a sweep: its runs trained in worker processes of this machine (the default) or as
Ray core tasks on a cluster (the two differ only in how a run is submitted, waited for and
cancelled: :class:`_ProcessPool`, :class:`_RayTasks`); finished runs are skipped, interrupted
ones resumed, a failing run records ``error.txt`` and the sweep goes on.
"""

from __future__ import annotations

import concurrent.futures as futures
import json
import multiprocessing
import os
import signal
import time
from pathlib import Path
from typing import Any, Callable, Collection


from ..config import Config
from ..errors import ConfigError, VaelabError, option
from ..io import atomic_write_text
from ..schema import yaml_dump
from ..rundir import RunDir
from .sweep_spec import RunSpec, Sweep, load_sweep


def _worker_init(threads: int, init: Callable[[], None] | None, pids=None, gpus=None) -> None:
    """A worker process's start: die with the parent, ``threads`` torch threads, signals left to
    the parent, its PID reported on ``pids`` (a queue: the parent stops workers by PID), and
    with ``gpus`` (a shared counter and the GPU ids) the next GPU in turn as its only one."""
    if gpus is not None:
        assign_gpu(*gpus)
    import torch

    from ..processes import die_with_parent

    die_with_parent()  # a sweep killed with SIGKILL leaves no orphaned worker training on
    torch.set_num_threads(threads)
    # The parent decides when to stop: it sends SIGTERM, which a training run answers by
    # checkpointing and stopping; outside a run it must not kill the worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _stop_worker)
    if pids is not None:
        pids.put(os.getpid())
    if init is not None:
        init()


def local_workers(jobs: int | None, n_runs: int, threads: int | None = None) -> tuple[int, int, list[str]]:
    """The local backend's workers: how many (``jobs``; default the GPU count when there are
    GPUs, else the CPU count, at most one per run), torch threads each (``threads``, default
    the CPUs shared out) and the GPU ids they take in turn (``CUDA_VISIBLE_DEVICES``'s, else
    0..count-1; empty without GPUs)."""
    import torch

    cpus = os.cpu_count() or 1
    count = torch.cuda.device_count()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [i.strip() for i in visible.split(",") if i.strip()][:count] if visible else [str(i) for i in range(count)]
    jobs = max(1, min(jobs or len(ids) or cpus, n_runs))
    return jobs, threads or max(1, cpus // jobs), ids


def assign_gpu(counter, ids: list[str]) -> str:
    """Give this worker process the next GPU of ``ids`` round-robin (``counter``: a shared
    ``multiprocessing.Value`` of the workers started so far) as its only visible one: its runs
    on ``device: auto`` train there. Called before CUDA is initialised in the process."""
    with counter.get_lock():
        index = counter.value
        counter.value += 1
    os.environ["CUDA_VISIBLE_DEVICES"] = ids[index % len(ids)]
    return os.environ["CUDA_VISIBLE_DEVICES"]


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
    start, cpu_start = time.perf_counter(), time.process_time()
    if files.completed_summary() is not None:
        return {"status": "skipped", "seconds": 0.0, "cpu_seconds": 0.0}
    if _STOPPING:
        return {"status": "not started", "seconds": 0.0, "cpu_seconds": 0.0}
    try:
        if files.config_yaml.exists():
            run = resume(run_dir, None if device is None else {"training.device": device}, verbose=False)
        else:
            run = train(config, verbose=False)
        files.error_txt.unlink(missing_ok=True)
        return {"status": "done", "seconds": time.perf_counter() - start,
                "cpu_seconds": time.process_time() - cpu_start, "final": run.summary.get("final")}
    except Exception as exc:  # recorded, and the sweep goes on
        run_dir.mkdir(parents=True, exist_ok=True)
        message = f"{type(exc).__name__}: {exc}"
        atomic_write_text(files.error_txt, message + "\n")
        status = "interrupted" if type(exc).__name__ == "TrainingInterrupted" else "failed"
        _STOPPING = _STOPPING or status == "interrupted"
        return {"status": status, "seconds": time.perf_counter() - start,
                "cpu_seconds": time.process_time() - cpu_start, "error": message}


class _ProcessPool:
    """The local backend's submission: runs go to ``jobs`` spawned worker processes on this
    machine, each with ``threads`` torch threads."""

    def __init__(self, jobs: int, threads: int, worker_init: Callable[[], None] | None,
                 gpu_ids: list[str] | None = None) -> None:
        gpus = f", GPUs {','.join(gpu_ids)} in turn" if gpu_ids else ""
        self.describe = f"{jobs} workers x {threads} threads{gpus}"
        context = multiprocessing.get_context("spawn")
        self._reported, self._pids = context.SimpleQueue(), set()  # each worker puts its PID when it starts
        gpus = (context.Value("i", 0), list(gpu_ids)) if gpu_ids else None
        self.pool = futures.ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init,
                                                initargs=(threads, worker_init, self._reported, gpus))

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
        while not self._reported.empty():
            self._pids.add(self._reported.get())
        for pid in sorted(self._pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:  # it has exited
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
        raise VaelabError(f"{option('ray_address')} {address!r} is not auto or HOST:PORT, e.g. 10.0.0.5:6379")
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
            raise ConfigError(f"{option('cpus_per_run')} must be >= 1, got {cpus_per_run}")
        if gpus_per_run < 0:
            raise ConfigError(f"{option('gpus_per_run')} must be >= 0, got {gpus_per_run}")
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
    from ..config import logger_names
    from ..training.trackers import mlflow_parent_run

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
              ray_address: str | None = None, cpus_per_run: int = 1, gpus_per_run: float = 0.0,
              threads: int | None = None, skip: Collection[str] = (),
              on_result: Callable[[RunSpec, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Run every run of ``sweep`` in ``jobs`` worker processes and write its summary.

    ``skip``: names of runs not to train (their results are kept elsewhere, e.g. by a
    campaign). ``on_result(run, result)`` is called in this process as each run ends (its
    status, ``seconds`` of wall time and ``cpu_seconds`` of its worker's CPU time).

    Torch threads are divided among the workers (``cpu_count // jobs`` each, or ``threads``); on a machine with
    GPUs ``jobs`` defaults to their count and the workers take them in turn
    (:func:`local_workers`, :func:`assign_gpu`). SIGINT/SIGTERM
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
        todo = max(1, len([r for r in sweep.runs if r.name not in skip]))
        jobs, threads, gpu_ids = local_workers(jobs, todo, threads)
        runner = _ProcessPool(jobs, threads, worker_init, gpu_ids)
    try:
        with run_lock(sweep.directory, doing="launching a sweep", kind="sweep"):
            return _run_sweep_locked(sweep, runner, budget, say, originals, verbose, set(skip), on_result)
    finally:
        runner.close()


def sweep_meta(sweep: Sweep, budget: str) -> str:
    """The text of a sweep directory's ``sweep.yaml``: the sweep file, its resolved run names,
    swept keys and budget."""
    return yaml_dump({**sweep.spec, "resolved_runs": [r.name for r in sweep.runs], "keys": sweep.keys,
                           "budget": budget}, sort_keys=False)


def _run_sweep_locked(sweep: Sweep, runner, budget: str, say, originals, verbose: bool, skip: set[str] = frozenset(),
                      on_result: Callable[[RunSpec, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """:func:`run_sweep` once it holds the sweep directory's lock: the runs go to ``runner``
    (closed here when they are done, and again, harmlessly, by the caller)."""
    sweep.directory.mkdir(parents=True, exist_ok=True)
    sweep.files.write_meta(sweep_meta(sweep, budget))
    kept = f" ({len(skip & {r.name for r in sweep.runs})} kept elsewhere, not trained)" if skip else ""
    say(f"sweep {sweep.name}: {len(sweep.runs)} runs{kept}, {runner.describe} -> {sweep.directory}")
    from tqdm.auto import tqdm

    _create_tracker_groups(sweep)
    statuses: dict[str, str] = {}
    runs = [run for run in sweep.runs if run.name not in skip]
    bar = tqdm(total=len(runs), desc="sweep", unit="run", disable=None if verbose else True)
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signal.Signals(signum).name

    for s in originals:
        signal.signal(s, on_signal)
    try:
        pending = {runner.submit(run.config): run for run in runs}
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
                    bar.write(f"[{len(statuses)}/{len(runs)}] {run.name} {result['status']}{detail} "
                              f"({result['seconds']:.1f} s)")
                bar.update(1)
                if on_result is not None:
                    on_result(run, result)
            if stop["signal"]:  # start nothing new; ask running runs to checkpoint and stop
                runner.stop(not_done)
    finally:
        runner.close()
        bar.close()
        for s, handler in originals.items():
            signal.signal(s, handler)
    from .sweep import summarize_sweep  # the tables, which import this module

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
