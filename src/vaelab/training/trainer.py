"""The training loop: batches, objective, backward, clipping, optimizer step, and hooks.

:class:`Trainer` holds a built run (model, optimizer, data, state) and :meth:`Trainer.fit` runs
its epochs; everything that is not the mathematics of a step (checkpoints, metrics.csv,
TensorBoard, trackers, console lines, progress bars, signals, figures) is a
:class:`~vaelab.training.callbacks.Callback`. Building a run from its config (and from a
checkpoint when resuming) is :mod:`vaelab.training.runs`.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..config import Config, ObjectiveConfig, TrainingConfig
from ..data import Dataset, InMemoryBatches, StreamedBatches, StreamedSplit
from ..errors import TrainingError, TrainingInterrupted, option
from ..models import VAE
from ..objectives import EXTRA_TERMS, Objective, evaluate_elbo, kl_weight, layer_keys
from ..rundir import RunDir
from ..runtime import autocast, flush_denormals
from . import distributed
from .callbacks import Callback, StepEnd
from .checkpoint import EpochPosition, TrainingState, encode_checkpoint, invalid_field, write_checkpoint
from .optim import clip_gradients, step_scheduler
from .stepsync import DeviceSums

TERMS = ("recon", "kl", "neg_elbo")


class _EndOfTraining(Exception):
    """Raised after a step by :meth:`Trainer.end_training`'s request: caught by the epoch loop."""


class Trainer:
    """A run ready to train: ``fit()`` trains epochs ``state.epoch + 1 .. training.epochs``.

    Callbacks read what they need from its attributes: ``config``, ``run_dir`` (a
    :class:`~vaelab.rundir.RunDir`), ``dataset``, ``model``, ``optimizer``, ``device``,
    ``state`` (the :class:`TrainingState` a checkpoint stores), ``batches``, ``eval_images``
    and ``eval_labels``; ``resuming``, ``changes`` (a resume's changed keys) and ``argv`` say
    how the run was started. ``ema`` is the moving average of the weights
    (``training.ema_decay``, a ``torch.optim.swa_utils.AveragedModel``) or None, and
    ``eval_model`` the model evaluation uses: the averaged one when there is one (the per-epoch
    evaluation, hence the best checkpoint, and the end-of-run figures), else ``model``.
    """

    def __init__(self, config: Config, run_dir: RunDir, dataset: Dataset, model: VAE,
                 optimizer: torch.optim.Optimizer, scheduler, objective: Objective, device: torch.device,
                 data_generator: torch.Generator, stored_config: dict[str, Any], *,
                 state: TrainingState | None = None, order: torch.Tensor | None = None,
                 callbacks: Sequence[Callback] = (), resuming: bool = False,
                 changes: dict[str, tuple[Any, Any]] | None = None, argv: list[str] | None = None,
                 ema: torch.nn.Module | None = None,
                 device_generator: torch.Generator | None = None, grad_scaler: torch.amp.GradScaler | None = None,
                 world: distributed.World = distributed.SINGLE):
        self.config, self.run_dir, self.dataset, self.model = config, run_dir, dataset, model
        self.optimizer, self.scheduler, self.objective, self.device = optimizer, scheduler, objective, device
        self.data_generator, self.stored_config = data_generator, stored_config
        self.device_generator = device_generator
        """A CUDA run's data generator on the GPU (batch order, binarisation); None on the CPU."""
        self.grad_scaler = grad_scaler
        """``training.precision: fp16``: the loss scaler (its state is in the checkpoint)."""
        self.state = state if state is not None else TrainingState()
        # a mid-epoch checkpoint's batch order, on the device the permutations are drawn on (a
        # CUDA run's GPU): each step slices its batch's indices from it without a host copy
        self.order = order.to((device_generator or data_generator).device) if order is not None else None
        self.world = world
        """This process's rank and the number of processes (torchrun; :mod:`.distributed`)."""
        # rank 0 writes the run directory: the other ranks keep only the callbacks all ranks need
        self.callbacks = [c for c in callbacks if world.main or getattr(c, "all_ranks", False)]
        self.step_module = None
        """With several ranks: the model's loss as one module wrapped in DistributedDataParallel."""
        if world.distributed:
            self.step_module = torch.nn.parallel.DistributedDataParallel(
                _LossModule(model, objective), device_ids=[device.index] if device.type == "cuda" else None)
        self.resuming, self.changes, self.argv = resuming, changes, argv
        self.ema = ema
        self.train_step = TrainStep(model, optimizer, objective, config.training, device, ema=ema,
                                    scaler=grad_scaler, step_module=self.step_module)
        """The optimiser step (:class:`TrainStep`), built once for every epoch."""
        self.stop_reason: str | None = None
        self.end_reason: str | None = None
        self.epoch_start: EpochPosition | None = None
        """Where the current epoch started: None, or the position of a mid-epoch checkpoint."""
        conditional = config.model.conditional
        self.eval_images = dataset.eval.images.to(device)
        self.eval_labels = dataset.eval.labels.to(device) if conditional else None
        if isinstance(dataset.train, StreamedSplit):  # your own Dataset, read by index a batch at a time
            self.batches = StreamedBatches(dataset.train, config.training.batch_size, shuffle=True,
                                           dynamic_binarize=dataset.binarize == "dynamic",
                                           generator=device_generator or data_generator, device=device)
        else:
            self.batches = InMemoryBatches(dataset.train.images.to(device), config.training.batch_size, shuffle=True,
                                           dynamic_binarize=dataset.binarize == "dynamic",
                                           generator=device_generator or data_generator,
                                           labels=dataset.train.labels.to(device) if conditional else None)

    def _call(self, hook: str, *args) -> None:
        with self.uncompiled():
            for callback in self.callbacks:
                getattr(callback, hook)(self, *args)

    def uncompiled(self):
        """A block in which the compiled encoder and decoder (``training.compile``) run eagerly:
        callbacks and evaluation call them without gradients (``no_grad``, ``inference_mode``)
        and with other batch sizes, each of which would compile new graphs; only the training
        steps use the compiled ones."""
        return torch.compiler.set_stance("force_eager") if self.config.training.compile else contextlib.nullcontext()

    def evaluate(self) -> dict[str, float]:
        """Mean ``recon``, ``kl`` and ``neg_elbo`` (nats per example) of :attr:`eval_model` on the
        evaluation split (:func:`~vaelab.objectives.evaluate_elbo`, its noise seeded with the
        run's seed).

        With several ranks each evaluates its own contiguous part of the split (exact parts whose
        sizes differ by at most one, no example padded or repeated: padding a split to equal
        parts, as a ``DistributedSampler`` does, counts some examples twice in the means) with the
        noise seeded ``seed + rank``, and the ranks' sums are added (an all-reduce) and divided by
        the size of the split."""
        images, labels, seed = self.eval_images, self.eval_labels, self.config.seed
        if self.world.distributed:
            part = distributed.shard(0, images.shape[0], self.world)
            images, labels, seed = images[part], labels[part] if labels is not None else None, seed + self.world.rank
        layers = len(getattr(self.eval_model, "latent_dims", ()))  # a hierarchical VAE's KL per layer too
        names = ["recon", "kl", *(f"kl_{i + 1}" for i in range(layers if layers > 1 else 0))]
        sums = torch.zeros(len(names), dtype=torch.float64, device=self.device)
        if images.shape[0]:
            with self.uncompiled():
                means = evaluate_elbo(self.eval_model, images, self.config.training.eval_batch_size,
                                      self.config.objective.n_samples, seed=seed, device=self.device, labels=labels)
            if not self.world.distributed:
                return means
            sums += torch.tensor([means[name] for name in names], dtype=torch.float64,
                                 device=self.device) * images.shape[0]
        means = dict(zip(names, (distributed.all_sum(sums, self.world) / self.eval_images.shape[0]).tolist()))
        return {**means, "neg_elbo": means["recon"] + means["kl"]}

    @property
    def eval_model(self) -> torch.nn.Module:
        """The model evaluation and figures use: the weights' moving average when the run keeps
        one, else the trained model."""
        return self.ema.module if self.ema is not None else self.model

    def request_stop(self, reason: str) -> None:
        """Stop after the current step's (or epoch's) hooks; ``reason`` starts the message
        (``"stopped by SIGTERM"``)."""
        self.stop_reason = reason

    def end_training(self, reason: str) -> None:
        """End training cleanly after the current step's (or epoch's) hooks, as if the last
        epoch had been reached: the checkpoint is written (after a step, ``on_stop``: a
        mid-epoch one), ``fit`` returns the summary with ``stopped: {"reason": reason, ...}``
        and the end-of-run hooks run (a time budget, :class:`~.callbacks.TimeBudget`). A
        resume continues the run."""
        self.end_reason = reason

    def save_checkpoint(self, paths, order: torch.Tensor | None = None) -> None:
        """Write the run's state (weights, optimizer, RNG, position) to each of ``paths``. With
        several ranks every rank calls it (each rank's RNG state is gathered) and rank 0 writes."""
        ranks = None
        if self.world.distributed:
            ranks = distributed.gather_objects(rank_rng_state(self.device), self.world)
            if not self.world.main:
                return
        write_checkpoint(paths, encode_checkpoint(self.model, self.optimizer, self.state, self.stored_config,
                                                  self.data_generator, self.scheduler, order, self.ema,
                                                  self.device_generator, self.grad_scaler, ranks,
                                                  callbacks=self.callback_states()))

    def _keyed_callbacks(self) -> list[tuple[str, Callback]]:
        """Each callback with its key in a checkpoint: its class name, ``#2``.. for repeats."""
        seen: dict[str, int] = {}
        keyed = []
        for callback in self.callbacks:
            name = type(callback).__qualname__
            seen[name] = seen.get(name, 0) + 1
            keyed.append((name if seen[name] == 1 else f"{name}#{seen[name]}", callback))
        return keyed

    def callback_states(self) -> dict[str, dict[str, Any]]:
        """Every callback's non-empty :meth:`~vaelab.training.callbacks.Callback.state_dict`, by key."""
        states = {key: callback.state_dict() for key, callback in self._keyed_callbacks()}
        return {key: state for key, state in states.items() if state}

    def load_callback_states(self, states: dict[str, dict[str, Any]], source) -> None:
        """Give each callback its state from a checkpoint (``source``, for messages); callbacks
        it has no state for keep theirs.

        Raises:
            CheckpointError: a callback refuses its state (the checkpoint is damaged).
        """
        for key, callback in self._keyed_callbacks():
            if key in states:
                try:
                    callback.load_state_dict(states[key])
                except (ValueError, TypeError, KeyError) as exc:
                    raise invalid_field(source, f"callbacks.{key}", str(exc)) from None

    def fit(self) -> dict[str, Any]:
        """Train the remaining epochs and return the summary (``summary.json``'s content).

        Raises:
            TrainingInterrupted: a callback asked to stop (SIGINT, SIGTERM).
            TrainingError: a non-finite loss or gradient (see :func:`train_epoch`).
        """
        state, last = self.state, self.run_dir.checkpoint("last")
        try:
            self._call("on_train_start")
            for epoch in range(state.epoch + 1, self.config.training.epochs + 1):
                self.epoch_start, state.position = state.position, None
                self._call("on_epoch_start", epoch)
                try:
                    train_metrics = run_epoch(self.train_step, self.batches, epoch, order=self.order,
                                              position=self.epoch_start, state=state, on_step=self._after_step,
                                              world=self.world)
                except _EndOfTraining:
                    break
                except TrainingError as exc:
                    if isinstance(exc, TrainingInterrupted) or not last.exists():
                        raise
                    raise TrainingError(f"{exc}. The last good checkpoint is kept: {last}") from None
                finally:
                    self._call("on_train_epoch_end", epoch)
                self.order, state.position = None, None  # the epoch is complete
                eval_metrics = self.evaluate()
                row = epoch_row(epoch, train_metrics, eval_metrics, self.dataset.eval_name)
                step_scheduler(self.scheduler, eval_metrics["neg_elbo"],
                               (lambda seconds: distributed.broadcast(seconds, self.world))
                               if self.world.distributed else None)
                state.history.append(row)
                state.epoch = epoch
                improved = eval_metrics["neg_elbo"] < state.best_value
                if improved:
                    state.best_value, state.best_epoch = eval_metrics["neg_elbo"], epoch
                self._call("on_epoch_end", row, improved)
                self._agree_on_stop()
                if self.stop_reason:
                    raise TrainingInterrupted(f"{self.stop_reason} after epoch {epoch}; checkpoint written to "
                                              f"{last}; continue with `vaelab train --resume {self.run_dir}`")
                if self.end_reason:
                    break
        except BaseException as exc:
            self._call("on_exception", exc)
            raise
        finally:
            self._call("on_loop_end")
        summary = make_summary(state, self.dataset.eval_name, self.run_dir)
        if self.end_reason:
            summary["stopped"] = {"reason": self.end_reason, "epochs_done": state.epoch,
                                  "epochs_planned": self.config.training.epochs,
                                  "mid_epoch_step": state.position.step if state.position else None}
        self._call("on_fit_end", summary)
        return summary

    def _agree_on_stop(self) -> None:
        """With several ranks: stop (or end training, a time budget) on all of them when one
        asked (all-reduces)."""
        if not self.world.distributed:
            return
        if distributed.any_rank(self.stop_reason is not None, self.device, self.world) and not self.stop_reason:
            self.stop_reason = "stopped by a signal to another rank"
        if distributed.any_rank(self.end_reason is not None, self.device, self.world) and not self.end_reason:
            self.end_reason = "training ended on another rank (its time budget)"

    def _after_step(self, step: StepEnd) -> None:
        self._call("on_batch_end", step)
        if self.world.distributed:
            if not step.synced:
                return  # the ranks agree on stopping at sync points only
            self._agree_on_stop()
        if self.end_reason and not self.stop_reason:
            step.sync()
            self._call("on_stop", step)
            raise _EndOfTraining
        if self.stop_reason:
            step.sync()
            self._call("on_stop", step)
            raise TrainingInterrupted(
                f"{self.stop_reason} at epoch {step.epoch}, step {step.position.step}; checkpoint written to "
                f"{self.run_dir.checkpoint('last')}; continue with `vaelab train --resume {self.run_dir}`"
            )


class TrainStep:
    """One optimiser step of a run, built once: the loss of a batch (under
    ``training.precision``'s autocast, through DDP's ``step_module`` with several ranks), its
    backward pass (scaled by a ``torch.amp.GradScaler``, enabled for fp16 only, which then owns
    overflowing gradients and skips their step), and the optimiser step with its hooks around
    it: gradient clipping before (``training.clip_value``/``clip_norm``), the weights' moving
    average after (``ema``)."""

    def __init__(self, model: VAE, optimizer: torch.optim.Optimizer, objective: Objective, training: TrainingConfig,
                 device: torch.device, *, ema: torch.nn.Module | None = None,
                 scaler: torch.amp.GradScaler | None = None, step_module: torch.nn.Module | None = None):
        self.model, self.optimizer, self.objective, self.training, self.device = (model, optimizer, objective,
                                                                                  training, device)
        self.named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        self.parameters = [p for _, p in self.named]
        self.scaler = scaler if scaler is not None else torch.amp.GradScaler(device.type, enabled=False)
        self.module = step_module
        clip = training.clip_value is not None or training.clip_norm is not None
        self.before_step: list[Callable[[], None]] = [lambda: clip_gradients(self.parameters, training)] if clip else []
        self.after_step: list[Callable[[], None]] = [lambda: ema.update_parameters(model)] if ema is not None else []

    def terms(self, x: torch.Tensor, beta: float, y: torch.Tensor | None = None):
        """The objective's terms on the batch ``x`` (B, C, H, W) with KL weight ``beta``."""
        with autocast(self.device, self.training.precision):
            if self.module is not None:
                return self.module(x, beta, y)
            return self.objective(self.model, x, beta) if y is None else self.objective(self.model, x, beta, y=y)

    def backward(self, loss: torch.Tensor) -> list[torch.Tensor | None]:
        """Fresh gradients of ``loss``; returns those to check for non-finite values (none when
        the fp16 scaler owns them)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if not self.scaler.is_enabled():
            return [p.grad for p in self.parameters]
        self.scaler.unscale_(self.optimizer)
        return [None] * len(self.parameters)

    def apply(self) -> None:
        """The optimiser step, with the hooks before and after it."""
        for hook in self.before_step:
            hook()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        for hook in self.after_step:
            hook()

    def skip(self) -> None:
        """Drop the step's gradients (a non-finite step under ``training.nonfinite: skip``)."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.update()  # ends the step the scaler unscaled (nothing when disabled)


class _LossModule(torch.nn.Module):
    """The objective of the model on a batch as one module, so that DistributedDataParallel
    sees the forward pass it synchronises the gradients of (the objective calls the model's
    encoder, decoder and prior, never its ``forward``)."""

    def __init__(self, model: VAE, objective: Objective):
        super().__init__()
        self.model = model
        self.__dict__["objective"] = objective  # not a submodule: its parameters are not trained

    def forward(self, x: torch.Tensor, beta: float, y: torch.Tensor | None = None):
        return self.objective(self.model, x, beta) if y is None else self.objective(self.model, x, beta, y=y)


def rank_rng_state(device: torch.device) -> dict[str, torch.Tensor]:
    """This rank's own RNG states: torch's CPU generator (and its CUDA device's)."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def epoch_row(epoch: int, train_metrics: dict[str, float], eval_metrics: dict[str, float],
              eval_name: str) -> dict[str, float]:
    """The epoch's row of ``metrics.csv``: train and evaluation terms (nats per example), the
    objective's extra terms, a hierarchical VAE's KL per layer (``train_kl_1``, ...,
    ``test_kl_1``, ...), KL weight, learning rate and seconds of training."""
    row: dict[str, float] = {"epoch": epoch}
    row.update({f"train_{k}": train_metrics[k] for k in TERMS})
    row.update({f"train_{k}": train_metrics[k] for k in EXTRA_TERMS if k in train_metrics})
    row.update({f"train_{k}": train_metrics[k] for k in layer_keys(train_metrics)})  # a hierarchical VAE's
    row.update({f"{eval_name}_{k}": eval_metrics[k] for k in TERMS})
    row.update({f"{eval_name}_{k}": eval_metrics[k] for k in layer_keys(eval_metrics)})
    row["kl_weight"] = train_metrics["kl_weight"]
    row["learning_rate"] = train_metrics["learning_rate"]
    row["train_seconds"] = train_metrics["seconds"]
    return row


def make_summary(state: TrainingState, eval_name: str, run_dir) -> dict[str, Any]:
    """``summary.json``: best epoch, best and final metrics, seconds per epoch."""
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


def train_epoch(model: VAE, optimizer: torch.optim.Optimizer, batches: InMemoryBatches | StreamedBatches,
                objective: ObjectiveConfig | Objective, training: TrainingConfig, device: torch.device,
                epoch: int, *, order: torch.Tensor | None = None, position: EpochPosition | None = None,
                state: TrainingState | None = None, on_step: Callable[[StepEnd], None] | None = None,
                ema: torch.nn.Module | None = None, scaler: torch.amp.GradScaler | None = None,
                world: distributed.World = distributed.SINGLE,
                step_module: torch.nn.Module | None = None) -> dict[str, float]:
    """One pass over ``batches`` (epoch ``epoch``, 1-based). ``objective`` is a config (ELBO or
    IWAE bound) or an :class:`~vaelab.objectives.Objective` (a perceptual term needs one:
    :func:`~vaelab.objectives.build_objective`).

    ``order`` and ``position`` continue an epoch a mid-epoch checkpoint stopped in (default: a
    fresh permutation from the start); ``position`` is updated after every step and
    ``on_step(StepEnd)`` is then called (callbacks: checkpoints, progress, interrupts). ``ema``
    (an ``AveragedModel`` of ``model``) is updated after every optimiser step (not after a
    skipped one).

    The forward pass runs under ``training.precision``'s autocast; ``scaler`` (fp16) scales
    the loss, and the steps whose scaled gradients overflow are skipped by it (they are not
    non-finite steps). The steps do not wait for the device: their sums and finiteness are
    read every ``training.sync_every_steps`` steps (:mod:`vaelab.training.stepsync`).

    With several ranks (``world``) each takes its shard of every batch through
    ``step_module`` (DDP), with the loss scaled so the gradient is that of the whole batch
    (:mod:`vaelab.training.distributed`); the returned metrics are those of all ranks.

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
    if not isinstance(objective, Objective):
        objective = Objective(objective)
    step = TrainStep(model, optimizer, objective, training, device, ema=ema, scaler=scaler, step_module=step_module)
    return run_epoch(step, batches, epoch, order=order, position=position, state=state, on_step=on_step, world=world)


def run_epoch(train_step: TrainStep, batches: InMemoryBatches | StreamedBatches, epoch: int, *,
              order: torch.Tensor | None = None, position: EpochPosition | None = None,
              state: TrainingState | None = None, on_step: Callable[[StepEnd], None] | None = None,
              world: distributed.World = distributed.SINGLE) -> dict[str, float]:
    """:func:`train_epoch` with its step built already (:class:`Trainer` builds one per run)."""
    train_step.model.train()
    order = batches.permutation() if order is None else order
    position = EpochPosition() if position is None else position
    state = TrainingState() if state is None else state
    with flush_denormals(train_step.device):
        _run_steps(train_step, batches, epoch, order, position, state, on_step, world)
    if position.n_seen == 0 and len(batches) > 0:
        raise TrainingError(
            f"epoch {epoch}: every one of its {len(batches)} steps was skipped (non-finite), so it has no "
            f"result; training stopped. Try a lower {option('training.learning_rate')} or gradient clipping "
            f"({option('training.clip_norm', 5)})"
        )
    recon, kl = position.recon_total / max(position.n_seen, 1), position.kl_total / max(position.n_seen, 1)
    return {"recon": recon, "kl": kl, "neg_elbo": recon + kl, "kl_weight": position.kl_weight,
            "learning_rate": train_step.optimizer.param_groups[0]["lr"], "seconds": position.seconds,
            **{name: total / max(position.n_seen, 1) for name, total in position.extra_totals.items()}}


def _run_steps(train_step: TrainStep, batches, epoch, order, position, state, on_step,
               world=distributed.SINGLE) -> None:
    steps = len(batches)
    training, device, objective = train_step.training, train_step.device, train_step.objective
    skip = training.nonfinite == "skip"  # deciding to skip a step needs its check before the optimizer step
    every = 1 if skip else training.sync_every_steps
    sums = DeviceSums(position, device, [name for name, _ in train_step.named], world)

    def sync() -> None:
        """Bring ``position``'s sums up to date (one CPU-GPU sync); stop at a non-finite step."""
        bad = sums.sync(position)
        if bad is not None:
            _skip_or_stop(bad[1], training, state, epoch, bad[0])

    seconds_before, start = position.seconds, time.perf_counter()
    try:
        for index in range(position.step, steps):
            step = index + 1
            size, part, scale = batches.batch_size_of(index), None, 1.0
            if world.distributed:  # this rank's shard, and the loss scale that makes DDP's mean the batch's
                part = distributed.shard(0, size, world)
                scale = world.size * (part.stop - part.start) / size
            x = batches.batch(order, index, part).to(device, non_blocking=True)  # (b, C, H, W)
            y = batches.batch_labels(order, index, part)  # None unless the VAE is conditional
            beta = kl_weight(objective.config, (epoch - 1) * steps + index, steps, training.epochs)
            terms = train_step.terms(x, beta, y)
            loss = terms.loss if scale == 1.0 else terms.loss * scale
            summed = torch.stack([terms.recon.detach().sum(), terms.kl.detach().sum()]).float()  # (2,) on the device
            sums.record(step, summed, train_step.backward(loss))
            skipped = False
            if skip:
                bad = sums.sync(position)  # skip mode: one sync per step
                if bad is not None:
                    _skip_or_stop(bad[1], training, state, epoch, bad[0])
                    train_step.skip()
                    skipped = True
            if not skipped:
                train_step.apply()
                sums.add(summed, terms.extra)
                position.n_seen += size
            position.step = step
            position.kl_weight = beta
            synced = step % every == 0 or step == steps
            if synced:
                sync()  # waits for the device: the clock below counts its work up to this step
            position.seconds = seconds_before + time.perf_counter() - start
            if on_step is not None:
                step_loss = (summed[0] + beta * summed[1]) / x.shape[0]
                on_step(StepEnd(epoch, order, position, step_loss, size, sync=sync, synced=synced))
    except TrainingError:
        raise
    except Exception as exc:
        # a step after an unchecked non-finite one may fail in its own way (a NaN scale):
        # report the first non-finite step instead (alone: with several ranks a collective here
        # would wait for ranks that are not failing; torchrun stops them). Not after running out
        # of memory, and the first error stands when the sync fails too (a failed device fails
        # every later read)
        if not world.distributed and not isinstance(exc, torch.OutOfMemoryError):
            try:
                sync()
            except TrainingError:
                raise
            except Exception:
                pass
        raise


def _skip_or_stop(bad: str, training: TrainingConfig, state: TrainingState, epoch: int, step: int) -> None:
    """A non-finite step: skip it (``--nonfinite skip``, within ``max_skipped_steps``) or stop.

    Raises:
        TrainingError: the run stops here.
    """
    if training.nonfinite == "skip" and state.skipped_steps < training.max_skipped_steps:
        state.skipped_steps += 1
        warnings.warn(f"epoch {epoch}, step {step}: {bad} is not finite; step skipped "
                      f"({state.skipped_steps}/{training.max_skipped_steps})", stacklevel=3)
        return
    why = "" if training.nonfinite == "stop" else f" after {state.skipped_steps} skipped steps"
    raise TrainingError(
        f"epoch {epoch}, step {step}: {bad} is not finite{why}; training stopped. Try a lower "
        f"{option('training.learning_rate')}, gradient clipping ({option('training.clip_norm', 5)}) or "
        f"{option('training.nonfinite', 'skip')} (each allowed on resume), or a new run with a larger "
        f"{option('model.scale_floor')} for learned scales"
    )
