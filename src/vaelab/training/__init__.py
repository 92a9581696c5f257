"""Training: the loop, checkpoints and the run directory."""

from .checkpoint import Checkpoint, TrainingState, read_checkpoint
from .optim import make_optimizer, make_scheduler
from .trainer import Run, load_model, resume, seed_everything, train, train_epoch

__all__ = ["Checkpoint", "Run", "make_optimizer", "make_scheduler", "TrainingState", "load_model", "read_checkpoint", "resume",
           "seed_everything", "train", "train_epoch"]
