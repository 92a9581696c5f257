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
    epochs = step / steps_per_epoch
    if config.kl_schedule == "linear":
        return config.beta * min(1.0, epochs / config.kl_warmup_epochs)
    if config.kl_schedule == "cyclical":
        period = total_epochs / config.kl_cycles
        tau = (epochs % period) / period
        return config.beta * min(1.0, tau / config.kl_cycle_ramp)
    return config.beta
