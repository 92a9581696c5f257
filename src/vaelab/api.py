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
                                 TimeBudget)
from .training.trackers import MLflowTracker, WandbTracker
from .training.runs import Run, continue_run, start_run


def run_callbacks(verbose: bool = True, extra: Sequence[Callback] = ()) -> list[Callback]:
    """Every callback of a ``vaelab train`` run, in hook order, then ``extra``: the one list of
    them (``vaelab.train``, ``vaelab.resume``, the CLI and sweep workers all use it)."""
    callbacks: list[Callback] = [StopOnSignals(), TimeBudget(), StepLog(), Checkpointing(),
                                 PosteriorCollapseCheck(), RunFiles(), TensorBoard(), Figures(), MLflowTracker(),
                                 WandbTracker()]
    if verbose:
        callbacks += [Console(), Progress()]
    return callbacks + list(extra)


def train(config: Config | dict | str | Path, verbose: bool = True, argv: list[str] | None = None,
          data=None, callbacks: Sequence[Callback] = (), *, encoder: nn.Module | None = None,
          decoder: nn.Module | None = None) -> Run:
    """Train a VAE as described by ``config`` and return the finished :class:`Run`.

    Args:
        config: a :class:`Config`, a dict of its values, or the path of a YAML config.
        verbose: print one line per epoch, a progress bar (on a terminal) and a summary.
        argv: the command line, recorded in ``environment.json``.
        data: your own data instead of ``config.data.dataset``: ``(x_train, x_test)`` or
            ``(x_train, x_test, y_train, y_test)``, numpy arrays or tensors, images ``(N, H, W)``,
            ``(N, H, W, C)`` or ``(N, C, H, W)``, uint8 0..255 or float in [0, 1], labels ``(N,)``
            integers. They are checked and kept in the run directory as ``data.npz``, which
            ``data.dataset`` then names (so evaluation, figures and resume read them back). Or
            ``(train, test)``, two map-style ``torch.utils.data.Dataset`` s or ``DataLoader`` s
            (items: an image, or ``(image, label)``): read into memory the same way when they fit
            within ``data.max_gigabytes``, else the training dataset streams, read by index
            batch by batch (:mod:`vaelab.data.streaming`; resume such a run with
            :func:`resume`'s ``data``).
        callbacks: your own :class:`~vaelab.training.Callback` objects, called after the run's
            own (:func:`run_callbacks`).
        encoder, decoder: your own modules instead of ``model.network`` (give both; the contract
            in shapes is :mod:`vaelab.models.networks`'): ``model.network`` becomes ``custom``,
            the config's prior and likelihood are built around them, and they train in place
            (they end with the last epoch's weights). Resume, evaluate and plot such a run from
            Python with the same kind of modules (``encoder=``, ``decoder=``).

    Raises:
        ConfigError: invalid config, the run directory already holds a run, or your encoder
            and decoder break their contract (one line).
        DataError: the dataset cannot be found or is corrupt, or ``data`` is invalid (one line
            saying what is wrong).
        TrainingError: the loss became non-finite.
    """
    return start_run(config, run_callbacks(verbose, callbacks), argv=argv, data=data, encoder=encoder,
                     decoder=decoder)


def resume(run_dir: str | Path, overrides: dict[str, Any] | None = None, verbose: bool = True,
           argv: list[str] | None = None, callbacks: Sequence[Callback] = (), *, data=None,
           encoder: nn.Module | None = None, decoder: nn.Module | None = None) -> Run:
    """Continue the run in ``run_dir`` from its last checkpoint, with every callback of a run and
    then ``callbacks``.

    ``overrides`` (and edits of ``config.yaml``) may change only
    :data:`vaelab.training.runs.RESUME_OVERRIDABLE` (train longer, another device, a lower
    learning rate, clipping or skipping non-finite steps). A resume with nothing to train (the
    run has finished ``training.epochs``) changes nothing. Each resume is appended to
    ``environment.json``'s ``resumes``.

    ``data``: a run whose training dataset streamed (:func:`train`'s ``data``) needs it again:
    ``(train, test)`` as given then, or the training Dataset (or DataLoader) alone (its size and
    image shape are checked; the test split is the one kept in the run directory). ``encoder``
    and ``decoder``: a run of your own modules (``model.network: custom``) needs modules of
    the same architecture; the checkpoint's weights are loaded into them.

    Raises:
        CheckpointError: ``run_dir`` holds no run, or its checkpoint is unreadable or invalid.
        ConfigError: a change of another key (see :func:`vaelab.training.runs.resume_config`), or
            ``data``, ``encoder`` or ``decoder`` for a run that was not trained with them.
        DataError: a streamed run without its training dataset, or another one.
        RunDirectoryBusy: another process is working in ``run_dir``.
    """
    return continue_run(run_dir, run_callbacks(verbose, callbacks), overrides, verbose=verbose, argv=argv, data=data,
                        encoder=encoder, decoder=decoder)


__all__ = ["Callback", "Run", "resume", "run_callbacks", "train"]
