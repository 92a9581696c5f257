"""The training steps' running sums and finiteness record, kept on the training device.

A CUDA step that reads a loss with ``.item()`` waits for the GPU to finish it (a CPU-GPU sync)
and the GPU then idles while the CPU launches the next step. :class:`DeviceSums` adds each
step's terms to float64 sums on the device and records, also on the device, the first step
whose loss terms or gradients are not finite (which term or parameter, and their values);
:meth:`DeviceSums.sync` reads everything in one transfer. The trainer syncs every
``training.sync_every_steps`` steps, before a checkpoint or a stop, and at the end of an epoch,
so a NaN still stops the run with the same message (the first non-finite step, the term or the
parameter) as a check after every step; only the steps after it up to the check are wasted.
On the CPU a sync costs nothing, and the sums are the same float64 additions in the same order
as the former per-step ``.item()``, so CPU numbers did not change.
"""

from __future__ import annotations

import math

import torch

from . import distributed
from .checkpoint import EpochPosition


class DeviceSums:
    """The running sums of an epoch (from ``position``) and the first non-finite step since
    the last :meth:`sync`, as device tensors.

    ``names``: the names of ``parameters`` (the trainable parameters, in the order the
    gradients are given to :meth:`record`).
    """

    def __init__(self, position: EpochPosition, device: torch.device, names: list[str],
                 world: distributed.World = distributed.SINGLE):
        self.device, self.names, self.world = device, names, world
        own = 1.0 if world.main else 0.0  # the sums so far count once, on rank 0
        self.totals = torch.tensor([own * position.recon_total, own * position.kl_total], dtype=torch.float64,
                                   device=device)
        self.extra = {name: torch.tensor(own * value, dtype=torch.float64, device=device)
                      for name, value in position.extra_totals.items()}
        self._false = torch.zeros((), dtype=torch.bool, device=device)
        self._no_bad_grads = torch.zeros(len(names), dtype=torch.bool, device=device)
        self._reset_record()

    def _reset_record(self) -> None:
        self.bad_step = torch.zeros((), dtype=torch.int64, device=self.device)  # 0: none yet
        self.bad_terms = torch.zeros(2, dtype=torch.float64, device=self.device)  # recon, kl sums
        self.bad_grads = torch.zeros(len(self.names), dtype=torch.bool, device=self.device)

    def record(self, step: int, terms: torch.Tensor, grads: list[torch.Tensor | None]) -> None:
        """Note step ``step`` (1-based) if it is the first non-finite one since the last sync.

        ``terms``: ``(2,)`` float the step's summed recon and KL; ``grads``: one gradient (or
        None) per parameter of ``names``."""
        present = [g for g in grads if g is not None]
        grad_bad = self._no_bad_grads
        if present:
            # one fused norm kernel over all gradients, as in torch.nn.utils.get_total_norm
            norms = torch.stack(torch._foreach_norm(present))
            # logical_* rather than ~, |, &, and no index list (a copy from the host): the same on
            # booleans, and they run on fake CUDA tensors of a CPU build (tests/training/test_fake_cuda.py)
            grad_bad = torch.isfinite(norms).logical_not()
            if len(present) < len(grads):  # parameters without a gradient count as finite
                flags = iter(grad_bad.unbind())
                grad_bad = torch.stack([next(flags) if g is not None else self._false for g in grads])
        terms = terms.detach().double()
        bad = torch.isfinite(terms).all().logical_not().logical_or(grad_bad.any())
        first = bad.logical_and(self.bad_step == 0)
        self.bad_step = torch.where(first, step, self.bad_step)
        self.bad_terms = torch.where(first, terms, self.bad_terms)
        self.bad_grads = torch.where(first, grad_bad, self.bad_grads)

    def add(self, terms: torch.Tensor, extra: dict[str, torch.Tensor]) -> None:
        """Add a step's ``(2,)`` summed recon and KL and its extra terms (summed over the batch)."""
        self.totals += terms.detach().double()
        for name, value in extra.items():
            if name not in self.extra:
                self.extra[name] = torch.zeros((), dtype=torch.float64, device=self.device)
            self.extra[name] += value.detach().sum().double()

    def sync(self, position: EpochPosition) -> tuple[int, str] | None:
        """Copy the sums into ``position`` (one CPU-GPU transfer) and return the first
        non-finite step since the last sync and what was not finite (``(step, "the KL term
        (inf)")``), or None; the record starts afresh.

        With several ranks every rank must call it at the same step: the sums are those of all
        ranks, and the first non-finite step that of the rank which had the earliest."""
        names = sorted(self.extra) if self.world.distributed else list(self.extra)
        values = torch.cat([self.totals, torch.stack([self.extra[n] for n in names]) if names else self.totals[:0],
                            self.bad_step.double().reshape(1), self.bad_terms, self.bad_grads.double()])
        if self.world.distributed:
            ranks = distributed.gather(values, self.world)  # (W, L)
            steps = ranks[:, 2 + len(names)]
            terms_bad = (~torch.isfinite(ranks[:, 3 + len(names):5 + len(names)])).any(1)
            key = torch.where(steps > 0, 2 * steps - terms_bad.double(), torch.full_like(steps, float("inf")))
            first = key.argmin()  # the earliest step, and at a tie the rank whose loss was not finite
            values = torch.cat([ranks[:, :2 + len(names)].sum(0), ranks[first, 2 + len(names):]])
        values = values.tolist()  # the sync
        position.recon_total, position.kl_total = values[0], values[1]
        position.extra_totals = dict(zip(names, values[2:2 + len(names)]))
        rest = values[2 + len(names):]
        step, (recon, kl), grads = int(rest[0]), rest[1:3], rest[3:]
        if not step:
            return None
        self._reset_record()
        if not math.isfinite(recon):
            return step, f"the reconstruction NLL ({recon})"
        if not math.isfinite(kl):
            return step, f"the KL term ({kl})"
        bad = [name for name, flag in zip(self.names, grads) if flag]
        return step, f"the gradient of {bad[0]}" if bad else "a gradient"
