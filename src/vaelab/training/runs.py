"""Starting and resuming a run: the config it trains with, its data, model, optimizer and
(when resuming) the checkpoint it continues, handed to a :class:`~vaelab.training.trainer.Trainer`
with its callbacks.

:func:`start_run` and :func:`continue_run` are the engines behind the one public pair,
``vaelab.train`` and ``vaelab.resume`` (:mod:`vaelab.api`, which owns the list of a run's
callbacks and documents the arguments). The run directory's format is
:class:`vaelab.rundir.RunDir`'s.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import Config, load_config
from ..data import Dataset, StreamedSplit, is_torch_data, is_user_dataset, load_dataset, prepare_datasets, save_arrays
from ..errors import CheckpointError, ConfigError, DataError, VaelabError, option
from ..models import LIKELIHOODS, VAE, build_model
from ..models.networks import CUSTOM, is_plug_in
from ..models.likelihoods import binarised_data_problem, declare_binary_data
from ..objectives import build_objective
from ..rundir import RunDir
from ..runlock import run_lock
from ..schema import flatten
from ..runtime import configure_backends, match_optimizer_state_layout, place_model, resolve_device
from . import distributed
from .callbacks import Callback
from .checkpoint import (TrainingState, check_checkpoint_fits, checkpoint_config, load_model, read_checkpoint,
                         restore_rng)
from .environment import check_data_source
from .optim import check_model_fits_memory, make_ema, make_optimizer, make_scheduler
from .trainer import Trainer


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch, numpy and python's RNGs; return the data-order/binarisation generator."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    return torch.Generator().manual_seed(seed)


@dataclass
class Run:
    """A finished (or stopped) run: its directory, config, per-epoch history and summary
    (``networks``: the encoder and decoder modules it was trained with, when they were yours)."""

    run_dir: Path
    config: Config
    history: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    networks: tuple[torch.nn.Module, torch.nn.Module] | None = field(default=None, repr=False)

    def load_model(self, which: str = "best", encoder: torch.nn.Module | None = None,
                   decoder: torch.nn.Module | None = None) -> VAE:
        """The model of checkpoint ``which`` ('best' or 'last'), on the CPU, in eval mode. A run
        of your own modules loads into ``encoder`` and ``decoder`` (default: copies of the
        modules it was trained with, which keep their trained weights)."""
        if encoder is None and decoder is None and self.networks is not None:
            import copy

            encoder, decoder = (copy.deepcopy(m) for m in self.networks)
        return load_model(self.run_dir, which, encoder=encoder, decoder=decoder)

    @property
    def figures(self) -> list[Path]:
        return sorted(RunDir(self.run_dir).figures.glob("*.png"))


def start_run(config: Config | dict | str | Path, callbacks: Sequence[Callback], *, argv: list[str] | None = None,
              data=None, encoder: torch.nn.Module | None = None, decoder: torch.nn.Module | None = None) -> Run:
    """Train a new run with exactly ``callbacks``: ``vaelab.train``'s engine, whose docstring
    gives the arguments and the errors raised."""
    if isinstance(config, (str, Path)):
        config = load_config(config)
    elif isinstance(config, dict):
        config = Config.from_dict(config)
    networks = _user_networks(encoder, decoder)
    if networks is not None:
        if config.model.network not in ("mlp", CUSTOM):  # mlp: the default, left as it is
            raise ConfigError(f"encoder= and decoder= replace model.network, which is {config.model.network} here; "
                              f"leave it unset (or set it to {CUSTOM})")
        config = config.replace({"model.network": CUSTOM})
    if data is not None and config.name is None:
        config = config.replace({"name": _default_name(config, "data")})
    elif is_user_dataset(config.data.dataset):  # an absolute path, so the run works from any directory
        config = config.replace({"data.dataset": str(Path(config.data.dataset).expanduser().resolve())})
    world = _join(lambda: config)  # torchrun: join its processes
    run_dir = Path(config.output_dir) / distributed.broadcast(config.name or _default_name(config), world)
    with _main_rank_lock(run_dir, world):
        if world.main and RunDir(run_dir).config_yaml.exists():
            raise ConfigError(
                f"run directory {run_dir} already holds a run; continue it with `vaelab train --resume {run_dir}` "
                f"or choose another {option('name')}"
            )
        if data is not None:
            if world.distributed:
                raise ConfigError("data= is not supported in a run on several processes; save the arrays "
                                  "with numpy.savez and name the file as data.dataset")
            stream = None
            if isinstance(data, (tuple, list)) and any(is_torch_data(d) for d in data):
                path, stream = prepare_datasets(data, RunDir(run_dir).data_npz, config.data)
            else:
                path = save_arrays(RunDir(run_dir).data_npz, data)
            config = config.replace({"data.dataset": str(path.resolve())})
            return _fit(config, run_dir, None, list(callbacks), argv=argv, networks=networks,
                        stream=stream)
        return _fit(config, run_dir, None, list(callbacks), argv=argv, networks=networks)


def _user_networks(encoder, decoder) -> tuple[torch.nn.Module, torch.nn.Module] | None:
    """``(encoder, decoder)`` when both are given, None when neither.

    Raises:
        ConfigError: only one of them, or one that is not an ``nn.Module``.
    """
    if encoder is None and decoder is None:
        return None
    if encoder is None or decoder is None:
        raise ConfigError(f"give both encoder= and decoder= (got only {'encoder' if decoder is None else 'decoder'})")
    for name, module in (("encoder", encoder), ("decoder", decoder)):
        if not isinstance(module, torch.nn.Module):
            raise ConfigError(f"{name}= must be a torch.nn.Module, got {type(module).__name__}")
    return encoder, decoder


RESUME_OVERRIDABLE = {
    # where and how a run is shown: no effect on the numbers
    "training.epochs", "training.max_minutes", "training.device", "training.progress",
    "training.sync_every_steps", "data.data_dir",
    # the fixes a non-finite loss suggests (a lower learning rate, clipping, skipping steps)
    "training.learning_rate", "training.clip_norm", "training.clip_value", "training.nonfinite",
    "training.max_skipped_steps",
}
"""The config keys a resume may change (``--epochs`` etc. or an edit of ``config.yaml``)."""


def config_differences(a: Config, b: Config) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (value in ``a``, value in ``b``) for every field where they differ."""
    fa, fb = flatten(a.to_dict()), flatten(b.to_dict())
    return {k: (fa.get(k), fb.get(k)) for k in fa.keys() | fb.keys() if fa.get(k) != fb.get(k)}


def _read_run_config(run_dir: Path) -> Config | None:
    """``run_dir/config.yaml``, or None when it is missing.

    Raises:
        ConfigError: it is empty, not UTF-8, not valid YAML or an invalid config.
    """
    path = RunDir(run_dir).config_yaml
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
    return RunDir(run_dir).read_config()


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
    checkpoint_path = RunDir(run_dir).checkpoint("last")
    checkpoint = read_checkpoint(checkpoint_path) if checkpoint_path.exists() else None
    written = _read_run_config(run_dir)
    if written is None and checkpoint is None:
        raise CheckpointError(f"{run_dir} is not a run directory (no config.yaml); check the path")
    if checkpoint is None:
        _refuse_to_start_over(run_dir, checkpoint_path)
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
                    "or start a new run from the edited file"
                )
            base = base.replace({k: edits[k][1] for k in edits})
    config = base.replace(overrides)
    trained = checkpoint_config(checkpoint) if checkpoint is not None else base
    return config, checkpoint, config_differences(trained, config)


def continue_run(run_dir: str | Path, callbacks: Sequence[Callback], overrides: dict[str, Any] | None = None, *,
                 verbose: bool = True, argv: list[str] | None = None, data=None,
                 encoder: torch.nn.Module | None = None, decoder: torch.nn.Module | None = None) -> Run:
    """Continue the run in ``run_dir`` with exactly ``callbacks``: ``vaelab.resume``'s engine,
    whose docstring gives the arguments and the errors raised."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a run directory (it does not exist); check the path")
    networks = _user_networks(encoder, decoder)
    world = _join(lambda: resume_config(run_dir, overrides)[0])
    with _main_rank_lock(run_dir, world):
        config, checkpoint, changes = resume_config(run_dir, overrides)
        if networks is not None and config.model.network != CUSTOM:
            raise ConfigError(f"encoder= and decoder= resume a run trained with your own modules; {run_dir} trained "
                              f"model.network {config.model.network}: resume it without them")
        state = checkpoint.training_state if checkpoint is not None else None
        try:
            summary = RunDir(run_dir).read_summary()
        except CheckpointError:
            summary = None
        if (state is not None and state.position is None and state.epoch >= config.training.epochs
                and isinstance(summary, dict)):
            if verbose:
                print(f"run {run_dir} already finished {state.epoch} epochs: nothing to do, nothing changed; "
                      f"pass {option('training.epochs', 'N')} (N > {state.epoch}) to train longer")
            return Run(run_dir=run_dir, config=checkpoint_config(checkpoint), history=state.history,
                       summary=summary, networks=networks)
        return _fit(config, run_dir, checkpoint, list(callbacks), argv=argv, changes=changes,
                    networks=networks, stream=_streamed_train(data))


def _streamed_train(data):
    """The training dataset in a resume's ``data``: ``(train, test)`` or ``train`` alone."""
    if data is None:
        return None
    train = data[0] if isinstance(data, (tuple, list)) and len(data) == 2 else data
    if not is_torch_data(train):
        raise DataError("data= of a resume is the streamed run's training Dataset (or DataLoader), or (train, test); "
                        "a run of arrays keeps them in its directory: resume it without data=")
    return train


def _refuse_to_start_over(run_dir: Path, checkpoint_path: Path) -> None:
    """A run directory whose ``metrics.csv`` or ``summary.json`` shows trained epochs but has no
    last checkpoint would resume from epoch 1 and overwrite them: refuse instead.

    Raises:
        CheckpointError: naming what is missing and the ways out.
    """
    files = RunDir(run_dir)
    try:
        epochs = len(files.read_metrics())
    except CheckpointError:
        epochs = 0
    if epochs == 0 and not files.summary_json.is_file():
        return  # stopped before its first checkpoint: nothing to lose by starting it
    best = files.checkpoint("best")
    way = (f"copy {best.name} over {checkpoint_path.name} to resume from its best epoch, " if best.is_file() else
           "restore the checkpoints folder, ")
    raise CheckpointError(f"{run_dir} has trained {epochs or 'some'} epoch(s) but {checkpoint_path} is missing, so a "
                          f"resume would start over from epoch 1 and overwrite them; {way}or start a new run")


def _join(config) -> distributed.World:
    """Started by torchrun: join its process group (its backend follows ``config().training.device``)."""
    if not distributed.launched():
        return distributed.SINGLE
    return distributed.setup(resolve_device(config().training.device))


def _main_rank_lock(run_dir: Path, world: distributed.World):
    """The run directory's lock, held by rank 0 (the one process that writes it)."""
    return run_lock(run_dir) if world.main else contextlib.nullcontext()


def _default_name(config: Config, dataset: str | None = None) -> str:
    dataset = dataset or config.data.dataset
    if is_user_dataset(dataset):
        dataset = Path(dataset).stem or "data"
    return f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{dataset}"


def check_model_fits_data(config: Config, dataset: Dataset) -> None:
    """Checks of the model against the loaded data, which the config alone cannot see (a
    dataset that implies binarisation, point data outside [0, 1]).

    Raises:
        ConfigError: the likelihood cannot model this data.
    """
    likelihood = config.model.likelihood
    problem = binarised_data_problem(likelihood, dataset.binarize, f"{dataset.spec.name} is binarised: "
                                     f"{dataset.binarize}", "use bernoulli")
    if problem:
        raise ConfigError(problem)
    # a streamed split is checked item by item as it is read: your images are in [0, 1]
    lowest = dataset.test if isinstance(dataset.train, StreamedSplit) else dataset.train
    if LIKELIHOODS[likelihood].unit_interval and lowest.images.min() < 0:
        raise ConfigError(
            f"model.likelihood {likelihood} models values in [0, 1], but {dataset.spec.name} has values "
            f"down to {lowest.images.min().item():.2f}; use {option('model.likelihood', 'gaussian')} or laplace"
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
        raise ConfigError(f"{option('model.conditional')} needs labelled data, but {dataset.spec.name} has no labels (one class "
                          f"{classes[0]!r}); give labels (y_train, y_test) or drop {option('model.conditional')}")
    top = int(max(dataset.train.labels.max(), dataset.test.labels.max()))
    if top >= len(classes):
        raise ConfigError(f"{option('model.conditional')}: label {top} is outside the {len(classes)} classes of {dataset.spec.name}")


def _fit(config: Config, run_dir: Path, checkpoint, callbacks: list[Callback], argv, changes=None,
         networks=None, stream=None) -> Run:
    """Train in ``run_dir``, whose lock the caller holds (from ``checkpoint`` when resuming;
    ``changes``: the keys the resume changes, ``{key: (old, new)}``; ``networks``: your own
    encoder and decoder; ``stream``: the training dataset of a streamed run)."""
    trainer = build_trainer(config, RunDir(run_dir), checkpoint, callbacks, argv=argv, changes=changes,
                            networks=networks, stream=stream)
    summary = trainer.fit()
    distributed.barrier(trainer.world)  # torchrun: the ranks leave together, once rank 0 has written everything
    return Run(run_dir=run_dir, config=trainer.config, history=trainer.state.history, summary=summary,
               networks=networks)


def build_trainer(config: Config, run_dir: RunDir, checkpoint=None, callbacks: Sequence[Callback] = (), *,
                  argv: list[str] | None = None, changes: dict[str, tuple[Any, Any]] | None = None,
                  networks: tuple[torch.nn.Module, torch.nn.Module] | None = None, stream=None) -> Trainer:
    """The :class:`Trainer` of ``config`` in ``run_dir``: data loaded and checked against the
    model, model, objective, optimizer and scheduler built, and (``checkpoint``) their states,
    the RNGs, the position and the callbacks' states restored. ``networks``: your own
    ``(encoder, decoder)`` (``model.network: custom``); ``stream``: the training dataset of a
    streamed run (:mod:`vaelab.data.streaming`).

    Raises:
        ConfigError: the data does not fit the config (batch size, likelihood, labels), or a
            streamed training split with what needs it whole (a conditional VAE, training-split
            figures).
        CheckpointError: ``checkpoint`` does not fit the model or the data.
        DataError: a streamed run without its training dataset (one line saying how to give it).
    """
    from ..io import remove_stale_temporaries

    world = distributed.current()
    if world.main:
        for directory in run_dir.written_directories:
            remove_stale_temporaries(directory)  # left by a process killed while writing
    device = distributed.rank_device(resolve_device(config.training.device), world)
    configure_backends(device, config.training.tf32)
    data_generator = seed_everything(config.seed)
    if world.rank:  # each rank's own latent noise; the data generator (batch order) is the same on all
        torch.manual_seed(config.seed + world.rank)
    # on CUDA the batch order and binarisation are drawn on the GPU (no host round trip per step)
    device_generator = torch.Generator(device).manual_seed(config.seed) if device.type == "cuda" else None
    dataset = load_dataset(config.data, stream=stream)
    _check_streamed(config, dataset, run_dir)
    if world.main:
        check_data_source(run_dir, dataset, resuming=run_dir.is_run())  # train() refuses a used one
    if config.training.batch_size > len(dataset.train):
        raise ConfigError(
            f"training.batch_size={config.training.batch_size} is larger than the training set "
            f"({len(dataset.train)} examples); use a smaller batch size"
        )
    check_model_fits_data(config, dataset)
    rest = len(dataset.train) % config.training.batch_size
    if world.distributed and (config.training.batch_size < world.size or 0 < rest < world.size):
        raise ConfigError(
            f"training.batch_size={config.training.batch_size} on {world.size} processes: every batch (the last "
            f"has {rest or config.training.batch_size} examples) needs at least one example per process; choose "
            "a batch size that leaves no smaller last batch"
        )
    if dataset.binarize != config.data.binarize:  # implied by the dataset (binarized-mnist): record it
        config = config.replace({"data.binarize": dataset.binarize})
    check_labels_for_conditional(config, dataset)
    num_classes = len(dataset.spec.classes) if config.model.conditional else None
    # your own modules exist already (they are counted); a built-in model is counted before it is allocated
    model = build_model(config.model, dataset.image_shape, num_classes, networks) if is_plug_in(config.model.network) \
        else None
    check_model_fits_memory(config.model, config.training, dataset.image_shape, device, num_classes, model=model,
                            data_bytes=_device_data_bytes(dataset, device, conditional=num_classes is not None))
    model = place_model(model or build_model(config.model, dataset.image_shape, num_classes), device)
    declare_binary_data(model.likelihood, config.data.binarize != "none")  # every batch and split is 0/1
    objective = build_objective(config.objective, config.data.dataset, device)
    if config.training.compile:
        compile_model(model, COMPILE_BACKEND)
    optimizer = make_optimizer(model, config.training)
    scheduler = make_scheduler(optimizer, config.training)
    ema = make_ema(model, config.training.ema_decay)
    scaler = torch.amp.GradScaler(device.type) if config.training.precision == "fp16" else None
    state, order = TrainingState(), None
    stored_config = {**config.to_dict(), "_image_shape": list(dataset.image_shape)}
    if num_classes is not None:
        stored_config["_num_classes"] = num_classes
    if checkpoint is not None:
        _restore(checkpoint, model, optimizer, scheduler, (data_generator, device_generator), config,
                 len(dataset.train), changes, ema)
        _restore_rank_rng(checkpoint.rng_tensors, world, device)
        if scaler is not None and checkpoint.grad_scaler_state:
            scaler.load_state_dict(checkpoint.grad_scaler_state)
        state, order = checkpoint.training_state, checkpoint.order
    trainer = Trainer(config, run_dir, dataset, model, optimizer, scheduler, objective, device, data_generator,
                      stored_config, state=state, order=order, callbacks=callbacks, resuming=checkpoint is not None,
                      changes=changes, argv=argv, ema=ema, device_generator=device_generator, grad_scaler=scaler,
                      world=world)
    if checkpoint is not None:
        trainer.load_callback_states(checkpoint.callback_states, checkpoint.path)
    return trainer


def _check_streamed(config: Config, dataset: Dataset, run_dir: RunDir) -> None:
    """A streamed training split: given (the CLI cannot give it), and not read whole.

    Raises:
        DataError: a streamed run resumed without its training dataset.
        ConfigError: a conditional VAE or ``figures.split: train`` on a streamed split.
    """
    if not isinstance(dataset.train, StreamedSplit):
        return
    if dataset.train.dataset is None:
        raise DataError(f"{run_dir} streamed its training split from a torch Dataset given from Python, which the run "
                        "directory does not keep; resume it from Python: vaelab.resume(run_dir, data=(train, test))")
    if config.model.conditional:
        raise ConfigError(f"{option('model.conditional')} needs every training label in memory, but the training "
                          f"dataset streams (larger than data.max_gigabytes); drop it, or raise "
                          f"{option('data.max_gigabytes')} to read the data into memory")
    if config.figures.split == "train":
        raise ConfigError(f"{option('figures.split', 'train')} draws the training split whole, but it streams (larger "
                          f"than data.max_gigabytes); use {option('figures.split', 'test')}")


def _device_data_bytes(dataset: Dataset, device: torch.device, conditional: bool) -> int:
    """Bytes of the dataset's tensors the trainer copies to a GPU (training and evaluation
    images, and labels for a conditional VAE; a streamed training split is copied a batch at a
    time); 0 on the CPU, where they are in memory already."""
    if device.type == "cpu":
        return 0
    if isinstance(dataset.train, StreamedSplit):
        return sum(t.numel() * t.element_size() for t in [dataset.eval.images])
    tensors = [dataset.train.images, dataset.eval.images]
    if conditional:
        tensors += [dataset.train.labels, dataset.eval.labels]
    return sum(t.numel() * t.element_size() for t in tensors)


def _restore_rank_rng(tensors: dict[str, torch.Tensor], world: distributed.World, device: torch.device) -> None:
    """With several ranks, this rank's own RNG states from the checkpoint (when it has them:
    one written with the same number of processes)."""
    own = tensors.get(f"rng.rank{world.rank}.torch")
    if not world.distributed or own is None:
        return
    torch.set_rng_state(own)
    cuda = tensors.get(f"rng.rank{world.rank}.cuda")
    if cuda is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda, device)


COMPILE_BACKEND = "inductor"
"""The ``torch.compile`` backend of ``training.compile`` (``eager`` captures the same graphs and
runs them eagerly: checks on machines without a compiler use it)."""


def compile_model(model: VAE, backend: str = "inductor") -> None:
    """``training.compile``: compile the encoder's and decoder's ``forward`` in place
    (``nn.Module.compile``), so the weights, their names in the state dict and the rest of the
    model (prior, likelihood, objective) stay as they are.

    The training steps compile a graph per module for the full batch and, when the last batch of
    an epoch is smaller, one more with a symbolic batch size (torch's automatic dynamic shapes);
    evaluation and callbacks run the modules eagerly
    (:meth:`~vaelab.training.trainer.Trainer.uncompiled`), so a run compiles at most four graphs
    (tests/training/test_precision.py counts them)."""
    for module in (model.encoder, model.decoder):
        module.compile(backend=backend)


def _restore(checkpoint, model, optimizer, scheduler, generators, config: Config, n_train: int,
             changes, ema=None) -> None:
    """Load a checkpoint's weights, their moving average (``ema``), optimizer and scheduler
    states and RNGs into the new run;
    a resume with a new learning rate scales the restored one (and the schedule's).

    Raises:
        CheckpointError: the checkpoint does not fit this run's model or data.
    """
    check_checkpoint_fits(checkpoint, model, n_train, config.training.batch_size, optimizer)
    try:
        model.load_state_dict(checkpoint.model_state)
        optimizer.load_state_dict(checkpoint.optimizer_state)
        match_optimizer_state_layout(optimizer)
        if scheduler is not None and checkpoint.scheduler_state:
            scheduler.load_state_dict(checkpoint.scheduler_state)
        if ema is not None:
            if checkpoint.ema_state is None:
                raise CheckpointError(f"{checkpoint.path} holds no moving average of the weights, but the run has "
                                      "training.ema_decay set; it is damaged: use the other checkpoint of the run")
            ema.load_state_dict(checkpoint.ema_state)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{checkpoint.path} does not fit this run's model ({exc}); use the other "
                              "checkpoint of the run, or start a new run") from None
    old_lr = (changes or {}).get("training.learning_rate", (None,))[0]
    if old_lr:
        factor = config.training.learning_rate / old_lr
        for group in optimizer.param_groups:
            group["lr"] *= factor
            if "initial_lr" in group:
                group["initial_lr"] *= factor
        if scheduler is not None and hasattr(scheduler, "base_lrs"):
            scheduler.base_lrs = [lr * factor for lr in scheduler.base_lrs]
    restore_rng(checkpoint.rng_tensors, checkpoint.rng_meta, *generators)
