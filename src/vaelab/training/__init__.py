"""Training: the loop (trainer.py), its callbacks, checkpoints, and starting or resuming a run
(runs.py). ``vaelab.train`` (:mod:`vaelab.api`) is :func:`train` with TensorBoard, the
posterior-collapse check and the end-of-run figures added to the callbacks."""

from .callbacks import Callback, StepEnd, training_callbacks
from .checkpoint import Checkpoint, TrainingState, load_model, read_checkpoint
from .optim import make_optimizer, make_scheduler
from .runs import Run, resume, seed_everything, train
from .trainer import Trainer, train_epoch
from .weights import export_weights, load_weights

__all__ = ["Callback", "Checkpoint", "Run", "StepEnd", "Trainer", "TrainingState", "export_weights", "load_model",
           "load_weights", "make_optimizer", "make_scheduler", "read_checkpoint", "resume", "seed_everything", "train",
           "train_epoch", "training_callbacks"]
