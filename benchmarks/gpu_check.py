"""GPU check: vaelab's GPU path stage by stage, each stage in its own process under its own time
limit, into one JSON that is written whatever happens (``bash benchmarks/gpu_check.sh``, under
8 minutes on one H100).

Stages, in order (:data:`STAGES`):

- ``environment``: every dependency of vaelab imports (its version), torch's CUDA, cuDNN and NCCL,
  the GPUs, a product on the first; the data (MNIST from ``$VAELAB_DATA_DIR``, else a synthetic
  MNIST-shaped set written locally: the check needs no network beyond the package index);
- ``train-fp32``, ``train-bf16``, ``train-fp16``: the default model (784-400-20, batch 128) for
  ``--epochs`` epochs: seconds per epoch, test -ELBO, peak GPU memory and host syncs per step
  (``torch.cuda.set_sync_debug_mode``; on the CPU, the tensor methods that read values);
- ``evaluate``: the IS-NLL with K = ``--k`` of the fp32 run (examples per second, the chunk the
  device got, host syncs);
- ``resume``: a conv VAE with dynamic binarisation and a weight average, stopped in the middle
  of epoch 2 and resumed, against the same run uninterrupted (exact: equal metrics);
- ``conv``: the conv VAE's speed;
- ``recipe-burda-vae``, ``recipe-best-1h``: the benchmark recipes (configs/benchmarks; ELBO and
  IWAE with k = 5, both with the weight average) for a few epochs: speed and syncs per step;
- ``ddp``: 2 ranks with torchrun (NCCL with 2 GPUs or more; gloo on the CPU);
- ``compile-fp32``, ``compile-bf16``: ``training.compile`` (Inductor; the eager backend on the
  CPU) with the number of graphs compiled.

Every stage is recorded as ``{"status": "run", "result": ...}``, ``{"status": "skipped",
"reason": ...}`` or ``{"status": "failed", "error": ...}`` with its seconds, its limit and the
tail of its log; the JSON is rewritten after each stage. A stage that runs past its limit (or
past what is left of ``--budget``) is stopped with every process it started (torchrun's workers
included, which run in sessions of their own) and recorded as failed.

    python -m benchmarks.gpu_check                                  # CUDA: results/gpu_check.json
    python -m benchmarks.gpu_check --device cpu --quick --output OUT.json   # smoke run, tiny data
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

RESULTS = Path(__file__).resolve().with_name("results")
REPO = Path(__file__).resolve().parents[1]
MIB = 2 ** 20


# --- stages (each runs in a child process) -------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One measurement: ``run(ctx) -> result dict`` in a child process, within ``limit`` seconds
    (``quick_limit`` in a smoke run); ``needs`` says why it cannot run here (None: it can)."""

    name: str
    run: Callable[[dict], dict]
    limit: float
    quick_limit: float = 90.0
    needs: Callable[[dict], str | None] = lambda ctx: None


def _needs_environment(ctx: dict) -> str | None:
    env = ctx["stages"].get("environment", {})
    if env.get("status") != "run":
        return "the environment stage did not pass"
    return None


def _needs(stage: str) -> Callable[[dict], str | None]:
    def check(ctx: dict) -> str | None:
        if ctx["stages"].get(stage, {}).get("status") != "run":
            return f"it uses the run of {stage}, which did not finish"
        return _needs_environment(ctx)
    return check


def _needs_two_devices(ctx: dict) -> str | None:
    problem = _needs_environment(ctx)
    if problem or ctx["device"] == "cpu":
        return problem
    gpus = ctx["stages"]["environment"]["result"]["cuda_devices"]
    return None if gpus >= 2 else f"{gpus} GPU here; 2-rank DDP needs 2"


class HostReads:
    """Counts the host's reads of device values while counting: on CUDA the synchronising calls
    ``torch.cuda.set_sync_debug_mode('warn')`` reports; on the CPU the tensor methods that hand a
    value to Python (``item``, ``tolist``, ``__float__``, ``__int__``, ``__bool__``)."""

    METHODS = ("item", "tolist", "__float__", "__int__", "__bool__")

    def __init__(self, device: str):
        self.device, self.count, self._undo = device, 0, None

    def start(self) -> None:
        import torch

        if self.device.startswith("cuda"):
            catcher = warnings.catch_warnings(record=True)
            caught = catcher.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")

            def stop():
                torch.cuda.set_sync_debug_mode("default")
                catcher.__exit__(None, None, None)
                self.count += sum("synchroniz" in str(w.message) for w in caught)
        else:
            real = {name: getattr(torch.Tensor, name) for name in self.METHODS}

            def counted(name):
                def method(tensor, *a, **k):
                    self.count += 1
                    return real[name](tensor, *a, **k)
                return method

            for name in self.METHODS:
                setattr(torch.Tensor, name, counted(name))

            def stop():
                for name, method in real.items():
                    setattr(torch.Tensor, name, method)
        self._undo = stop

    def stop(self) -> None:
        if self._undo is not None:
            self._undo()
            self._undo = None


def _sync_counter(device: str):
    """A callback that counts host reads during the training steps of each epoch."""
    from vaelab.training import Callback

    class CountSteps(Callback):
        def __init__(self):
            self.reads, self.steps = HostReads(device), 0

        def on_epoch_start(self, trainer, epoch):
            self.reads.start()

        def on_train_epoch_end(self, trainer, epoch):
            self.reads.stop()
            self.steps += len(trainer.batches)

        def result(self) -> dict:
            return {"host_syncs": self.reads.count, "steps": self.steps,
                    "host_syncs_per_step": self.reads.count / max(self.steps, 1)}

    return CountSteps()


def _memory(ctx: dict) -> dict | None:
    import torch

    if not ctx["device"].startswith("cuda"):
        return None
    return {"allocated_mib": torch.cuda.max_memory_allocated() / MIB,
            "reserved_mib": torch.cuda.max_memory_reserved() / MIB}


def _train(ctx: dict, name: str, config: dict | None = None, callbacks=(), **training) -> tuple[Any, dict]:
    """Train ``name`` in the work directory (the default model unless ``config``) and return the
    run and its row: seconds per epoch, test -ELBO, host syncs per step, peak memory."""
    import torch

    from vaelab import train

    counter = _sync_counter(ctx["device"])
    config = json.loads(json.dumps(config or {}))
    config.update({"name": name, "output_dir": ctx["work"]})
    config["data"] = {**config.get("data", {}), **ctx["data"]}
    config["training"] = {**config.get("training", {}), "device": ctx["device"], "epochs": ctx["epochs"],
                          "progress": False, "logger": "csv", "max_minutes": None, **training}
    config["figures"] = {**config.get("figures", {}), "draw_at_end": False}  # timed: the loop, not the figures
    if ctx["device"].startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    run = train(config, verbose=False, callbacks=[counter, *callbacks])
    seconds = [row["train_seconds"] for row in run.history]
    row = {"epochs": len(seconds), "seconds_per_epoch": sum(seconds) / len(seconds), "epoch_seconds": seconds,
           "seconds_per_epoch_after_first": sum(seconds[1:]) / (len(seconds) - 1) if len(seconds) > 1 else None,
           "test_neg_elbo": run.summary["final"]["neg_elbo"], **counter.result(), "gpu_memory_peak": _memory(ctx)}
    return run, row


def stage_environment(ctx: dict) -> dict:
    import importlib
    import importlib.metadata as metadata

    import numpy as np

    out: dict[str, Any] = {"python": sys.version.split()[0], "dependencies": {}}
    modules = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            modules.setdefault(dist.lower().replace("_", "-"), []).append(module)
    requirements = [r for r in (metadata.requires("vaelab") or []) if "extra ==" not in r]
    missing = []
    for requirement in requirements:
        name = requirement.split(";")[0].strip()
        for sep in "<>=!~[ ":
            name = name.split(sep)[0]
        key = name.lower().replace("_", "-")
        try:
            version = metadata.version(name)
            for module in sorted(m for m in modules.get(key, [name.replace("-", "_")]) if not m.startswith("_")):
                importlib.import_module(module)
            out["dependencies"][name] = version
        except Exception as exc:  # noqa: BLE001 - every failing dependency is named in the error
            missing.append(f"{name} ({type(exc).__name__}: {exc})")
    import torch
    import torch.distributed as dist

    import vaelab

    out.update({"vaelab": vaelab.__version__, "torch": torch.__version__, "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(), "cuda_available": torch.cuda.is_available(),
                "cuda_devices": torch.cuda.device_count(), "nccl": dist.is_available() and dist.is_nccl_available(),
                "gloo": dist.is_available() and dist.is_gloo_available()})
    if missing:
        raise RuntimeError(f"missing or broken dependencies: {'; '.join(missing)}")
    if ctx["device"].startswith("cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError(f"no CUDA device here (torch {torch.__version__}: torch.cuda.is_available() is False); "
                               "run the check on a machine with an NVIDIA GPU and a CUDA build of torch, or "
                               "--device cpu --quick for the smoke run")
        out["gpus"] = [{"name": torch.cuda.get_device_name(i), "capability": list(torch.cuda.get_device_capability(i)),
                        "memory_gib": torch.cuda.get_device_properties(i).total_memory / 2 ** 30}
                       for i in range(torch.cuda.device_count())]
        out["bf16_supported"] = torch.cuda.is_bf16_supported()
        a = torch.randn(256, 256, device="cuda")
        out["matmul_ok"] = bool(torch.isfinite(a @ a).all())
    out["data"] = _prepare_data(ctx, np)
    return out


def _prepare_data(ctx: dict, np) -> str:
    """Write the synthetic data set when the context names one; say which data the stages use."""
    path = ctx["data"]["dataset"]
    if not path.endswith(".npz"):
        return f"{path} from {os.environ.get('VAELAB_DATA_DIR') or ctx.get('data_dir')}"
    n_train, n_test = (256, 64) if ctx["quick"] else (60000, 10000)
    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        yy, xx = np.mgrid[:28, :28]
        centres = 6 + 16 * rng.random((n, 2), dtype=np.float32)
        images = np.empty((n, 28, 28), dtype=np.uint8)
        for start in range(0, n, 5000):  # bounded temporaries
            c = centres[start:start + 5000]
            blobs = np.exp(-((yy - c[:, :1, None]) ** 2 + (xx - c[:, 1:, None]) ** 2) / 18.0)
            images[start:start + 5000] = (255 * blobs).astype(np.uint8)
        arrays[f"x_{split}"], arrays[f"y_{split}"] = images, (np.arange(n) % 10).astype(np.int64)
    np.savez(path, **arrays)
    return f"synthetic MNIST-shaped blobs ({n_train} train, {n_test} test images; no MNIST here): {path}"


def stage_train(precision: str, compile_: bool = False) -> Callable[[dict], dict]:
    def run(ctx: dict) -> dict:
        from torch._dynamo.utils import counters

        import vaelab.training.runs as runs

        if ctx["device"] == "cpu":
            runs.COMPILE_BACKEND = "eager"  # no compiler needed: torch.compile's graphs, run eagerly
        name = f"{'compile' if compile_ else 'train'}-{precision}"
        counters.clear()
        _, row = _train(ctx, name, {"training": {"batch_size": 128}}, precision=precision, compile=compile_)
        row.update({"precision": precision, "compile": compile_,
                    "compile_backend": runs.COMPILE_BACKEND if compile_ else None})
        if compile_:
            row["graphs"] = counters["stats"]["unique_graphs"]
        return row
    return run


def stage_evaluate(ctx: dict) -> dict:
    import torch

    from vaelab.data import load_dataset
    from vaelab.evaluation.loglik import default_chunk_size, importance_log_likelihood, mean_and_stderr
    from vaelab.rundir import RunDir
    from vaelab.training import load_model
    from vaelab.training.checkpoint import read_checkpoint_config

    run_dir = RunDir(Path(ctx["work"]) / "train-fp32")
    device = torch.device(ctx["device"])
    model = load_model(run_dir.path, "last").to(device)
    images = load_dataset(read_checkpoint_config(run_dir.checkpoint("last")).data).test.images
    chunk = default_chunk_size(model, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    reads = HostReads(ctx["device"])
    reads.start()
    start = time.perf_counter()
    try:
        ll = importance_log_likelihood(model, images, ctx["k"], seed=0, device=device)  # results on the host
    finally:
        seconds = time.perf_counter() - start
        reads.stop()
    nll, stderr = mean_and_stderr(ll.nll)
    return {"k": ctx["k"], "examples": len(images), "nll": nll, "nll_stderr": stderr, "seconds": seconds,
            "examples_per_second": len(images) / seconds, "chunk_size": chunk, "host_syncs": reads.count,
            "gpu_memory_peak": _memory(ctx)}


CONV = {"model": {"network": "conv", "hidden": [256], "latent_dim": 16}, "data": {"binarize": "dynamic"},
        "training": {"batch_size": 128, "ema_decay": 0.99}}
"""The conv VAE (convolutions of 32 and 64 channels; 8 and 16 in a smoke run)."""


def _conv(ctx: dict) -> dict:
    if not ctx["quick"]:
        return CONV
    return {**CONV, "model": {**CONV["model"], "conv_channels": [8, 16], "hidden": [32]}}


def stage_conv(ctx: dict) -> dict:
    _, row = _train(ctx, "conv", _conv(ctx))
    return row


def stage_resume(ctx: dict) -> dict:
    from vaelab.errors import TrainingInterrupted
    from vaelab import resume
    from vaelab.training import Callback

    class StopInEpoch2(Callback):
        def on_batch_end(self, trainer, step):
            if step.epoch == 2 and step.position.step == 1:
                trainer.request_stop("stopped by the check")

    epochs = max(2, ctx["epochs"] // 2)
    straight, _ = _train({**ctx, "epochs": epochs}, "resume-straight", _conv(ctx))
    try:
        _train({**ctx, "epochs": epochs}, "resume-stopped", _conv(ctx), callbacks=[StopInEpoch2()])
        raise RuntimeError("the run was not stopped in epoch 2")
    except TrainingInterrupted:
        pass
    resumed = resume(Path(ctx["work"]) / "resume-stopped", verbose=False)
    a = [{k: v for k, v in row.items() if k != "train_seconds"} for row in straight.history]
    b = [{k: v for k, v in row.items() if k != "train_seconds"} for row in resumed.history]
    worst = max(abs(x[k] - y[k]) for x, y in zip(a, b) for k in x) if len(a) == len(b) else None
    return {"epochs": epochs, "stopped_at": "epoch 2, step 1", "exact": a == b, "max_abs_difference": worst,
            "model": "conv, dynamic binarisation, weight average 0.99"}


def stage_recipe(name: str) -> Callable[[dict], dict]:
    def run(ctx: dict) -> dict:
        import yaml

        config = yaml.safe_load((REPO / "configs" / "benchmarks" / f"{name}.yaml").read_text())
        config["training"].pop("max_minutes", None)
        if config["training"].get("lr_schedule_span") == "time":  # the cosine over the hour needs one
            config["training"]["lr_schedule_span"] = "epochs"
        _, row = _train({**ctx, "epochs": ctx["recipe_epochs"]}, f"recipe-{name}", config)
        row["objective"] = config["objective"]
        return row
    return run


def stage_ddp(ctx: dict) -> dict:
    out = Path(ctx["work"])
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m",
               "vaelab", "train", "--device", "cuda" if ctx["device"].startswith("cuda") else "cpu",
               "--epochs", str(1 if ctx["quick"] else ctx["epochs"]), "--batch-size", "128", "--no-progress",
               "--logger", "csv", "--output-dir", str(out), "--name", "ddp2", "--quiet",
               "--dataset", ctx["data"]["dataset"]]
    if ctx.get("data_dir"):
        command += ["--data-dir", ctx["data_dir"]]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)  # the stage's limit stops it
    if done.returncode != 0:
        raise RuntimeError(f"torchrun exited with {done.returncode}: {done.stderr.strip()[-1500:]}")
    summary = json.loads((out / "ddp2" / "summary.json").read_text())
    environment = json.loads((out / "ddp2" / "environment.json").read_text())
    return {"world_size": environment.get("world_size"), "backend": environment.get("distributed_backend"),
            "seconds_per_epoch": summary["seconds_per_epoch"], "test_neg_elbo": summary["final"]["neg_elbo"]}


STAGES = [
    Stage("environment", stage_environment, 180, 60),
    Stage("train-fp32", stage_train("fp32"), 60, needs=_needs_environment),
    Stage("train-bf16", stage_train("bf16"), 60, needs=_needs_environment),
    Stage("train-fp16", stage_train("fp16"), 60, needs=_needs_environment),
    Stage("evaluate", stage_evaluate, 60, needs=_needs("train-fp32")),
    Stage("resume", stage_resume, 90, needs=_needs_environment),
    Stage("conv", stage_conv, 60, needs=_needs_environment),
    Stage("recipe-burda-vae", stage_recipe("burda-vae"), 45, needs=_needs_environment),
    Stage("recipe-best-1h", stage_recipe("best-1h"), 45, needs=_needs_environment),
    Stage("ddp", stage_ddp, 90, 120, needs=_needs_two_devices),
    Stage("compile-fp32", stage_train("fp32", compile_=True), 180, needs=_needs_environment),
    Stage("compile-bf16", stage_train("bf16", compile_=True), 180, needs=_needs_environment),
]
"""Every stage, in the order they run: the ones whose numbers matter most first, the slowest
(compilation) last."""


# --- running a stage in a child process ----------------------------------------------------------


def _stage_main(name: str, ctx: dict, result_path: str, fault: str | None) -> int:
    """The child's side: run stage ``name`` and write ``{"result": ...}`` or ``{"error": ...}``
    to ``result_path``; returns the exit status."""
    stage = next(s for s in STAGES if s.name == name)
    try:
        if fault == "raise":
            raise RuntimeError(f"a fault injected into {name}")
        if fault == "hang":  # a process of its own session (as torchrun's workers), then no end
            sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", ctx["work"]],
                                       start_new_session=True)
            print(f"started process {sleeper.pid}", flush=True)
            time.sleep(3600)
        payload = {"result": stage.run(ctx)}
        status = 0
    except BaseException as exc:  # noqa: BLE001 - recorded, never raised
        traceback.print_exc()
        payload = {"error": f"{type(exc).__name__}: {exc}".strip()[:2000]}
        status = 1
    Path(result_path).write_text(json.dumps(payload, default=str))
    return status


class Child:
    """A stage's process: forked from this one (the CPU: torch is imported once) or started
    afresh (CUDA, which cannot be used in a forked process); in a session of its own, its
    output in ``log``."""

    def __init__(self, name: str, ctx: dict, result: Path, log: Path, fault: str | None, fork: bool):
        if fork:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:  # the child
                status = 1
                try:
                    os.setsid()
                    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                    os.dup2(fd, 1)
                    os.dup2(fd, 2)
                    status = _stage_main(name, ctx, str(result), fault)
                finally:
                    os._exit(status)
            self.pid, self.proc = pid, None
        else:
            command = [sys.executable, "-m", "benchmarks.gpu_check", "--run-stage", name, "--context",
                       json.dumps(ctx), "--result", str(result)] + (["--fault", fault] if fault else [])
            with open(log, "w") as out:
                self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=REPO,
                                             start_new_session=True)
            self.pid = self.proc.pid
        self.returncode: int | None = None

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if still running after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.returncode is None and time.monotonic() < deadline:
            if self.proc is not None:
                self.returncode = self.proc.poll()
            else:
                try:
                    done, status = os.waitpid(self.pid, os.WNOHANG)
                except ChildProcessError:  # reaped already (stop_processes): it was stopped
                    done, status = self.pid, -signal.SIGKILL
                if done:
                    self.returncode = os.waitstatus_to_exitcode(status) if status >= 0 else status
            if self.returncode is None:
                time.sleep(0.05)
        return self.returncode


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids of every process (Linux ``/proc``; empty elsewhere)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (children, theirs, ...), whatever their session."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is dead
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop_processes(pids: list[int], grace: float = 5.0) -> None:
    """SIGTERM to ``pids`` (torchrun closes its workers on it), SIGKILL to what is left after
    ``grace`` seconds; zombies among this process's children are reaped."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            _reap()
            time.sleep(0.05)
    _reap()


def _reap() -> None:
    """Collect the exit status of this process's ended children (no zombies left)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _become_subreaper() -> None:
    """Orphans of the stages (a torchrun whose parent died) become this process's children, so
    that they are found and stopped (Linux ``prctl(PR_SET_CHILD_SUBREAPER)``; nothing elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)


def _tail(path: Path, lines: int = 15) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def run_stage(stage: Stage, ctx: dict, limit: float, fault: str | None, fork: bool) -> dict:
    """Run ``stage`` in a child process within ``limit`` seconds: its record (never raises)."""
    work = Path(ctx["work"])
    result, log = work / f"{stage.name}.result.json", work / f"{stage.name}.log"
    start = time.monotonic()
    before = set(descendants(os.getpid()))
    try:
        child = Child(stage.name, ctx, result, log, fault, fork)
    except Exception as exc:  # noqa: BLE001 - a stage that cannot start is recorded
        return {"status": "failed", "error": f"could not start: {type(exc).__name__}: {exc}", "seconds": 0.0,
                "limit_seconds": limit}
    status = child.wait(limit)
    timed_out = status is None
    # everything the stage started and left behind: below its process, or orphaned to this one
    left = [pid for pid in [child.pid, *descendants(child.pid), *descendants(os.getpid())] if pid not in before]
    stop_processes(list(dict.fromkeys(left)))
    if child.returncode is None:
        child.wait(5.0)
    record: dict[str, Any] = {"seconds": round(time.monotonic() - start, 2), "limit_seconds": limit}
    try:
        payload = json.loads(result.read_text())
    except (OSError, ValueError):
        payload = {}
    if timed_out:
        record.update(status="failed", error=f"timed out after {limit:.0f} s; its processes were stopped")
    elif "result" in payload:
        record.update(status="run", result=payload["result"])
    else:
        record.update(status="failed", error=payload.get("error") or f"exited with status {status} without a result")
    if record["status"] != "run":
        record["log_tail"] = _tail(log)
    return record


# --- the check -------------------------------------------------------------------------------------


def default_output(quick: bool) -> Path:
    return RESULTS / ("quick" if quick else "") / "gpu_check.json"


def write(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def run_check(args: argparse.Namespace, stages: list[Stage] = STAGES) -> dict:
    """Run ``stages`` into the JSON at ``args.output`` (rewritten after each); return it."""
    output = Path(args.output) if args.output else default_output(args.quick)
    selected = set(args.stages.split(",")) if args.stages else None
    limits = dict(item.split("=", 1) for item in args.time_limit)
    faults = dict(item.split("=", 1) for item in args.inject_fault)
    device = args.device
    fork = device == "cpu"  # CUDA cannot be used in a forked process: fresh interpreters there
    if fork:
        import torch  # noqa: F401  (imported once here, before the stages fork)

        import vaelab.evaluation.run  # noqa: F401
        import vaelab.training  # noqa: F401
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vaelab-gpu-check-") as work:
        data_dir = args.data_dir or os.environ.get("VAELAB_DATA_DIR")
        mnist = data_dir and (Path(data_dir) / "mnist").is_dir() and not args.quick
        data = {"dataset": "mnist", "data_dir": data_dir} if mnist else {"dataset": str(Path(work) / "synthetic.npz")}
        ctx = {"device": device, "quick": args.quick, "work": work, "data": data,
               "data_dir": data_dir if mnist else None,
               "epochs": args.epochs or (1 if args.quick else 5), "recipe_epochs": 1 if args.quick else 3,
               "k": args.k or (20 if args.quick else 1000), "stages": {}}
        payload = {"what": "vaelab's GPU path stage by stage (benchmarks/gpu_check.py): seconds, losses in nats "
                           "per example, host syncs, peak GPU memory", "device": device, "quick": args.quick,
                   "started": time.strftime("%Y-%m-%d %H:%M:%S"), "budget_seconds": args.budget,
                   "epochs": ctx["epochs"], "k": ctx["k"], "stages": ctx["stages"]}
        for stage in stages:
            ctx["stages"][stage.name] = {"status": "pending"}
        write(output, payload)
        for stage in stages:
            left = args.budget - (time.monotonic() - start)
            reason = None
            if selected is not None and stage.name not in selected:
                reason = "not among --stages"
            elif left < 5:
                reason = f"out of time: the check's budget of {args.budget:.0f} s is spent"
            else:
                reason = stage.needs(ctx)
            if reason:
                ctx["stages"][stage.name] = {"status": "skipped", "reason": reason}
            else:
                limit = float(limits.get(stage.name, stage.quick_limit if args.quick else stage.limit))
                ctx["stages"][stage.name] = {"status": "running"}
                write(output, payload)
                try:
                    record = run_stage(stage, dict(ctx), min(limit, left), faults.get(stage.name), fork)
                except Exception as exc:  # noqa: BLE001 - the check's own failure is a stage's record too
                    record = {"status": "failed", "error": f"the check failed running it: {type(exc).__name__}: {exc}"}
                ctx["stages"][stage.name] = record
            payload["wall_seconds"] = round(time.monotonic() - start, 1)
            write(output, payload)
            print(_line(stage.name, ctx["stages"][stage.name]), flush=True)
    payload["output"] = str(output)
    return payload


def _line(name: str, record: dict) -> str:
    status = record["status"]
    if status == "skipped":
        return f"{name:18s} skipped: {record['reason']}"
    if status == "failed":
        return f"{name:18s} FAILED after {record['seconds']:.0f} s: {record['error'].splitlines()[0][:200]}"
    r = record["result"]
    parts = [f"{record['seconds']:.0f} s"]
    for key, fmt in (("seconds_per_epoch", "{:.2f} s/epoch"), ("test_neg_elbo", "-ELBO {:.2f}"),
                     ("host_syncs_per_step", "{:.3f} syncs/step"), ("nll", "IS-NLL {:.2f}"),
                     ("examples_per_second", "{:.0f} examples/s"), ("graphs", "{} graphs"), ("exact", "exact: {}")):
        if r.get(key) is not None:
            parts.append(fmt.format(r[key]))
    return f"{name:18s} ok: " + ", ".join(parts)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (the check) or cpu (with --quick: the smoke run)")
    parser.add_argument("--quick", action="store_true", help="tiny synthetic data, 1 epoch, K = 20")
    parser.add_argument("--output", default=None, help="the JSON (default benchmarks/results/gpu_check.json, "
                                                       "results/quick/gpu_check.json with --quick)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of each training stage (default 5)")
    parser.add_argument("--k", type=int, default=None, help="importance samples of the IS-NLL (default 1000)")
    parser.add_argument("--data-dir", default=None, help="where mnist/ is (default $VAELAB_DATA_DIR)")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds for the whole check; stages that "
                                                                    "would start later are skipped")
    parser.add_argument("--stages", default=None, help="run only these stages (comma-separated names)")
    parser.add_argument("--time-limit", action="append", default=[], metavar="STAGE=SECONDS",
                        help="another time limit for a stage")
    parser.add_argument("--inject-fault", action="append", default=[], metavar="STAGE=raise|hang",
                        help="make a stage fail (to check that the failure is recorded and cleaned up)")
    parser.add_argument("--run-stage", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--context", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--result", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--fault", default=None, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.run_stage:  # a stage's own process (CUDA)
        return _stage_main(args.run_stage, json.loads(args.context), args.result, args.fault)
    _become_subreaper()
    payload = run_check(args)
    failed = [name for name, r in payload["stages"].items() if r["status"] == "failed"]
    print(f"wrote {payload['output']} ({payload['wall_seconds']:.0f} s)" + (f"; failed: {', '.join(failed)}"
                                                                         if failed else ""))
    env = payload["stages"].get("environment", {})
    if env.get("status") == "failed":
        print(f"gpu_check: {env['error'].split(': ', 1)[-1]}", file=sys.stderr)
        return 2
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
