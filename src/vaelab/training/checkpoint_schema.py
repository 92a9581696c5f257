"""The schema of a checkpoint's metadata: every JSON field a checkpoint holds (training state,
optimizer hyper-parameters and scalars, scheduler, gradient scaler, the numpy and Python RNG
states, the callbacks' states), declared once with its type and range and checked by pydantic before anything is used.
The same rules apply to every field, so a damaged or hand-edited value is named in one line
instead of failing deep inside torch or silently changing training (a ``best_value`` of NaN that
stopped the best checkpoint from ever updating, an ``eps`` of -1 that changed Adam).

:func:`check_metadata` raises :class:`ValueError` naming the first bad field; its caller
(:func:`vaelab.training.checkpoint.read_checkpoint`) turns it into a ``CheckpointError``.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, NonNegativeInt, RootModel, StrictBool, StrictInt, ValidationError,
                      model_validator)

Finite = Annotated[float, Field(allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)]
UInt32 = Annotated[StrictInt, Field(ge=0, lt=2 ** 32)]


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class _Open(BaseModel):
    """A mapping that may hold more keys than the ones it checks (another torch version's)."""

    model_config = ConfigDict(strict=True, extra="allow")


class Position(_Model):
    """Where an unfinished epoch stands (:class:`~vaelab.training.checkpoint.EpochPosition`)."""

    step: NonNegativeInt
    recon_total: Finite
    kl_total: Finite
    n_seen: NonNegativeInt
    seconds: NonNegative
    kl_weight: NonNegative
    extra_totals: dict[str, Finite]


class TrainingStateSchema(_Model):
    """:class:`~vaelab.training.checkpoint.TrainingState`: one history row per finished epoch,
    numbered 1.., the best epoch among them and its finite value (+inf before any epoch)."""

    epoch: NonNegativeInt
    best_epoch: NonNegativeInt
    best_value: float
    history: list[dict[str, float]]
    position: Position | None = None
    skipped_steps: NonNegativeInt

    @model_validator(mode="after")
    def _consistent(self):
        if self.best_epoch > self.epoch:
            raise ValueError(f"best_epoch: must be at most epoch ({self.epoch}), got {self.best_epoch}")
        if len(self.history) != self.epoch:
            raise ValueError(f"history: must hold one row per finished epoch ({self.epoch}), got {len(self.history)}")
        for i, row in enumerate(self.history):
            if row.get("epoch") != i + 1:
                raise ValueError(f"history.{i}: must be epoch {i + 1}, got {row.get('epoch')!r}")
        if self.best_epoch == 0 and self.best_value != math.inf:
            raise ValueError(f"best_value: must be inf before any best epoch, got {self.best_value!r}")
        if self.best_epoch > 0 and not math.isfinite(self.best_value):
            raise ValueError(f"best_value: must be a finite number, got {self.best_value!r}")
        return self


class ParamGroup(_Open):
    """An optimizer's parameter group: the parameter numbers and the hyper-parameters torch's
    Adam, AdamW, SGD and RMSprop keep, each in its valid range."""

    params: list[NonNegativeInt]
    lr: NonNegative
    betas: Annotated[list[Fraction], Field(min_length=2, max_length=2)] | None = None
    eps: Positive | None = None
    weight_decay: NonNegative | None = None
    momentum: NonNegative | None = None
    dampening: NonNegative | None = None
    alpha: Fraction | None = None
    amsgrad: StrictBool | None = None
    nesterov: StrictBool | None = None
    maximize: StrictBool | None = None
    centered: StrictBool | None = None
    capturable: StrictBool | None = None
    differentiable: StrictBool | None = None
    foreach: StrictBool | None = None
    fused: StrictBool | None = None
    decoupled_weight_decay: StrictBool | None = None


class OptimizerSchema(_Model):
    """The optimizer's JSON part (its tensors are checked beside): groups and per-parameter
    scalars (``"<param>.<name>"``)."""

    param_groups: Annotated[list[ParamGroup], Field(min_length=1)]
    scalars: dict[str, Finite]


class SchedulerSchema(_Open):
    """A learning-rate scheduler's state: the fields vaelab's schedulers (step, cosine,
    plateau, time-budget cosine) keep, in range; others pass."""

    last_epoch: Annotated[StrictInt, Field(ge=-1)] | None = None
    base_lrs: list[NonNegative] | None = None
    last_lr: list[NonNegative] | None = Field(None, alias="_last_lr")
    gamma: Positive | None = None
    factor: Annotated[float, Field(gt=0, lt=1)] | None = None
    step_size: Annotated[StrictInt, Field(ge=1)] | None = None
    T_max: Annotated[StrictInt, Field(ge=0)] | None = None
    eta_min: NonNegative | None = None
    min_lrs: list[NonNegative] | None = None
    patience: NonNegativeInt | None = None
    cooldown: NonNegativeInt | None = None
    num_bad_epochs: NonNegativeInt | None = None


class GradScalerSchema(_Model):
    """``torch.amp.GradScaler.state_dict()``."""

    scale: Positive
    growth_factor: Annotated[float, Field(gt=1, allow_inf_nan=False)]
    backoff_factor: Annotated[float, Field(gt=0, lt=1)]
    growth_interval: Annotated[StrictInt, Field(ge=1)]
    growth_tracker: NonNegativeInt = Field(0, alias="_growth_tracker")

    model_config = ConfigDict(strict=True, extra="allow")


class RngSchema(_Open):
    """The numpy (MT19937: 624 keys, a position 0..624) and Python (version 3, 625 words) RNG
    states, as ``json`` wrote them."""

    numpy: tuple[Literal["MT19937"], Annotated[list[UInt32], Field(min_length=624, max_length=624)],
                 Annotated[StrictInt, Field(ge=0, le=624)], Literal[0, 1], float]
    python: tuple[Literal[3], Annotated[list[UInt32], Field(min_length=625, max_length=625)], float | None]

    model_config = ConfigDict(strict=False, extra="allow")  # lax for the tuples JSON writes as lists; the ints stay strict


class CallbacksSchema(RootModel[dict[Annotated[str, Field(min_length=1)], dict[str, Any]]]):
    """The callbacks' states: callback key -> its ``state_dict()`` (a mapping; each callback's
    ``load_state_dict`` checks its own fields)."""


SCHEMAS: dict[str, type[BaseModel]] = {
    "training_state": TrainingStateSchema, "optimizer": OptimizerSchema, "scheduler": SchedulerSchema,
    "grad_scaler": GradScalerSchema, "rng": RngSchema, "callbacks": CallbacksSchema,
}
"""Checkpoint metadata field -> its schema (``scheduler``, ``grad_scaler`` and ``callbacks`` may
be null: ``callbacks`` is absent from checkpoints written before callbacks kept state)."""


def check_metadata(fields: dict[str, Any]) -> None:
    """Validate each parsed metadata field of ``fields`` (name -> JSON value) against
    :data:`SCHEMAS`.

    Raises:
        ValueError: ``"<field.path> <what is wrong>"`` for the first field that does not fit.
    """
    for name, schema in SCHEMAS.items():
        value = fields.get(name)
        if value is None and name in ("scheduler", "grad_scaler", "callbacks"):
            continue
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a mapping, got {type(value).__name__}")
        try:
            schema.model_validate(value)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) if isinstance(part, int) or str(part).isidentifier() else repr(part)
                             for part in (name, *error["loc"]))  # an odd key is quoted, never a line break
            got = error.get("input")
            got = f", got {got!r}"[:80] if not isinstance(got, (dict, list)) else ""  # repr: one line
            message = error["msg"].removeprefix("Value error, ")
            field, _, rest = message.partition(": ")
            if not error["loc"] and rest and field.replace(".", "").isidentifier():  # a check across fields
                where, message, got = f"{where}.{field}", rest, ""
            raise ValueError(f"{where} {message[:1].lower() + message[1:]}{got}") from None
