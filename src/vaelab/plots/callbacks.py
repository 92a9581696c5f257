"""The plots' training callbacks (wired by :mod:`vaelab.api`): TensorBoard scalars, image grids
and hyper-parameters during training, and every figure of the run at its end."""

from __future__ import annotations

from ..processes import interrupt_on_signals
from ..training.callbacks import Callback, Logger
from .run import plot_run
from .tensorboard import log_config, log_epoch_images


class TensorBoard(Logger):
    """``--logger tensorboard``: ``RUN_DIR/tensorboard/`` gets the config as hyper-parameters,
    every ``metrics.csv`` column as a scalar per epoch (``train/neg_elbo``, ...) and image grids
    on :func:`~vaelab.plots.tensorboard.should_log_images`'s schedule. A resumed run purges the events after its epoch."""

    name = "tensorboard"

    def __init__(self):
        super().__init__()
        self.writer = None

    def start(self, trainer) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(trainer.run_dir.tensorboard), purge_step=trainer.state.epoch + 1)
        log_config(self.writer, trainer.config, trainer.dataset.eval_name)

    def log_epoch(self, trainer, row: dict[str, float]) -> None:
        epoch = row["epoch"]
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key.replace("_", "/", 1), value, epoch)
        log_epoch_images(self.writer, trainer.eval_model, trainer.dataset, trainer.config, epoch)
        self.writer.flush()

    def on_loop_end(self, trainer) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Figures(Callback):
    """At the end of training, every figure of :func:`plot_run` of the last model (the weights'
    moving average with ``training.ema_decay``), into ``RUN_DIR/figures`` (the same figures as
    ``vaelab plot RUN_DIR``). Put it after the
    summary's writer (the loss curves mark its best epoch) and before the trackers (which keep
    the figures as artifacts). ``figures.draw_at_end: false`` turns it off."""

    def on_fit_end(self, trainer, summary: dict) -> None:
        if not trainer.config.figures.draw_at_end:
            return
        redo = f"`vaelab plot {trainer.run_dir.path}`"
        with interrupt_on_signals(f"training finished and is saved, but the figures were not all drawn; draw them with {redo}"):
            plot_run(trainer.run_dir.path, model=trainer.eval_model, dataset=trainer.dataset)
