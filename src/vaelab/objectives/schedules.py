"""Schedules of the KL weight β over training."""

from __future__ import annotations

from ..config import ObjectiveConfig


def kl_weight(config: ObjectiveConfig, step: int, steps_per_epoch: int, total_epochs: int) -> float:
    """The KL weight at optimisation ``step`` (0-based, counted over the whole run).

    - ``constant``: β.
    - ``linear``: β·min(1, t / warm-up), t in epochs (fractional), the KL annealing of
      Bowman et al. 2016, Sec. 3.1.
    - ``cyclical``: ``kl_cycles`` cycles over the run; within each, the weight rises linearly
      from 0 to β over the first ``kl_cycle_ramp`` fraction and stays at β (Fu et al. 2019,
      eq. 6 with a linear ramp).
    """
    return config.beta * KL_SCHEDULES[config.kl_schedule](config, step / steps_per_epoch, total_epochs)


def _constant(config: ObjectiveConfig, epochs: float, total_epochs: int) -> float:
    return 1.0


def _linear(config: ObjectiveConfig, epochs: float, total_epochs: int) -> float:
    return min(1.0, epochs / config.kl_warmup_epochs)


def _cyclical(config: ObjectiveConfig, epochs: float, total_epochs: int) -> float:
    period = total_epochs / config.kl_cycles
    tau = (epochs % period) / period
    return min(1.0, tau / config.kl_cycle_ramp)


KL_SCHEDULES = {"constant": _constant, "linear": _linear, "cyclical": _cyclical}
"""``objective.kl_schedule`` -> the share of β at a time ``(config, epochs, total_epochs) -> [0, 1]``,
epochs counted fractionally over the whole run."""
