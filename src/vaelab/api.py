"""The Python entry points ``vaelab.train`` and ``vaelab.resume``: a training run with every
callback a run has (the CLI calls these too).

The order of the callbacks is the order of their hooks: signals, the time budget, checkpoints,
the collapse check (it adds a warning to the summary before the summary is written), the run
files (``config.yaml``, ``metrics.csv``, ``summary.json``), TensorBoard, the end-of-run figures
(after ``summary.json``, before the trackers keep them as artifacts), MLflow/W&B, the console
lines and progress bars, and last your own ``callbacks``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from .config import Config
from .evaluation.latents import PosteriorCollapseCheck
from .plots.callbacks import Figures, TensorBoard
from .training.callbacks import (Callback, Checkpointing, Console, Progress, RunFiles, StepLog, StopOnSignals,
                                 TimeBudget, TrackerCallbacks)
from .training.runs import Run
from .training.runs import resume as _resume
from .training.runs import train as _train


def run_callbacks(verbose: bool = True, extra: Sequence[Callback] = ()) -> list[Callback]:
    """Every callback of a ``vaelab train`` run, in hook order, then ``extra``."""
    callbacks: list[Callback] = [StopOnSignals(), TimeBudget(), StepLog(), Checkpointing(),
                                 PosteriorCollapseCheck(), RunFiles(), TensorBoard(), Figures(), TrackerCallbacks()]
    if verbose:
        callbacks += [Console(), Progress()]
    return callbacks + list(extra)


def train(config: Config | dict | str | Path, verbose: bool = True, argv: list[str] | None = None,
          data=None, callbacks: Sequence[Callback] = (), *, encoder: nn.Module | None = None,
          decoder: nn.Module | None = None) -> Run:
    """Train a VAE as described by ``config`` and return the finished :class:`Run`; the
    arguments are :func:`vaelab.training.train`'s (``data``: arrays, or torch Datasets or
    DataLoaders; ``encoder`` and ``decoder``: your own modules, whose contract in shapes is
    :mod:`vaelab.models.networks`'), and ``callbacks`` are your own
    :class:`~vaelab.training.Callback` objects, called after the run's own."""
    return _train(config, verbose=verbose, argv=argv, data=data, callbacks=run_callbacks(verbose, callbacks),
                  encoder=encoder, decoder=decoder)


def resume(run_dir: str | Path, overrides: dict[str, Any] | None = None, verbose: bool = True,
           argv: list[str] | None = None, callbacks: Sequence[Callback] = (), *, data=None,
           encoder: nn.Module | None = None, decoder: nn.Module | None = None) -> Run:
    """Continue the run in ``run_dir`` (see :func:`vaelab.training.resume`: ``data`` for a run
    whose training Dataset streamed, ``encoder`` and ``decoder`` for a run of your own modules),
    with every callback of a run and then ``callbacks``."""
    return _resume(run_dir, overrides, verbose=verbose, argv=argv, callbacks=run_callbacks(verbose, callbacks),
                   data=data, encoder=encoder, decoder=decoder)


__all__ = ["Callback", "Run", "resume", "run_callbacks", "train"]
