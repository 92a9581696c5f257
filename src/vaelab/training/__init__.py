"""Training: the loop (trainer.py), its callbacks, checkpoints, and starting or resuming a run
(runs.py: the engines behind ``vaelab.train`` and ``vaelab.resume``, the public entry points in
:mod:`vaelab.api`)."""

from .callbacks import Callback, StepEnd
from .checkpoint import Checkpoint, TrainingState, load_model, read_checkpoint
from .optim import make_optimizer, make_scheduler
from .runs import Run, seed_everything
from .trainer import Trainer, train_epoch
from .weights import export_weights, load_weights

__all__ = ["Callback", "Checkpoint", "Run", "StepEnd", "Trainer", "TrainingState", "export_weights", "load_model",
           "load_weights", "make_optimizer", "make_scheduler", "read_checkpoint", "seed_everything",
           "train_epoch"]
