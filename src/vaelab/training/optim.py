"""Optimisers, learning-rate schedules and gradient clipping, chosen by configuration."""

from __future__ import annotations

import math
from time import monotonic
from typing import Any, Callable, NamedTuple

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .. import runtime
from ..config import TrainingConfig
from ..errors import ConfigError, option
from ..models import build_model


class OptimizerEntry(NamedTuple):
    build: Callable[[Any, TrainingConfig], torch.optim.Optimizer]
    """fn(parameters, training config) -> the optimiser."""
    state_copies: int
    """float32 copies of the weights it keeps: weights, gradients and its state (memory check)."""
    momentum: bool = False
    """Whether ``training.momentum`` applies."""
    nesterov: bool = False
    """Whether ``training.nesterov`` applies."""


OPTIMIZERS = {
    # training.optimizer -> its builder; Adam and AdamW use the fused kernel, which updates every
    # parameter in one op (measured: about 20% faster per MNIST epoch than the for-each default)
    "adam": OptimizerEntry(lambda params, c: torch.optim.Adam(params, lr=c.learning_rate,
                                                              weight_decay=c.weight_decay, fused=True), 4),
    "adamw": OptimizerEntry(lambda params, c: torch.optim.AdamW(params, lr=c.learning_rate,
                                                                weight_decay=c.weight_decay, fused=True), 4),
    # fp16: the fused kernel skips a step whose scaled gradients overflowed on the device, where the
    # unfused step makes GradScaler read the overflow flag on the host first (a sync every step);
    # fp32 and bf16 keep the default kernel, whose numbers earlier runs have
    "sgd": OptimizerEntry(lambda params, c: torch.optim.SGD(params, lr=c.learning_rate, momentum=c.momentum,
                                                            nesterov=c.nesterov, weight_decay=c.weight_decay,
                                                            fused=True if c.precision == "fp16" else None), 2,
                          momentum=True, nesterov=True),
    # RMSprop has no fused kernel: with fp16 its GradScaler.step syncs with the host every step
    "rmsprop": OptimizerEntry(lambda params, c: torch.optim.RMSprop(params, lr=c.learning_rate, momentum=c.momentum,
                                                                    weight_decay=c.weight_decay), 3,
                              momentum=True),
}


def make_optimizer(model: torch.nn.Module, config: TrainingConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``config.optimizer`` (:data:`OPTIMIZERS`), over all of
    ``model``'s parameters.

    ``weight_decay`` is the L2 penalty λ (added to the gradient as λ·w; AdamW applies it
    decoupled, Loshchilov & Hutter 2019).
    """
    if config.optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {config.optimizer!r}")
    return OPTIMIZERS[config.optimizer].build(model.parameters(), config)


class BudgetCosine(torch.optim.lr_scheduler.LRScheduler):
    """``lr_schedule: cosine`` with ``lr_schedule_span: time``: the cosine decay of
    :class:`torch.optim.lr_scheduler.CosineAnnealingLR` (Loshchilov & Hutter 2017, eq. 5 with
    one cycle and a minimum of 0), ``lr = base_lr * (1 + cos(pi * progress)) / 2``, whose
    progress is the larger of the epochs' and the time budget's after each epoch:
    ``progress = max(epoch / epochs, p0 + (1 - p0) * seconds / budget_seconds)``, capped at 1,
    so the rate reaches 0 when either runs out, whichever is first (a decay sized to the
    budget, as in Li et al. 2020, "Budgeted training"). ``seconds`` is the wall time since this
    command's scheduler was built (training and evaluation; the command's start, as the time
    budget counts it) and ``p0`` the progress a resume continues from (0 in a fresh run): a
    resume anneals the rest of the way over its own budget. Runs with this schedule depend on
    the machine's speed, so two runs of one seed can differ.

    Its state (:meth:`state_dict`, JSON-serialisable) holds the progress; a loaded state keeps
    this run's ``epochs`` and budget and restarts the clock.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, epochs: int, budget_seconds: float):
        self.epochs, self.budget_seconds = epochs, budget_seconds
        self.progress = self.start_progress = 0.0
        self.started = monotonic()
        self.seconds: float | None = None  # set before a step: the time to count (agreed across ranks)
        super().__init__(optimizer)

    def elapsed(self) -> float:
        """Seconds since this command's scheduler started (or was loaded)."""
        return monotonic() - self.started

    def get_lr(self) -> list[float]:
        if self.last_epoch > 0:  # an epoch ended: advance
            seconds = self.seconds if self.seconds is not None else self.elapsed()
            by_time = self.start_progress + (1.0 - self.start_progress) * seconds / self.budget_seconds
            self.progress = min(1.0, max(self.progress, self.last_epoch / self.epochs, by_time))
        factor = 0.5 * (1.0 + math.cos(math.pi * self.progress))
        return [base * factor for base in self.base_lrs]

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        keep = {"epochs": self.epochs, "budget_seconds": self.budget_seconds}
        super().load_state_dict(state_dict)
        self.__dict__.update(keep)
        self.start_progress, self.started, self.seconds = self.progress, monotonic(), None


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainingConfig):
    """The per-epoch learning-rate schedule of ``config.lr_schedule`` (:data:`LR_SCHEDULES`), or
    None for ``none``. ``plateau`` steps on the evaluation negative ELBO; ``cosine`` with
    ``lr_schedule_span: time`` is :class:`BudgetCosine`."""
    build = LR_SCHEDULES.get(config.lr_schedule)
    return build(optimizer, config) if build is not None else None


def _cosine(optimizer: torch.optim.Optimizer, config: TrainingConfig):
    if config.lr_schedule_span == "time":  # the decay spans the time budget
        return BudgetCosine(optimizer, config.epochs, 60.0 * config.max_minutes)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)


LR_SCHEDULES = {
    "step": lambda optimizer, c: torch.optim.lr_scheduler.StepLR(optimizer, step_size=c.lr_step_epochs,
                                                                 gamma=c.lr_gamma),
    "cosine": _cosine,
    "plateau": lambda optimizer, c: torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=c.lr_gamma,
                                                                               patience=c.lr_patience),
}
"""``training.lr_schedule`` -> ``build(optimizer, training_config)`` (torch's schedulers);
``none`` has no entry."""


class WeightAverage(AveragedModel):
    """The exponential moving average of a model's weights and buffers, updated without reading
    anything from the device: ``torch.optim.swa_utils.AveragedModel`` (its state dict,
    ``module.<weight>`` and ``n_averaged``, which checkpoints hold), with an update whose
    first-step test uses a count kept in Python and whose ``n_averaged`` stays on the weights'
    device. ``AveragedModel.update_parameters`` reads its CPU counter twice per call and copies it
    to the device for the averaging function: a CPU-GPU sync every training step.

    After an update, ``average = decay * average + (1 - decay) * w`` for floating-point
    tensors (one ``torch._foreach_lerp_``, as ``get_ema_multi_avg_fn``), the same formula
    rounded for integer buffers (a batch norm's step count); the first update copies ``w``.
    """

    def __init__(self, model: torch.nn.Module, decay: float):
        device = next(model.parameters()).device
        super().__init__(model, device=device, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
        self.decay = decay
        self.updates = 0
        """``n_averaged`` as a Python int (set again by :meth:`load_state_dict`)."""

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        averaged = [*self.module.parameters(), *self.module.buffers()]
        current = [t.detach() for t in (*model.parameters(), *model.buffers())]
        if self.updates == 0:
            torch._foreach_copy_([a.detach() for a in averaged], current)
        else:
            floats = [i for i, a in enumerate(averaged) if a.is_floating_point()]
            if floats:
                torch._foreach_lerp_([averaged[i].detach() for i in floats], [current[i] for i in floats],
                                     1.0 - self.decay)
            for a, c in zip(averaged, current):
                if not a.is_floating_point():
                    a.copy_(a * self.decay + c * (1.0 - self.decay))
        self.n_averaged += 1
        self.updates += 1

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = super().load_state_dict(state_dict, strict, assign)
        self.updates = int(self.n_averaged)  # once, when a run is restored
        return result


def make_ema(model: torch.nn.Module, decay: float) -> WeightAverage | None:
    """The exponential moving average of ``model``'s weights (and buffers) with ``decay``
    (:class:`WeightAverage`), or None when ``decay`` is 0: ``ema = decay * ema + (1 - decay) * w``
    after each :meth:`~WeightAverage.update_parameters` (the first copies ``w``). The trainer
    updates it after every optimiser step; ``ema.module`` is the averaged model."""
    if not decay:
        return None
    return WeightAverage(model, decay)


def step_scheduler(scheduler, eval_neg_elbo: float, agree: Callable[[float], float] | None = None) -> None:
    """Step ``scheduler`` after an epoch. ``agree``: with several ranks, maps this rank's clock
    reading to the one all ranks use (rank 0's), so a :class:`BudgetCosine` gives every rank
    the same rate."""
    if scheduler is None:
        return
    if isinstance(scheduler, BudgetCosine):
        seconds = scheduler.elapsed()
        scheduler.seconds = agree(seconds) if agree is not None else seconds
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(eval_neg_elbo)
    else:
        scheduler.step()


def clip_gradients(parameters: list[torch.nn.Parameter], config: TrainingConfig) -> None:
    """Clip each gradient element to [-clip_value, clip_value], then the global norm to
    ``clip_norm`` (``torch.nn.utils``), where set."""
    if config.clip_value is not None:
        torch.nn.utils.clip_grad_value_(parameters, config.clip_value)
    if config.clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(parameters, config.clip_norm, foreach=True)


def check_model_fits_memory(model_config, training_config, image_shape, device: torch.device,
                            num_classes: int | None = None, data_bytes: int = 0, model: torch.nn.Module | None = None
                            ) -> int:
    """Count the model's parameters without allocating them (on the meta device; ``model``: a
    model built already, e.g. of your own modules, whose parameters are counted) and refuse a
    model whose float32 weights, gradients, optimizer state (and moving average, with
    ``ema_decay``), activations and ``data_bytes`` (the dataset's tensors copied to a GPU; on
    the CPU they are loaded already and counted in the free memory) cannot fit in ``device``'s
    free memory. Returns the estimated bytes.

    On CUDA the check and a reservation of the estimate in torch's caching allocator are made
    while holding the GPU's lock (:func:`vaelab.runtime.device_memory_lock`), so that processes
    sharing a GPU (sweep workers) check one after the other, each seeing what the others took.

    Raises:
        ConfigError: the estimate exceeds the memory available (both are named, in GB).
    """
    if model is None:
        with torch.device("meta"):
            model = build_model(model_config, image_shape, num_classes)
    count = sum(p.numel() for p in model.parameters())
    entry = OPTIMIZERS.get(training_config.optimizer)
    copies = (entry.state_copies if entry else 4) + (1 if training_config.momentum else 0)
    copies += 1 if training_config.ema_decay else 0  # the moving average of the weights
    # activations of the dense layers: a training batch keeps them (and their gradients), an
    # evaluation batch holds two layers' worth at a time
    decoder_hidden = model_config.decoder_hidden if model_config.decoder_hidden is not None else model_config.hidden
    widths = [*model_config.hidden, *decoder_hidden]
    pixels = math.prod(image_shape)
    activations = max(2 * training_config.batch_size * (sum(widths) + 2 * pixels),
                      training_config.eval_batch_size * (2 * max(widths) + 2 * pixels)) * 4
    needed = count * 4 * copies + activations + data_bytes
    with runtime.device_memory_lock(device):
        free = runtime.available_memory(device)
        if free is not None and needed > free:
            data = f", the dataset ({data_bytes / 1e9:,.2f} GB)" if data_bytes else ""
            raise ConfigError(
                f"the model has {count:,} parameters and needs about {needed / 1e9:,.1f} GB ({needed:,} bytes) for "
                f"its weights, gradients, {training_config.optimizer} state and activations (float32){data}, more "
                f"than the {free / 1e9:,.1f} GB free on {device}; use a smaller model (model.hidden, "
                "model.latent_dim, conv widths) or smaller batches"
            )
        runtime.reserve_device_memory(device, needed)
    return needed


def config_problems(config) -> list[str]:
    """The optimiser's checks of a whole :class:`~vaelab.config.Config` (see :mod:`vaelab.registry`)."""
    t, problems = config.training, []
    entry = OPTIMIZERS[t.optimizer]
    if t.momentum and not entry.momentum:
        with_momentum = " and ".join(name for name, e in OPTIMIZERS.items() if e.momentum)
        problems.append(f"training.momentum applies to {with_momentum}, not {t.optimizer}")
    if t.nesterov and (not entry.nesterov or not t.momentum):
        with_nesterov = " or ".join(name for name, e in OPTIMIZERS.items() if e.nesterov)
        problems.append(f"training.nesterov needs optimizer: {with_nesterov} and momentum > 0")
    if t.lr_schedule_span == "time" and (t.lr_schedule != "cosine" or t.max_minutes is None):
        problems.append(f"{option('training.lr_schedule_span', 'time')} needs {option('training.lr_schedule', 'cosine')} "
                        f"and a time budget: add {option('training.max_minutes', 60)} (minutes), or use "
                        f"{option('training.lr_schedule_span', 'epochs')}")
    return problems
