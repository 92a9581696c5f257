"""Callbacks: everything a training run does besides the mathematics of a step.

The :class:`~vaelab.training.trainer.Trainer` calls, for every callback in its list and in
that order, ``callback.on_<hook>(trainer, ...)`` at these points::

    on_train_start(trainer)                 before the first epoch (also of a resume)
    on_epoch_start(trainer, epoch)          before the epoch's first step
    on_batch_end(trainer, step)             after each optimizer step (a :class:`StepEnd`)
    on_stop(trainer, step)                  a stop was asked for after this step: write what a
                                            resume needs (the mid-epoch checkpoint)
    on_train_epoch_end(trainer, epoch)      after the epoch's last step, before its evaluation
                                            (also when a step raised)
    on_epoch_end(trainer, row, improved)    after evaluation: ``row`` is the epoch's metrics.csv
                                            row, ``improved`` whether it is the best epoch so far
    on_exception(trainer, exc)              the loop raised (a stop, a non-finite loss, Ctrl-C)
    on_loop_end(trainer)                    after the loop, always (close writers, handlers)
    on_fit_end(trainer, summary)            the run completed; ``summary`` is summary.json's
                                            content (a callback before the writer may add to it)

A callback that must continue where it was after a resume (a time budget's epoch durations)
returns its state from ``state_dict()`` (a JSON-serialisable dict) and takes it back in
``load_state_dict(state)``: every checkpoint holds the states (metadata ``callbacks``, keyed by
the callback's class name, ``#2``.. for a second of the same class), and a resume gives each
callback its own before ``on_train_start`` (a checkpoint written before callbacks had state
gives none).

A callback may ask the trainer to stop with ``trainer.request_stop(reason)``: the trainer
finishes the step's (or epoch's) hooks, calls ``on_stop`` after a step (the epoch's checkpoint
is already written after an epoch) and raises :class:`~vaelab.errors.TrainingInterrupted`.
The run directory's writers (:class:`Checkpointing`, :class:`RunFiles`, trackers, TensorBoard,
figures) are all callbacks, so a distributed trainer can keep them to rank 0 in one place: the
list it builds. Callbacks that need :mod:`vaelab.evaluation` or :mod:`vaelab.plots` (the
posterior-collapse check, TensorBoard, the end-of-run figures) live there, and the entry point
(:mod:`vaelab.api`) wires them.

Your own callback, from Python::

    class PrintKL(vaelab.Callback):
        def on_epoch_end(self, trainer, row, improved):
            print(row["epoch"], row["test_kl"])

    vaelab.train({"training": {"epochs": 2}}, callbacks=[PrintKL()])
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, Any

import torch

from ..errors import option
from .checkpoint import EpochPosition

if TYPE_CHECKING:
    from .trainer import Trainer


@dataclass
class StepEnd:
    """What :meth:`Callback.on_batch_end` gets after a step: the epoch, the data order and the
    position inside the epoch (``position.step``: steps done, 1-based), the step's loss per
    example (recon + β·KL, nats) and its batch size.

    The running sums in ``position`` are brought up to date on the host every
    ``training.sync_every_steps`` steps; a callback that needs them now (a checkpoint) calls
    :meth:`sync` first, which also raises :class:`~vaelab.errors.TrainingError` if a step
    since the last check was not finite. Reading :attr:`loss` waits for the step's result
    (a CPU-GPU sync on CUDA): read it only now and then.
    """

    epoch: int
    order: torch.Tensor
    position: EpochPosition
    loss_value: torch.Tensor | float
    batch_size: int
    sync: Callable[[], None] = lambda: None
    synced: bool = True
    """Whether the position's sums were brought up to date at this step (a sync point)."""

    @property
    def loss(self) -> float:
        return float(self.loss_value)


class Callback:
    """A training callback: override the hooks you need (see the module's docstring).

    In a run on several processes (torchrun) only rank 0 runs callbacks, unless their class
    sets ``all_ranks = True`` (signals, and checkpoints, which gather every rank's RNG state
    and are written by rank 0 alone)."""

    all_ranks = False

    def state_dict(self) -> dict[str, Any]:
        """What this callback needs to continue after a resume, saved in every checkpoint: a
        JSON-serialisable dict (default: nothing, ``{}``)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back :meth:`state_dict`'s dict from the checkpoint a run resumes (before
        ``on_train_start``).

        Raises:
            ValueError: a state this callback cannot use (the checkpoint is then reported damaged).
        """

    def on_train_start(self, trainer: Trainer) -> None:
        pass

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        pass

    def on_batch_end(self, trainer: Trainer, step: StepEnd) -> None:
        pass

    def on_stop(self, trainer: Trainer, step: StepEnd) -> None:
        pass

    def on_train_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, row: dict[str, float], improved: bool) -> None:
        pass

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        pass

    def on_loop_end(self, trainer: Trainer) -> None:
        pass

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        pass


class StopOnSignals(Callback):
    """While training, SIGINT and SIGTERM only note the signal; at the next step (or epoch) end
    it asks the trainer to stop, which then writes a checkpoint (:class:`Checkpointing`) and
    raises. Previous handlers are restored after the loop. Outside the main thread it does
    nothing. It runs on every rank: a signal to one stops them all."""

    all_ranks = True

    def __init__(self):
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def on_train_start(self, trainer: Trainer) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum, frame):
            self.signal = signal.Signals(signum).name

        self._previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}

    def _forward(self, trainer: Trainer) -> None:
        if self.signal:
            trainer.request_stop(f"stopped by {self.signal}")

    def on_batch_end(self, trainer: Trainer, step: StepEnd) -> None:
        self._forward(trainer)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, float], improved: bool) -> None:
        self._forward(trainer)

    def on_loop_end(self, trainer: Trainer) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous = {}


class TimeBudget(Callback):
    """``training.max_minutes``: a wall-clock budget on training, counted from the start of this
    ``train`` (or ``--resume``: each command gets the budget, which a resume may change).

    It is checked at epoch granularity: after an epoch, when the time so far plus the longest
    of the last three epochs (training and evaluation; on a shared machine epochs vary) would
    pass the budget, training ends there
    (:meth:`Trainer.end_training`), so every epoch in ``metrics.csv`` is complete and the last
    checkpoint is an end-of-epoch one. As a backstop, a step that ends past the budget (an epoch
    slower than the last) ends training there with a mid-epoch checkpoint. Either way the run
    ends as a finished one (``summary.json`` with ``stopped``, exit status 0); ``--resume`` with
    a larger ``--max-minutes`` or none continues it exactly.

    Its state survives a resume (:meth:`state_dict`, in the checkpoint): the durations of the
    last three epochs, so the first check after a resume judges the next epoch by the epochs
    before it, and the seconds already spent in an epoch a mid-epoch checkpoint stopped, so that
    epoch's duration is counted whole.
    """

    def __init__(self, clock: Callable[[], float] | None = None):
        self._clock = clock
        self.start: float | None = None
        self.epoch_started: float | None = None
        self.durations: list[float] = []
        self._carried = 0.0  # seconds of the current epoch spent before a resume

    def state_dict(self) -> dict[str, Any]:
        """``durations``: the last three epochs' seconds (training and evaluation);
        ``epoch_seconds``: seconds into the current epoch (None between epochs)."""
        inside = None if self.epoch_started is None else max(0.0, self.now() - self.epoch_started)
        return {"durations": list(self.durations), "epoch_seconds": inside}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        durations, inside = state.get("durations", []), state.get("epoch_seconds")
        if not isinstance(durations, list) or not all(_seconds(d) for d in durations):
            raise ValueError(f"durations must be a list of seconds >= 0, got {durations!r}"[:120])
        if inside is not None and not _seconds(inside):
            raise ValueError(f"epoch_seconds must be seconds >= 0 or null, got {inside!r}"[:120])
        self.durations = [float(d) for d in durations[-3:]]
        self._carried = float(inside or 0.0)

    def now(self) -> float:
        return self._clock() if self._clock is not None else monotonic()

    @staticmethod
    def _budget(trainer: Trainer) -> float | None:
        minutes = trainer.config.training.max_minutes
        return None if minutes is None else 60.0 * minutes

    def _end(self, trainer: Trainer, where: str) -> None:
        trainer.end_training(f"time budget: training.max_minutes={trainer.config.training.max_minutes:g} "
                             f"reached {where}")

    def on_train_start(self, trainer: Trainer) -> None:
        self.start = self.now()

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.epoch_started, self._carried = self.now() - self._carried, 0.0

    def on_batch_end(self, trainer: Trainer, step: StepEnd) -> None:
        budget = self._budget(trainer)
        if budget is not None and self.now() - self.start > budget:
            self._end(trainer, f"during epoch {step.epoch}, after step {step.position.step}")

    def on_epoch_end(self, trainer: Trainer, row: dict[str, float], improved: bool) -> None:
        now = self.now()
        self.durations = [*self.durations[-2:], now - self.epoch_started]
        self.epoch_started = None
        budget = self._budget(trainer)
        if budget is None or row["epoch"] >= trainer.config.training.epochs:
            return
        if now - self.start + max(self.durations) > budget:
            self._end(trainer, f"after epoch {row['epoch']} (another epoch would end past it)")


def _seconds(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < float("inf")


class Checkpointing(Callback):
    """``checkpoints/last.safetensors`` after every epoch, every
    ``training.checkpoint_every_steps`` steps and when a stop was asked for;
    ``checkpoints/best.safetensors`` too when the epoch is the best so far. It runs on every
    rank (the checkpoint gathers each rank's RNG state); rank 0 writes."""

    all_ranks = True

    def __init__(self):
        self._saved: tuple[int, int] | None = None  # (epoch, step) of the last mid-epoch checkpoint

    def _save_position(self, trainer: Trainer, step: StepEnd) -> None:
        if self._saved == (step.epoch, step.position.step):
            return
        step.sync()  # the position's sums on the host, and no unchecked non-finite step
        trainer.state.position = step.position
        trainer.save_checkpoint([trainer.run_dir.checkpoint("last")], step.order)
        self._saved = (step.epoch, step.position.step)

    def on_batch_end(self, trainer: Trainer, step: StepEnd) -> None:
        every = trainer.config.training.checkpoint_every_steps
        if every and step.position.step % every == 0:
            self._save_position(trainer, step)

    def on_stop(self, trainer: Trainer, step: StepEnd) -> None:
        self._save_position(trainer, step)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, float], improved: bool) -> None:
        targets = [trainer.run_dir.checkpoint("last")]
        if improved:
            targets.append(trainer.run_dir.checkpoint("best"))
        trainer.save_checkpoint(targets)


class StepLog(Callback):
    """``training.log_every_steps``: ``steps.csv``, one row every N steps (in the first
    ``training.log_steps_epochs`` epochs): the epoch, the step, the mean training reconstruction,
    KL and negative ELBO (nats per example) over the steps since the row before in the same epoch
    (not the epoch's running average), the KL weight, and the epoch's running sums that the
    means are taken from. The file is rewritten whole at each row; a resume first drops the rows
    past its checkpoint, so the file ends as an uninterrupted run's would. It runs on every rank
    (its sync is collective with several); rank 0 writes."""

    all_ranks = True

    def __init__(self):
        self.rows: list[dict[str, float]] = []

    def on_train_start(self, trainer: Trainer) -> None:
        from ..rundir import read_metrics_csv

        self.rows = []
        if not trainer.config.training.log_every_steps:
            return
        path = trainer.run_dir.steps_csv
        if trainer.resuming and path.is_file():
            state = trainer.state
            step = state.position.step if state.position is not None else 0
            rows = [{**r, "step": int(r["step"]), "epoch_examples": int(r["epoch_examples"])}
                    for r in read_metrics_csv(path)]
            self.rows = [r for r in rows
                         if r["epoch"] <= state.epoch or (r["epoch"] == state.epoch + 1 and r["step"] <= step)]

    def on_batch_end(self, trainer: Trainer, step: StepEnd) -> None:
        training = trainer.config.training
        every = training.log_every_steps
        if not every or step.position.step % every or (training.log_steps_epochs and step.epoch > training.log_steps_epochs):
            return
        step.sync()  # the position's sums on the host
        position = step.position
        before = self.rows[-1] if self.rows and self.rows[-1]["epoch"] == step.epoch else None
        n = position.n_seen - (before["epoch_examples"] if before else 0)
        recon = (position.recon_total - (before["epoch_recon_sum"] if before else 0.0)) / max(n, 1)
        kl = (position.kl_total - (before["epoch_kl_sum"] if before else 0.0)) / max(n, 1)
        self.rows.append({"epoch": step.epoch, "step": position.step, "train_recon": recon, "train_kl": kl,
                          "train_neg_elbo": recon + kl, "kl_weight": position.kl_weight,
                          "epoch_examples": position.n_seen, "epoch_recon_sum": position.recon_total,
                          "epoch_kl_sum": position.kl_total})
        if trainer.world.main:
            from ..rundir import write_metrics_csv

            write_metrics_csv(trainer.run_dir.steps_csv, self.rows)


class RunFiles(Callback):
    """The run directory's own files: ``config.yaml``, ``environment.json`` (a resume is
    appended to its ``resumes``), ``data.json`` (your own data) and ``metrics.csv`` at the
    start, ``metrics.csv`` after every epoch, ``summary.json`` at the end."""

    def on_train_start(self, trainer: Trainer) -> None:
        from .environment import environment_json, write_data_source

        run_dir = trainer.run_dir
        run_dir.write_config(trainer.config)
        run_dir.write_environment(environment_json(run_dir, trainer.config, trainer.device, trainer.argv,
                                                   trainer.resuming, trainer.state, trainer.changes, trainer.model))
        write_data_source(run_dir, trainer.dataset)
        run_dir.write_metrics(trainer.state.history)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, float], improved: bool) -> None:
        trainer.run_dir.write_metrics(trainer.state.history)

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        trainer.run_dir.write_summary(summary)


class Logger(Callback):
    """One logger of ``training.logger`` (``--logger tensorboard,mlflow``): a callback that
    acts only in runs whose list names it (``name``), through four hooks of its own. Every logger
    of vaelab is one (TensorBoard in :mod:`vaelab.plots.callbacks`, MLflow and W&B in
    :mod:`vaelab.training.trackers`; ``csv``, ``metrics.csv``, is written by :class:`RunFiles`
    in every run), and :func:`vaelab.api.run_callbacks` lists each once.

    A logger that must continue its own run after a resume (an MLflow or W&B run id) returns
    what it needs from :meth:`resume_state`: it is kept under its name in ``RUN_DIR/trackers.json``
    as soon as the logger has started, before any checkpoint exists, and :meth:`start` reads it
    back with :meth:`previous_state`."""

    name = ""

    def __init__(self):
        self.active = False

    def start(self, trainer: Trainer) -> None:
        """Open the logger (``trainer.config``, ``trainer.run_dir``; a resume has
        ``trainer.state.epoch`` > 0)."""

    def log_epoch(self, trainer: Trainer, row: dict[str, float]) -> None:
        """Log one epoch's ``metrics.csv`` row (``row["epoch"]`` the step)."""

    def finish(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        """The run completed: log ``summary`` and the run's files, and close."""

    def fail(self, trainer: Trainer, exc: BaseException) -> None:
        """The run stopped on ``exc`` (a signal, a non-finite loss): mark the logged run so."""

    def resume_state(self) -> dict[str, Any]:
        """What a resumed run needs to continue this logger's run (default: nothing)."""
        return {}

    def previous_state(self, trainer: Trainer) -> dict[str, Any] | None:
        """This logger's :meth:`resume_state` from an earlier start of the run, or None."""
        return trainer.run_dir.read_trackers().get(self.name)

    def _save_state(self, trainer: Trainer) -> None:
        state = self.resume_state()
        if state:
            trainer.run_dir.write_trackers(trainer.run_dir.read_trackers() | {self.name: state})

    def on_train_start(self, trainer: Trainer) -> None:
        from ..config import logger_names

        self.active = self.name in logger_names(trainer.config.training.logger)
        if self.active:
            self.start(trainer)
            self._save_state(trainer)

    def on_epoch_end(self, trainer: Trainer, row: dict[str, float], improved: bool) -> None:
        if self.active:
            self.log_epoch(trainer, row)

    def on_exception(self, trainer: Trainer, exc: BaseException) -> None:
        if self.active:
            try:
                self.fail(trainer, exc)
            except Exception:  # noqa: BLE001  a logger failing to close must not hide the error
                pass

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        if self.active:
            self.finish(trainer, summary)
            self._save_state(trainer)


class Console(Callback):
    """The lines a run prints: where it trains (and a hint on a busy machine), one line per
    epoch (with a note, once, when an epoch was slowed down by other processes), and the summary
    at the end."""

    def __init__(self):
        self.clocks: tuple[float, float] | None = None  # (wall, CPU) at the epoch's start
        self.warned_slow = False

    def on_train_start(self, trainer: Trainer) -> None:
        from .environment import busy_machine_hint

        config, state, run_dir, dataset = trainer.config, trainer.state, trainer.run_dir, trainer.dataset
        if state.epoch >= config.training.epochs:
            print(f"run {run_dir} already finished {state.epoch} epochs; pass {option('training.epochs', 'N')} to train longer")
        elif state.epoch or state.position:
            where = f", step {state.position.step}" if state.position else ""
            print(f"resuming {run_dir} after epoch {state.epoch}{where}")
        print(f"training on {config.data.dataset} ({len(dataset.train)} train, {len(dataset.eval)} "
              f"{dataset.eval_name}) on {trainer.device}; run directory {run_dir}")
        busy = busy_machine_hint(trainer.device)
        if busy:
            print(busy)

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.clocks = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, trainer: Trainer, row: dict[str, float], improved: bool) -> None:
        split = trainer.dataset.eval_name
        print(f"epoch {row['epoch']:3d}/{trainer.config.training.epochs}  train -ELBO {row['train_neg_elbo']:8.3f}  "
              f"{split} -ELBO {row[f'{split}_neg_elbo']:8.3f} (recon {row[f'{split}_recon']:.3f}, KL "
              f"{row[f'{split}_kl']:.3f})  {row['train_seconds']:.1f} s")
        if trainer.device.type == "cpu" and not self.warned_slow and self.clocks is not None:
            slow = slow_epoch_hint(time.perf_counter() - self.clocks[0], time.process_time() - self.clocks[1],
                                   torch.get_num_threads())
            if slow:
                print(slow)
                self.warned_slow = True

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        print_summary(summary, trainer.config.figures.draw_at_end)


SLOW_SHARE = 0.35  # below this share of its threads' CPU time an epoch is reported as slowed down


def slow_epoch_hint(wall_seconds: float, cpu_seconds: float, threads: int) -> str | None:
    """A one-line note when an epoch got much less CPU time than its threads could use.

    On an idle machine a CPU epoch keeps its ``threads`` busy, so its process CPU time is close
    to ``wall_seconds * threads``; when other processes share the cores the epoch gets a smaller
    share and takes about ``1 / share`` times as long as it would alone. Epochs under 2 s are not
    judged (start-up costs dominate them).

    Args:
        wall_seconds: the epoch's wall-clock time (s).
        cpu_seconds: the CPU time the process used in it, all threads together (s).
        threads: torch's intra-op thread count.

    Returns:
        The note, or None when the epoch got at least ``SLOW_SHARE`` of its threads' time.
    """
    if wall_seconds < 2.0 or threads < 1:
        return None
    share = cpu_seconds / (wall_seconds * threads)
    if share >= SLOW_SHARE:
        return None
    advice = "stop them" + ("" if threads == 1 else f", or use {option('threads', 1)}")  # one thread: nothing to cut
    return (f"note: this epoch got {share:.0%} of the CPU time its {threads} thread(s) could use "
            f"({cpu_seconds:.1f} s of CPU in {wall_seconds:.1f} s), so it ran about {1 / max(share, 1e-3):.0f}x "
            f"slower than on an idle machine: other processes share the cores; {advice}")


def print_summary(summary: dict[str, Any], figures: bool = True) -> None:
    """The end-of-run lines: best and final epoch's negative ELBO, seconds per epoch, the run
    directory (and where its figures go, ``figures``: drawn at the end of training)."""
    stopped = summary.get("stopped")
    if stopped:
        print(f"training ended early: {stopped['reason']} ({stopped['epochs_done']} of "
              f"{stopped['epochs_planned']} epochs done)")
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
        f"run directory: {summary['run_dir']}"
        + (f"  (figures in {summary['run_dir']}/figures)" if figures else
           f"  (no figures: `vaelab plot {summary['run_dir']}` draws them)")
    )


class Progress(Callback):
    """A progress bar per epoch (tqdm on a terminal, else a line every 10 s) when
    ``training.progress`` is on."""

    def __init__(self):
        self.bar = None

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        self.bar = progress_bar(trainer.config, len(trainer.batches), epoch, trainer.epoch_start)

    def on_batch_end(self, trainer: Trainer, step: StepEnd) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if step.position.step % max(20, trainer.config.training.sync_every_steps) == 0:  # a sync
                self.bar.set_postfix(loss=f"{step.loss:.2f}")

    def on_train_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


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


def progress_bar(config, total: int, epoch: int, position: EpochPosition | None = None):
    """The epoch's progress display (None when ``training.progress`` is off)."""
    if not config.training.progress:
        return None
    if not sys.stdout.isatty():
        return _PlainProgress(total, position.step if position else 0, epoch)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=position.step if position else 0, desc=f"epoch {epoch}", leave=False,
                disable=None, unit="batch")


__all__ = ["Callback", "Checkpointing", "Console", "Logger", "Progress", "RunFiles", "StepEnd", "StepLog",
           "StopOnSignals", "TimeBudget", "print_summary", "progress_bar"]
