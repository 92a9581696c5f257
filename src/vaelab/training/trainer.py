"""The training loop and the run directory it fills.

A run directory (``<output_dir>/<name>/``) holds everything needed to rebuild and resume the
run::

    config.yaml            the fully resolved config (loadable with ``vaelab train --config``)
    environment.json       seed, versions of Python/torch/numpy/vaelab, device, threads, command, git commit
    data.json              your own data only: its path, sha256, shapes (``--resume`` refuses changed data)
    data.npz               data given to ``vaelab.train(config, data=...)`` from Python
    metrics.csv            one row per epoch: train and evaluation recon/KL/negative ELBO, seconds
    summary.json           best epoch, final metrics, seconds per epoch (written at the end)
    checkpoints/last.safetensors, checkpoints/best.safetensors
    tensorboard/           TensorBoard event files (scalars per epoch, image grids, config as hparams)
    trackers.json          --logger mlflow/wandb: the tracker runs' ids (a resumed run continues them)
    figures/*.png          every figure of :func:`vaelab.plots.plot_run` (of the last model)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import platform
import random
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__
from ..config import Config, ObjectiveConfig, TrainingConfig, load_config
from ..data import Dataset, InMemoryBatches, is_user_dataset, load_dataset, save_arrays
from ..errors import CheckpointError, ConfigError, TrainingError, TrainingInterrupted, VaelabError
from ..evaluation import evaluate_elbo
from ..io import atomic_write_text
from ..models import VAE, build_model
from ..objectives import EXTRA_TERMS, Objective, build_objective, kl_weight
from ..runtime import (check_model_fits_memory, flush_denormals, match_optimizer_state_layout, place_model,
                       resolve_device)
from .optim import clip_gradients, make_optimizer, make_scheduler, step_scheduler
from .checkpoint import (EpochPosition, TrainingState, encode_checkpoint, read_checkpoint, restore_rng,
                         write_checkpoint)
from .lock import run_lock
from .trackers import Trackers, flatten, logger_names

TERMS = ("recon", "kl", "neg_elbo")


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch, numpy and python's RNGs; return the data-order/binarisation generator."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class Run:
    """A finished (or stopped) run: its directory, config, per-epoch history and summary."""

    run_dir: Path
    config: Config
    history: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)

    def load_model(self, which: str = "best") -> VAE:
        """The model of checkpoint ``which`` ('best' or 'last'), on the CPU, in eval mode."""
        return load_model(self.run_dir, which)

    @property
    def figures(self) -> list[Path]:
        return sorted((self.run_dir / "figures").glob("*.png"))


def load_model(run_dir: str | Path, which: str = "best") -> VAE:
    """Rebuild a run's model from ``run_dir/checkpoints/<which>.safetensors`` (with the
    checkpoint's own config, whatever ``config.yaml`` says).

    Raises:
        CheckpointError: missing or corrupt checkpoint, weights that do not fit the config, or
            weights that are not finite (NaN or infinite).
    """
    checkpoint = read_checkpoint(Path(run_dir) / "checkpoints" / f"{which}.safetensors")
    image_shape = tuple(checkpoint.config.get("_image_shape", ()))
    num_classes = checkpoint.config.get("_num_classes")
    config = checkpoint_config(checkpoint)
    model = build_model(config.model, image_shape, num_classes)
    try:
        model.load_state_dict(checkpoint.model_state)
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint.path}: weights do not fit the model of its config ({exc})") from None
    for name, value in checkpoint.model_state.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            from .checkpoint import invalid_field

            raise invalid_field(checkpoint.path, f"model.{name}", "holds non-finite values (NaN or inf)")
    return model.eval()


def read_checkpoint_config(path: str | Path) -> Config:
    """The config stored in the checkpoint at ``path`` (only its metadata is read).

    Raises:
        CheckpointError: the file is missing or unreadable, or its config is invalid.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the run directory")
    try:
        with safe_open(str(path), framework="pt") as f:
            values = json.loads((f.metadata() or {})["config"])
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({exc}); it is corrupt or truncated") from None

    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: checkpoint metadata is damaged (its config is not a mapping)")
    return checkpoint_config(values, path)


def train(config: Config | dict | str | Path, verbose: bool = True, argv: list[str] | None = None,
          data=None) -> Run:
    """Train a VAE as described by ``config`` and return the finished :class:`Run`.

    Args:
        config: a :class:`Config`, a dict of its values, or the path of a YAML config.
        verbose: print one line per epoch, a progress bar (on a terminal) and a summary.
        argv: the command line, recorded in ``environment.json``.
        data: your own data instead of ``config.data.dataset``: ``(x_train, x_test)`` or
            ``(x_train, x_test, y_train, y_test)``, numpy arrays or tensors, images ``(N, H, W)``,
            ``(N, H, W, C)`` or ``(N, C, H, W)``, uint8 0..255 or float in [0, 1], labels ``(N,)``
            integers. They are checked and kept in the run directory as ``data.npz``, which
            ``data.dataset`` then names (so evaluation, figures and resume read them back).

    Raises:
        ConfigError: invalid config, or the run directory already holds a run.
        DataError: the dataset cannot be found or is corrupt, or ``data`` is invalid (one line
            saying what is wrong).
        TrainingError: the loss became non-finite.
    """
    if isinstance(config, (str, Path)):
        config = load_config(config)
    elif isinstance(config, dict):
        config = Config.from_dict(config)
    if data is not None and config.name is None:
        config = config.replace({"name": _default_name(config, "data")})
    elif is_user_dataset(config.data.dataset):  # an absolute path, so the run works from any directory
        config = config.replace({"data.dataset": str(Path(config.data.dataset).expanduser().resolve())})
    run_dir = Path(config.output_dir) / (config.name or _default_name(config))
    with run_lock(run_dir):
        if (run_dir / "config.yaml").exists():
            raise ConfigError(
                f"run directory {run_dir} already holds a run; continue it with --resume {run_dir} "
                "or choose another --name"
            )
        if data is not None:
            path = save_arrays(run_dir / "data.npz", data)
            config = config.replace({"data.dataset": str(path.resolve())})
        return _fit(config, run_dir, checkpoint=None, verbose=verbose, argv=argv)


RESUME_OVERRIDABLE = {
    # where and how a run is shown: no effect on the numbers
    "training.epochs", "training.device", "training.progress", "data.data_dir",
    # the fixes a non-finite loss suggests (a lower learning rate, clipping, skipping steps)
    "training.learning_rate", "training.clip_norm", "training.clip_value", "training.nonfinite",
    "training.max_skipped_steps",
}
"""The config keys a resume may change (``--epochs`` etc. or an edit of ``config.yaml``)."""


def config_differences(a: Config, b: Config) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (value in ``a``, value in ``b``) for every field where they differ."""
    fa, fb = flatten(a.to_dict()), flatten(b.to_dict())
    return {k: (fa.get(k), fb.get(k)) for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)}


def checkpoint_config(checkpoint, path: Path | None = None) -> Config:
    """The config a checkpoint (a :class:`Checkpoint`, or its stored config dict and ``path``)
    was trained with: the run's truth.

    Raises:
        CheckpointError: the stored config is not a valid config.
    """
    stored, path = (checkpoint, path) if isinstance(checkpoint, dict) else (checkpoint.config, checkpoint.path)
    values = {k: v for k, v in stored.items() if not k.startswith("_")}  # _image_shape, _num_classes
    try:
        return Config.from_dict(values)
    except ConfigError as exc:
        raise CheckpointError(f"{path}: its config is invalid ({exc}); use the other checkpoint "
                              "of the run, or start a new run") from None


def _read_run_config(run_dir: Path) -> Config | None:
    """``run_dir/config.yaml``, or None when it is missing.

    Raises:
        ConfigError: it is empty, not UTF-8, not valid YAML or an invalid config.
    """
    path = run_dir / "config.yaml"
    if not path.exists():
        return None
    from ..io import read_text

    try:
        text = read_text(path, "run config")
    except VaelabError as exc:
        raise ConfigError(f"{exc}; or delete it to resume with the config stored in the checkpoint") from None
    if not text.strip():
        raise ConfigError(f"{path} is empty; restore it, or delete it to resume with the config stored in "
                          "the checkpoint")
    return load_config(path)


def resume_config(run_dir: str | Path, overrides: dict[str, Any] | None = None):
    """The config a resume of ``run_dir`` trains with, the checkpoint it continues (or None) and
    the keys it changes (``{key: (old, new)}``).

    The checkpoint's config is the truth: ``config.yaml`` may differ from it only in
    :data:`RESUME_OVERRIDABLE` keys (e.g. an edited ``epochs``), and so may ``overrides``.
    Without ``config.yaml`` the checkpoint's config is used.

    Raises:
        CheckpointError: ``run_dir`` holds no run, or its checkpoint is unreadable or invalid.
        ConfigError: ``config.yaml`` is empty, unreadable or differs from the checkpoint in other
            keys, or an override of another key.
    """
    run_dir = Path(run_dir)
    overrides = dict(overrides or {})
    allowed = ", ".join(sorted(RESUME_OVERRIDABLE))
    forbidden = sorted(set(overrides) - RESUME_OVERRIDABLE)
    if forbidden:
        raise ConfigError(f"cannot change {', '.join(forbidden)} when resuming (only {allowed}); start a new "
                          "run instead")
    checkpoint_path = run_dir / "checkpoints" / "last.safetensors"
    checkpoint = read_checkpoint(checkpoint_path) if checkpoint_path.exists() else None
    written = _read_run_config(run_dir)
    if written is None and checkpoint is None:
        raise CheckpointError(f"{run_dir} is not a run directory (no config.yaml); check the path")
    if checkpoint is None:
        base = written
    else:
        base = checkpoint_config(checkpoint)
        if written is not None:
            edits = config_differences(base, written)
            bad = sorted(set(edits) - RESUME_OVERRIDABLE)
            if bad:
                shown = "; ".join(f"{k}: {edits[k][0]!r} in the checkpoint, {edits[k][1]!r} in config.yaml"
                                  for k in bad[:4])
                raise ConfigError(
                    f"{run_dir}/config.yaml differs from the run's checkpoint ({shown}); a resume may change "
                    f"only {allowed}: undo the edit (or delete config.yaml to use the checkpoint's config), "
                    "or start a new run with --config"
                )
            base = base.replace({k: edits[k][1] for k in edits})
    config = base.replace(overrides)
    trained = checkpoint_config(checkpoint) if checkpoint is not None else base
    return config, checkpoint, config_differences(trained, config)


def resume(run_dir: str | Path, overrides: dict[str, Any] | None = None, verbose: bool = True,
           argv: list[str] | None = None) -> Run:
    """Continue the run in ``run_dir`` from its last checkpoint.

    ``overrides`` (and edits of ``config.yaml``) may change only :data:`RESUME_OVERRIDABLE`
    (train longer, another device, a lower learning rate, clipping or skipping non-finite
    steps). A resume with nothing to train (the run has finished ``training.epochs``) changes
    nothing. Each resume is appended to ``environment.json``'s ``resumes``.

    Raises:
        CheckpointError: ``run_dir`` holds no run, or its checkpoint is unreadable or invalid.
        ConfigError: a change of another key (see :func:`resume_config`).
        RunDirectoryBusy: another process is working in ``run_dir``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a run directory (it does not exist); check the path")
    with run_lock(run_dir):
        config, checkpoint, changes = resume_config(run_dir, overrides)
        state = checkpoint.training_state if checkpoint is not None else None
        summary = None
        with contextlib.suppress(OSError, ValueError):
            summary = json.loads((run_dir / "summary.json").read_bytes())
        if (state is not None and state.position is None and state.epoch >= config.training.epochs
                and isinstance(summary, dict)):
            if verbose:
                print(f"run {run_dir} already finished {state.epoch} epochs: nothing to do, nothing changed; "
                      f"pass --epochs N (N > {state.epoch}) to train longer")
            return Run(run_dir=run_dir, config=checkpoint_config(checkpoint), history=state.history,
                       summary=summary)
        return _fit(config, run_dir, checkpoint=checkpoint, verbose=verbose, argv=argv, changes=changes)


def _default_name(config: Config, dataset: str | None = None) -> str:
    dataset = dataset or config.data.dataset
    if is_user_dataset(dataset):
        dataset = Path(dataset).stem or "data"
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{dataset}"


DATA_SOURCE_FILE = "data.json"


def check_data_source(run_dir: Path, dataset: Dataset, resuming: bool) -> None:
    """For your own data, compare its sha256 with the one ``run_dir/data.json`` recorded when
    the run started (only when ``resuming``).

    Raises:
        ConfigError: the data changed since the run started (naming both digests).
    """
    recorded = run_dir / DATA_SOURCE_FILE
    if not resuming or dataset.spec.sha256 is None or not recorded.is_file():
        return
    try:
        before = json.loads(recorded.read_text())
    except (OSError, ValueError):
        raise ConfigError(f"{recorded} is damaged; it records the run's data: restore it or start a new run") from None
    if before.get("sha256") != dataset.spec.sha256:
        raise ConfigError(
            f"the data changed since the run started: {dataset.spec.source} has sha256 "
            f"{dataset.spec.sha256[:16]}..., the run recorded {str(before.get('sha256'))[:16]}... "
            f"({recorded}); restore the original data or start a new run"
        )


def write_data_source(run_dir: Path, dataset: Dataset) -> None:
    """Record your own data's path, sha256 and shapes in ``run_dir/data.json`` (built-in
    datasets are verified by their own checksums and need none)."""
    if dataset.spec.sha256 is None or (run_dir / DATA_SOURCE_FILE).is_file():
        return
    info = {"path": dataset.spec.source, "sha256": dataset.spec.sha256, "image_shape": list(dataset.spec.image_shape),
            "classes": list(dataset.spec.classes), "train_examples": len(dataset.train),
            "test_examples": len(dataset.test)}
    atomic_write_text(run_dir / DATA_SOURCE_FILE, json.dumps(info, indent=2))


def environment(config: Config, device: torch.device, argv: list[str] | None) -> dict[str, Any]:
    """What a run needs to be reproduced: seed, versions, device, threads, command line, and the
    git commit of the working tree it ran in (:func:`git_state`)."""
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
        "command": argv,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git": git_state(),
    }


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


def write_metrics_csv(path: Path, history: list[dict[str, float]]) -> None:
    """Write the whole per-epoch history as CSV, atomically (so a crash never leaves half a row)."""
    if not history:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buffer.getvalue())


def train_epoch(model: VAE, optimizer: torch.optim.Optimizer, batches: InMemoryBatches,
                objective: ObjectiveConfig | Objective, training: TrainingConfig, device: torch.device,
                epoch: int, progress=None, *, order: torch.Tensor | None = None, position: EpochPosition | None = None,
                state: TrainingState | None = None,
                after_step: Callable[[torch.Tensor, EpochPosition], None] | None = None) -> dict[str, float]:
    """One pass over ``batches`` (epoch ``epoch``, 1-based). ``objective`` is a config (ELBO or
    IWAE bound) or an :class:`~vaelab.objectives.Objective` (a perceptual term needs one:
    :func:`~vaelab.objectives.build_objective`).

    ``order`` and ``position`` continue an epoch a mid-epoch checkpoint stopped in (default: a
    fresh permutation from the start); ``position`` is updated after every step and
    ``after_step(order, position)`` is then called (periodic checkpoints, interrupts).

    Returns:
        mean train ``recon``, ``kl``, ``neg_elbo`` (nats per example, running averages over the
        epoch's batches as the model changes), the objective's extra terms (``neg_iwae``,
        ``perceptual``) when it has any, ``kl_weight`` and ``learning_rate`` at the end,
        ``seconds`` of training.

    Raises:
        TrainingError: a non-finite loss or gradient (naming the epoch, step and the term or
            parameter), unless ``training.nonfinite == 'skip'`` and fewer than
            ``training.max_skipped_steps`` steps were skipped in the run (counted in ``state``);
            or an epoch in which every step was skipped (it has no result).
    """
    model.train()
    if not isinstance(objective, Objective):
        objective = Objective(objective)
    order = batches.permutation() if order is None else order
    position = EpochPosition() if position is None else position
    state = TrainingState() if state is None else state
    with flush_denormals():
        _run_steps(model, optimizer, batches, objective, training, device, epoch, progress, order,
                   position, state, after_step)
    if position.n_seen == 0 and len(batches) > 0:
        raise TrainingError(
            f"epoch {epoch}: every one of its {len(batches)} steps was skipped (non-finite), so it has no "
            "result; training stopped. Try a lower --learning-rate or gradient clipping (--clip-norm 5)"
        )
    recon, kl = position.recon_total / max(position.n_seen, 1), position.kl_total / max(position.n_seen, 1)
    return {"recon": recon, "kl": kl, "neg_elbo": recon + kl, "kl_weight": position.kl_weight,
            "learning_rate": optimizer.param_groups[0]["lr"], "seconds": position.seconds,
            **{name: total / max(position.n_seen, 1) for name, total in position.extra_totals.items()}}


def _run_steps(model, optimizer, batches, objective, training, device, epoch, progress, order, position,
               state, after_step) -> None:
    steps = len(batches)
    parameters = [p for p in model.parameters() if p.requires_grad]
    clip = training.clip_value is not None or training.clip_norm is not None
    seconds_before, start = position.seconds, time.perf_counter()
    for index in range(position.step, steps):
        step = index + 1
        x = batches.batch(order, index).to(device, non_blocking=True)
        y = batches.batch_labels(order, index)  # None unless the VAE is conditional
        beta = kl_weight(objective.config, (epoch - 1) * steps + index, steps, training.epochs)
        terms = objective(model, x, beta) if y is None else objective(model, x, beta, y=y)
        recon_value, kl_value = terms.recon.detach().sum().item(), terms.kl.detach().sum().item()
        optimizer.zero_grad(set_to_none=True)
        bad = _nonfinite_term(recon_value, kl_value)
        if bad is None:
            terms.loss.backward()
            bad = _nonfinite_gradient(model, parameters)
        if bad is not None:
            if training.nonfinite == "skip" and state.skipped_steps < training.max_skipped_steps:
                state.skipped_steps += 1
                optimizer.zero_grad(set_to_none=True)
                warnings.warn(f"epoch {epoch}, step {step}: {bad} is not finite; step skipped "
                              f"({state.skipped_steps}/{training.max_skipped_steps})", stacklevel=2)
            else:
                why = "" if training.nonfinite == "stop" else f" after {state.skipped_steps} skipped steps"
                raise TrainingError(
                    f"epoch {epoch}, step {step}: {bad} is not finite{why}; training stopped. Try a lower "
                    "--learning-rate, gradient clipping (--clip-norm 5) or --nonfinite skip (each allowed on "
                    "--resume), or a new run with a larger --scale-floor for learned scales"
                )
        else:
            if clip:
                clip_gradients(parameters, training)
            optimizer.step()
            position.recon_total += recon_value
            position.kl_total += kl_value
            for name, value in terms.extra.items():
                position.extra_totals[name] = position.extra_totals.get(name, 0.0) + value.detach().sum().item()
            position.n_seen += x.shape[0]
        position.step = step
        position.kl_weight = beta
        position.seconds = seconds_before + time.perf_counter() - start
        if progress is not None:
            progress.update(1)
            if step % 20 == 0:
                progress.set_postfix(loss=f"{(recon_value + beta * kl_value) / x.shape[0]:.2f}")
        if after_step is not None:
            after_step(order, position)


def _nonfinite_term(recon_value: float, kl_value: float) -> str | None:
    if not math.isfinite(recon_value):
        return f"the reconstruction NLL ({recon_value})"
    if not math.isfinite(kl_value):
        return f"the KL term ({kl_value})"
    return None


def _nonfinite_gradient(model: torch.nn.Module, parameters: list[torch.nn.Parameter]) -> str | None:
    """None when every gradient is finite (one fused norm over all of them), else which
    parameter's gradient is not."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads or math.isfinite(torch.nn.utils.get_total_norm(grads, foreach=True).item()):
        return None
    for name, p in model.named_parameters():
        if p.grad is not None and not torch.isfinite(p.grad).all():
            return f"the gradient of {name}"
    return "a gradient"


def check_model_fits_data(config: Config, dataset: Dataset) -> None:
    """Checks of the model against the loaded data, which the config alone cannot see (a
    dataset that implies binarisation, point data outside [0, 1]).

    Raises:
        ConfigError: the likelihood cannot model this data.
    """
    likelihood = config.model.likelihood
    if likelihood == "logit_normal" and dataset.binarize != "none":
        raise ConfigError(
            f"model.likelihood logit_normal is a density on (0, 1) and cannot model binarised data "
            f"({dataset.spec.name} is binarised: {dataset.binarize}); use bernoulli"
        )
    if likelihood in ("bernoulli", "continuous_bernoulli", "logit_normal") and dataset.train.images.min() < 0:
        raise ConfigError(
            f"model.likelihood {likelihood} models values in [0, 1], but {dataset.spec.name} has values "
            f"down to {dataset.train.images.min().item():.2f}; use --likelihood gaussian or laplace"
        )


def check_labels_for_conditional(config: Config, dataset: Dataset) -> None:
    """A conditional VAE needs labelled data: at least two classes, every label a class index.

    Raises:
        ConfigError: the dataset has no labels (one class), or labels outside its classes.
    """
    if not config.model.conditional:
        return
    classes = dataset.spec.classes
    if len(classes) < 2:
        raise ConfigError(f"--conditional needs labelled data, but {dataset.spec.name} has no labels (one class "
                          f"{classes[0]!r}); give labels (y_train, y_test) or drop --conditional")
    top = int(max(dataset.train.labels.max(), dataset.test.labels.max()))
    if top >= len(classes):
        raise ConfigError(f"--conditional: label {top} is outside the {len(classes)} classes of {dataset.spec.name}")


@contextlib.contextmanager
def _stop_signals() -> Iterator[dict[str, Any]]:
    """While inside, SIGINT and SIGTERM only set ``flag['signal']``; the loop then finishes the
    step, writes a checkpoint and stops. Previous handlers are restored on exit."""
    flag: dict[str, Any] = {"signal": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        flag["signal"] = signal.Signals(signum).name

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _fit(config: Config, run_dir: Path, checkpoint, verbose: bool, argv, changes=None) -> Run:
    """Train in ``run_dir``, whose lock the caller holds (from ``checkpoint`` when resuming;
    ``changes``: the keys the resume changes, ``{key: (old, new)}``)."""
    from ..io import remove_stale_temporaries

    for directory in (run_dir, run_dir / "checkpoints", run_dir / "figures"):
        remove_stale_temporaries(directory)  # left by a process killed while writing
    device = resolve_device(config.training.device)
    data_generator = seed_everything(config.seed)
    dataset = load_dataset(config.data)
    check_data_source(run_dir, dataset, resuming=(run_dir / "config.yaml").is_file())  # train() refuses a used one
    if config.training.batch_size > len(dataset.train):
        raise ConfigError(
            f"training.batch_size={config.training.batch_size} is larger than the training set "
            f"({len(dataset.train)} examples); use a smaller batch size"
        )
    check_model_fits_data(config, dataset)
    if dataset.binarize != config.data.binarize:  # implied by the dataset (binarized-mnist): record it
        config = config.replace({"data.binarize": dataset.binarize})
    check_labels_for_conditional(config, dataset)
    num_classes = len(dataset.spec.classes) if config.model.conditional else None
    check_model_fits_memory(config.model, config.training, dataset.image_shape, device, num_classes)  # first
    model = place_model(build_model(config.model, dataset.image_shape, num_classes), device)
    objective = build_objective(config.objective, config.data.dataset, device)
    optimizer = make_optimizer(model, config.training)
    scheduler = make_scheduler(optimizer, config.training)
    state = TrainingState()
    order = None
    stored_config = {**config.to_dict(), "_image_shape": list(dataset.image_shape)}
    if num_classes is not None:
        stored_config["_num_classes"] = num_classes
    if checkpoint is not None:
        check_checkpoint_fits(checkpoint, model, len(dataset.train), config.training.batch_size)
        try:
            model.load_state_dict(checkpoint.model_state)
            optimizer.load_state_dict(checkpoint.optimizer_state)
            match_optimizer_state_layout(optimizer)
            if scheduler is not None and checkpoint.scheduler_state:
                scheduler.load_state_dict(checkpoint.scheduler_state)
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{checkpoint.path} does not fit this run's model ({exc}); use the other "
                                  "checkpoint of the run, or start a new run") from None
        old_lr = (changes or {}).get("training.learning_rate", (None,))[0]
        if old_lr:  # a resume with a new learning rate: scale the current one (and the schedule's)
            factor = config.training.learning_rate / old_lr
            for group in optimizer.param_groups:
                group["lr"] *= factor
                if "initial_lr" in group:
                    group["initial_lr"] *= factor
            if scheduler is not None and hasattr(scheduler, "base_lrs"):
                scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
        restore_rng(checkpoint.rng_tensors, checkpoint.rng_meta, data_generator)
        state, order = checkpoint.training_state, checkpoint.order

    return _fit_locked(config, run_dir, dataset, model, optimizer, scheduler, state, order,
                       data_generator, stored_config, device, verbose, argv, objective,
                       resuming=checkpoint is not None, changes=changes)


def check_checkpoint_fits(checkpoint, model: torch.nn.Module, n_train: int, batch_size: int) -> None:
    """The checks of a checkpoint's values that need the run's model and data: the data order
    is a permutation of the training set, the position inside the epoch is within it, and
    every optimizer state tensor has its parameter's shape.

    Raises:
        CheckpointError: naming the field, with the advice to use the other checkpoint.
    """
    from .checkpoint import invalid_field

    order, position = checkpoint.order, checkpoint.training_state.position
    if order is not None and order.numel() != n_train:
        raise invalid_field(checkpoint.path, "data.order", f"has {order.numel()} entries for a training set of "
                            f"{n_train} examples")
    steps = -(-n_train // batch_size)
    if position is not None and position.step > steps:
        raise invalid_field(checkpoint.path, "training_state.position.step",
                            f"is {position.step}, beyond the {steps} steps of an epoch")
    params = [p for group in checkpoint.optimizer_state["param_groups"] for p in group["params"]]
    shapes = [tuple(p.shape) for p in model.parameters()]
    if sorted(params) != list(range(len(shapes))):
        raise invalid_field(checkpoint.path, "optimizer.param_groups", f"name parameters {sorted(params)[:8]}, the "
                            f"model has {len(shapes)}")
    for pid, values in checkpoint.optimizer_state["state"].items():
        if not 0 <= pid < len(shapes):
            raise invalid_field(checkpoint.path, f"optimizer.state.{pid}", "is for a parameter the model does not have")
        for name, value in values.items():
            if torch.is_tensor(value) and value.dim() > 0 and tuple(value.shape) != shapes[pid]:
                raise invalid_field(checkpoint.path, f"optimizer.state.{pid}.{name}",
                                    f"has shape {tuple(value.shape)}, its parameter {shapes[pid]}")


def _environment_json(run_dir: Path, config: Config, device, argv, resuming: bool, state, changes) -> str:
    """environment.json: a new run's, or (resuming) the original one with this resume appended
    to ``resumes``."""
    current = environment(config, device, argv)
    previous = None
    if resuming and (run_dir / "environment.json").is_file():
        with contextlib.suppress(OSError, ValueError, UnicodeDecodeError):
            previous = json.loads((run_dir / "environment.json").read_text())
    if not isinstance(previous, dict):
        if not resuming:
            return json.dumps(current, indent=2)
        previous = {**current, "command": None, "started": None}
    entry = {k: current[k] for k in ("command", "started", "device", "torch_threads", "vaelab", "torch")}
    entry["from_epoch"] = state.epoch
    entry["from_step"] = state.position.step if state.position else 0
    entry["changed"] = {k: {"from": old, "to": new} for k, (old, new) in sorted((changes or {}).items())}
    previous["resumes"] = [*previous.get("resumes", []), entry]
    return json.dumps(previous, indent=2)


def _fit_locked(config, run_dir, dataset, model, optimizer, scheduler, state, order, data_generator,
                stored_config, device, verbose, argv, objective=None, resuming=False, changes=None) -> Run:
    objective = objective if objective is not None else build_objective(config.objective, config.data.dataset, device)
    atomic_write_text(run_dir / "config.yaml", config.to_yaml())
    atomic_write_text(run_dir / "environment.json",
                      _environment_json(run_dir, config, device, argv, resuming, state, changes))
    write_data_source(run_dir, dataset)
    write_metrics_csv(run_dir / "metrics.csv", state.history)

    eval_images = dataset.eval.images.to(device)
    conditional = config.model.conditional
    eval_labels = dataset.eval.labels.to(device) if conditional else None
    batches = InMemoryBatches(dataset.train.images.to(device), config.training.batch_size, shuffle=True,
                              dynamic_binarize=dataset.binarize == "dynamic", generator=data_generator,
                              labels=dataset.train.labels.to(device) if conditional else None)
    from torch.utils.tensorboard import SummaryWriter  # slow import, only when training

    say = print if verbose else (lambda *a, **k: None)
    if state.epoch >= config.training.epochs:
        say(f"run {run_dir} already finished {state.epoch} epochs; pass --epochs N to train longer")
    elif state.epoch or state.position:
        where = f", step {state.position.step}" if state.position else ""
        say(f"resuming {run_dir} after epoch {state.epoch}{where}")
    say(f"training on {config.data.dataset} ({len(dataset.train)} train, {len(dataset.eval)} "
        f"{dataset.eval_name}) on {device}; run directory {run_dir}")
    busy = _busy_machine_hint(device)
    if busy:
        say(busy)
    last = run_dir / "checkpoints" / "last.safetensors"
    every = config.training.checkpoint_every_steps

    def save(targets, order=None):
        write_checkpoint(targets, encode_checkpoint(model, optimizer, state, stored_config, data_generator,
                                                    scheduler, order))

    from ..plots.tensorboard import log_config, log_epoch_images

    loggers = logger_names(config.training.logger)
    writer = None
    if "tensorboard" in loggers:
        writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), purge_step=state.epoch + 1)
        log_config(writer, config, dataset.eval_name)
    trackers = Trackers(config, run_dir)  # mlflow, wandb: callbacks (imported only when asked for)
    trackers.on_train_start(config, run_dir, resumed=bool(state.epoch or state.position))
    try:
        with _stop_signals() as stop:
            def after_step(order, position):
                if stop["signal"] or (every and position.step % every == 0):
                    state.position = position
                    save([last], order)
                if stop["signal"]:
                    raise TrainingInterrupted(
                        f"stopped by {stop['signal']} at epoch {epoch}, step {position.step}; checkpoint "
                        f"written to {last}; continue with `vaelab train --resume {run_dir}`"
                    )

            for epoch in range(state.epoch + 1, config.training.epochs + 1):
                position, state.position = state.position, None
                progress = _progress_bar(config, len(batches), epoch, position) if verbose else None
                try:
                    train_metrics = train_epoch(model, optimizer, batches, objective, config.training,
                                                device, epoch, progress, order=order, position=position,
                                                state=state, after_step=after_step)
                except TrainingError as exc:
                    if isinstance(exc, TrainingInterrupted) or not last.exists():
                        raise
                    raise TrainingError(f"{exc}. The last good checkpoint is kept: {last}") from None
                finally:
                    if progress is not None:
                        progress.close()
                order, state.position = None, None  # the epoch is complete
                eval_metrics = evaluate_elbo(model, eval_images, config.training.eval_batch_size,
                                             config.objective.n_samples, seed=config.seed, device=device,
                                             labels=eval_labels)
                row = {"epoch": epoch}
                row.update({f"train_{k}": train_metrics[k] for k in TERMS})
                row.update({f"train_{k}": train_metrics[k] for k in EXTRA_TERMS if k in train_metrics})
                row.update({f"{dataset.eval_name}_{k}": eval_metrics[k] for k in TERMS})
                row["kl_weight"] = train_metrics["kl_weight"]
                row["learning_rate"] = train_metrics["learning_rate"]
                row["train_seconds"] = train_metrics["seconds"]
                step_scheduler(scheduler, eval_metrics["neg_elbo"])
                state.history.append(row)
                state.epoch = epoch
                targets = [last]
                if eval_metrics["neg_elbo"] < state.best_value:
                    state.best_value, state.best_epoch = eval_metrics["neg_elbo"], epoch
                    targets.append(run_dir / "checkpoints" / "best.safetensors")
                save(targets)
                write_metrics_csv(run_dir / "metrics.csv", state.history)
                if writer is not None:
                    for key, value in row.items():
                        if key != "epoch":
                            writer.add_scalar(key.replace("_", "/", 1), value, epoch)
                    log_epoch_images(writer, model, dataset, config, epoch)
                    writer.flush()
                trackers.on_epoch_end(epoch, row)
                say(f"epoch {epoch:3d}/{config.training.epochs}  train -ELBO {train_metrics['neg_elbo']:8.3f}  "
                    f"{dataset.eval_name} -ELBO {eval_metrics['neg_elbo']:8.3f} (recon "
                    f"{eval_metrics['recon']:.3f}, KL {eval_metrics['kl']:.3f})  {train_metrics['seconds']:.1f} s")
                if stop["signal"]:
                    raise TrainingInterrupted(
                        f"stopped by {stop['signal']} after epoch {epoch}; checkpoint written to {last}; "
                        f"continue with `vaelab train --resume {run_dir}`"
                    )
    except BaseException as exc:
        trackers.on_exception(exc)  # MLflow: FAILED or KILLED; W&B: finished with exit code 1
        raise
    finally:
        if writer is not None:
            writer.close()

    summary = _summary(state, dataset.eval_name, run_dir)
    collapse = _posterior_collapse(model, eval_images, config, eval_labels) if state.history else None
    if collapse is not None:
        summary["warnings"] = [collapse]
        print(f"warning: {collapse}", file=sys.stderr)
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))
    from ..plots import plot_run

    plot_run(run_dir, model=model, dataset=dataset)  # the same figures as `vaelab plot RUN_DIR`
    trackers.on_train_end(run_dir, summary)  # figures, summary, config and last checkpoint as artifacts
    if verbose:
        print_summary(summary)
    return Run(run_dir=run_dir, config=config, history=state.history, summary=summary)


def _busy_machine_hint(device: torch.device) -> str | None:
    """A one-line hint when the CPU is oversubscribed: the load average exceeds the cores."""
    import os

    if device.type != "cpu" or not hasattr(os, "getloadavg"):
        return None
    cores, load = os.cpu_count() or 1, os.getloadavg()[0]
    if load <= cores:
        return None
    return (f"note: the machine is busy (load average {load:.1f} on {cores} cores) and torch uses "
            f"{torch.get_num_threads()} threads: epochs will be slower than usual; --threads 1 (or "
            "OMP_NUM_THREADS=1) often helps")


def _posterior_collapse(model: VAE, images: torch.Tensor, config: Config,
                        labels: torch.Tensor | None = None) -> str | None:
    """A warning when no latent dimension is active at the end of training (Burda et al. 2016's
    active units: the posterior means vary across examples by more than 0.01): the decoder
    ignores z and every reconstruction is the same."""
    from ..evaluation.latents import ACTIVE_THRESHOLD, active_units, posterior_summary

    labels = labels[:2000] if labels is not None else None  # a conditional VAE's q(z|x,y)
    means = posterior_summary(model, images[:2000], config.training.eval_batch_size, labels=labels).means
    active, _ = active_units(means)
    if active:
        return None
    return (f"posterior collapse: none of the {config.model.latent_dim} latent dimensions is active (the "
            f"posterior means vary by less than {ACTIVE_THRESHOLD} across examples), so the model ignores z; "
            "try a KL warm-up (--kl-schedule linear), free bits (--free-bits 0.5), a likelihood with a "
            "learned scale (--likelihood gaussian --learn-scale scalar) or more epochs")


class _PlainProgress:
    """Progress without a terminal (a log file, a pipe, CI): one line every ``every`` seconds
    instead of tqdm's bar, which is off there."""

    def __init__(self, total: int, initial: int, epoch: int, every: float = 10.0):
        self.total, self.n, self.epoch, self.every = total, initial, epoch, every
        self.start = self.last = time.monotonic()
        self.postfix = ""

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            print(f"epoch {self.epoch}: {self.n}/{self.total} batches ({100 * self.n / max(self.total, 1):.0f}%), "
                  f"{now - self.start:.0f} s{self.postfix}", flush=True)

    def set_postfix(self, loss: str = "", **_) -> None:
        self.postfix = f", loss {loss}" if loss else ""

    def close(self) -> None:
        pass


def _progress_bar(config: Config, total: int, epoch: int, position: EpochPosition | None = None):
    if not config.training.progress:
        return None
    if not sys.stdout.isatty():
        return _PlainProgress(total, position.step if position else 0, epoch)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=position.step if position else 0, desc=f"epoch {epoch}", leave=False,
                disable=None, unit="batch")


def _summary(state: TrainingState, eval_name: str, run_dir: Path) -> dict[str, Any]:
    if not state.history:
        return {"run_dir": str(run_dir), "epochs": 0}
    final, best = state.history[-1], state.history[state.best_epoch - 1]
    seconds = [row["train_seconds"] for row in state.history]
    return {
        "run_dir": str(run_dir),
        "epochs": state.epoch,
        "eval_split": eval_name,
        "best_epoch": state.best_epoch,
        "best": {k: best[f"{eval_name}_{k}"] for k in TERMS},
        "final": {k: final[f"{eval_name}_{k}"] for k in TERMS},
        "final_train": {k: final[f"train_{k}"] for k in TERMS},
        "seconds_per_epoch": sum(seconds) / len(seconds),
        "units": "nats per example",
    }


def print_summary(summary: dict[str, Any]) -> None:
    if not summary.get("epochs"):
        print(f"no epoch trained; run directory {summary['run_dir']}")
        return
    split, best, final = summary["eval_split"], summary["best"], summary["final"]
    print(
        f"\nbest epoch {summary['best_epoch']}: {split} -ELBO {best['neg_elbo']:.3f} nats "
        f"(recon {best['recon']:.3f}, KL {best['kl']:.3f})\n"
        f"final epoch {summary['epochs']}: {split} -ELBO {final['neg_elbo']:.3f} nats "
        f"(recon {final['recon']:.3f}, KL {final['kl']:.3f})\n"
        f"{summary['seconds_per_epoch']:.2f} s per epoch (training)\n"
        f"run directory: {summary['run_dir']}  (figures in {summary['run_dir']}/figures)"
    )
