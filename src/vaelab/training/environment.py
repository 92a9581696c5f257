"""What a run records about where it ran and on what: ``environment.json`` (seed, versions,
device, threads, command line, git commit, the plug-in modules it imported and its own
networks' classes) and, for your own data, ``data.json`` (its sha256, which a resume checks)."""

from __future__ import annotations

import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..config import Config
from ..data import Dataset
from ..errors import CheckpointError, ConfigError, option
from ..rundir import RunDir


def environment(config: Config, device: torch.device, argv: list[str] | None, model=None) -> dict[str, Any]:
    """What a run needs to be reproduced: seed, versions, device, threads, command line, the
    git commit of the working tree it ran in (:func:`git_state`), ``imports`` (the modules a
    later command must import: :func:`plugin_modules`) and, for your own networks, ``networks``
    (their classes and builder, from ``model``)."""
    return {
        "seed": config.seed,
        "vaelab": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(device),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch_threads": torch.get_num_threads(),
        "world_size": _world().size,
        "distributed_backend": _world().backend,
        "command": argv,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
        "imports": plugin_modules(config),
        "networks": _plug_in_networks(config, model),
    }


def plugin_modules(config: Config) -> list[str]:
    """The modules ``vaelab --import`` imported in this process, and the module of the builder
    of ``config``'s network when it is a registered plug-in (unless a script's ``__main__``,
    which no later command can import)."""
    from ..models.networks import BUILDERS
    from ..plugins import imported

    modules = imported()
    builder = BUILDERS.get(config.model.network)
    if builder is not None and builder.__module__ not in (*modules, "__main__"):
        modules.append(builder.__module__)
    return modules


def _qualified(obj) -> str:
    return f"{obj.__module__}.{getattr(obj, '__qualname__', type(obj).__name__)}"


def _plug_in_networks(config: Config, model) -> dict[str, Any] | None:
    """``{"name", "encoder", "decoder", "builder"}`` (classes and builder by qualified name) of
    your own networks, or None for the built-in ones."""
    from ..models.networks import BUILDERS, is_plug_in

    if model is None or not is_plug_in(config.model.network):
        return None
    builder = BUILDERS.get(config.model.network)
    return {"name": config.model.network, "encoder": _qualified(type(model.encoder)),
            "decoder": _qualified(type(model.decoder)), "builder": _qualified(builder) if builder else None}


def _world():
    from .distributed import current

    return current()


def git_state(directory: str | Path | None = None) -> dict[str, Any] | None:
    """The git commit of the working tree holding ``directory`` (default: the current one) and
    whether it has uncommitted changes: ``{"commit", "dirty", "root"}``, or None outside a
    repository (or without git)."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        status = git("status", "--porcelain", "--untracked-files=no")
        root = git("rev-parse", "--show-toplevel")
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip()), "root": root.stdout.strip()}


def environment_json(run_dir: RunDir, config: Config, device, argv, resuming: bool, state, changes,
                     model=None) -> dict[str, Any]:
    """environment.json: a new run's, or (resuming) the original one with this resume appended
    to ``resumes``."""
    current = environment(config, device, argv, model)
    previous = None
    if resuming:
        try:
            previous = run_dir.read_environment()
        except CheckpointError:  # damaged: this resume's record starts it again
            previous = None
    if not isinstance(previous, dict):
        if not resuming:
            return current
        previous = {**current, "command": None, "started": None}
    entry = {k: current[k] for k in ("command", "started", "device", "torch_threads", "world_size",
                                     "distributed_backend", "vaelab", "torch")}
    entry["from_epoch"] = state.epoch
    entry["from_step"] = state.position.step if state.position else 0
    entry["changed"] = {k: {"from": old, "to": new} for k, (old, new) in sorted((changes or {}).items())}
    previous["resumes"] = [*previous.get("resumes", []), entry]
    return previous


def check_data_source(run_dir: RunDir, dataset: Dataset, resuming: bool) -> None:
    """For your own data, compare its sha256 with the one ``run_dir/data.json`` recorded when
    the run started (only when ``resuming``).

    Raises:
        ConfigError: the data changed since the run started (naming both digests).
    """
    recorded = run_dir.data_json
    if not resuming or dataset.spec.sha256 is None or not recorded.is_file():
        return
    try:
        before = run_dir.read_data_record() or {}
    except CheckpointError:
        raise ConfigError(f"{recorded} is damaged; it records the run's data: restore it or start a new run") from None
    if before.get("sha256") != dataset.spec.sha256:
        raise ConfigError(
            f"the data changed since the run started: {dataset.spec.source} has sha256 "
            f"{dataset.spec.sha256[:16]}..., the run recorded {str(before.get('sha256'))[:16]}... "
            f"({recorded}); restore the original data or start a new run"
        )


def write_data_source(run_dir: RunDir, dataset: Dataset) -> None:
    """Record your own data's path, sha256 and shapes in ``run_dir/data.json`` (built-in
    datasets are verified by their own checksums and need none)."""
    if dataset.spec.sha256 is None or run_dir.data_json.is_file():
        return
    from ..rundir import write_json

    info = {"path": dataset.spec.source, "sha256": dataset.spec.sha256, "image_shape": list(dataset.spec.image_shape),
            "classes": list(dataset.spec.classes), "train_examples": len(dataset.train),
            "test_examples": len(dataset.test)}
    write_json(run_dir.data_json, info)


def busy_machine_hint(device: torch.device) -> str | None:
    """A one-line hint when the CPU is oversubscribed: the load average exceeds the cores."""
    import os

    if device.type != "cpu" or not hasattr(os, "getloadavg"):
        return None
    cores, load = os.cpu_count() or 1, os.getloadavg()[0]
    if load <= cores:
        return None
    threads = torch.get_num_threads()
    advice = (f"{option('threads', 1)} (or OMP_NUM_THREADS=1) often helps" if threads > 1
              else "stop the other processes for full speed")
    return (f"note: the machine is busy (load average {load:.1f} on {cores} cores) and torch uses "
            f"{threads} thread{'s' if threads > 1 else ''}: epochs will be slower than usual; {advice}")
