"""One run on several processes: ``torchrun --nproc-per-node N -m vaelab train ...``.

torchrun starts the processes and sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE`` and the
rendezvous; :func:`setup` joins its process group (``nccl`` on CUDA, ``gloo`` on the CPU) and
everything else is :class:`torch.nn.parallel.DistributedDataParallel` and
:mod:`torch.distributed` collectives. The contract, which the trainer keeps:

- every rank draws the same permutation (the same seeded data generator) and takes its shard
  of each global batch of ``training.batch_size`` examples (:func:`shard`), so all ranks take
  the same number of steps;
- a rank's loss is scaled by ``W * b_r / B`` (its shard ``b_r`` of the global batch ``B``), so
  that DDP's mean of the ranks' gradients is the single-process gradient of the global batch
  (exactly for the ELBO and IWAE losses, which are means over examples; free bits are a
  non-linear function of the batch mean and are then applied per shard);
- dynamic binarisation is drawn for the whole global batch on every rank and then sharded, so
  the binarised data equal a single process's; the latent noise is each rank's own (torch's
  global RNG, seeded ``seed + rank``), so metrics equal a single process's up to that noise
  (exactly, up to float rounding, when the noise is the same: tests/training/test_distributed.py
  fixes it to zero);
- the epoch's sums and the finiteness record are gathered from all ranks at each sync
  (:class:`~vaelab.training.stepsync.DeviceSums`), so every rank sees the same metrics and the
  same first non-finite step and all stop together; a stop asked for on one rank (a signal) is
  all-reduced at the same points;
- only rank 0 runs the run directory's writers (:meth:`Trainer <vaelab.training.trainer.Trainer>`
  keeps the callbacks marked ``all_ranks``, e.g. signals, on the others), and the checkpoint
  holds every rank's RNG states (``rng.rank<r>.*``), so ``--resume`` with the same world size
  continues each rank's streams.
"""

from __future__ import annotations

import atexit
import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place in the run: ``rank`` of ``size`` processes, ``backend``."""

    rank: int = 0
    size: int = 1
    backend: str | None = None
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes the run directory (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE = World()


def launched() -> bool:
    """Whether torchrun (or another launcher of its environment variables) started us with
    more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def setup(device: torch.device) -> World:
    """Join the launcher's process group (once) and return this process's :class:`World`;
    :data:`SINGLE` when not launched by torchrun."""
    if not launched():
        return SINGLE
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend)
        atexit.register(leave)  # a group left open at exit can abort the process (SIGABRT from its threads)
    return World(dist.get_rank(), dist.get_world_size(), dist.get_backend(), int(os.environ.get("LOCAL_RANK", 0)))


def leave() -> None:
    """Destroy the process group, if one is open (registered at exit by :func:`setup`).

    Objects left in reference cycles (a DDP wrapper, gloo's finished work) are collected first,
    while the interpreter is whole: freed during its finalisation instead, their tensors can
    abort the process (SIGABRT, "terminate called without an active exception"; the cause
    described in pytorch/pytorch#179291)."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


def barrier(world: World) -> None:
    """Wait until every rank gets here (nothing when not distributed)."""
    if world.distributed:
        dist.barrier()


def current() -> World:
    """The :class:`World` of an initialised process group, else :data:`SINGLE`."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return World(dist.get_rank(), dist.get_world_size(), dist.get_backend(), int(os.environ.get("LOCAL_RANK", 0)))


def rank_device(device: torch.device, world: World) -> torch.device:
    """A rank's device: ``cuda:LOCAL_RANK`` when training on CUDA, else ``device``."""
    if world.distributed and device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
        return torch.device("cuda", world.local_rank)
    return device


def shard(start: int, stop: int, world: World) -> slice:
    """This rank's contiguous part of the global batch ``[start, stop)`` (sizes differ by at
    most one), as a slice relative to ``start``."""
    n = stop - start
    base, extra = divmod(n, world.size)
    first = world.rank * base + min(world.rank, extra)
    return slice(first, first + base + (1 if world.rank < extra else 0))


def broadcast(value, world: World):
    """Rank 0's ``value`` (any picklable object) on every rank."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """``(W, *shape)``: every rank's ``tensor`` (the same shape on all)."""
    if not world.distributed:
        return tensor.unsqueeze(0)
    out = [torch.empty_like(tensor) for _ in range(world.size)]
    dist.all_gather(out, tensor)
    return torch.stack(out)


def any_rank(flag: bool, device: torch.device, world: World) -> bool:
    """Whether ``flag`` is true on any rank (an all-reduce; every rank must call it)."""
    if not world.distributed:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_objects(value, world: World) -> list:
    """Every rank's ``value`` (picklable), in rank order."""
    if not world.distributed:
        return [value]
    out = [None] * world.size
    dist.all_gather_object(out, value)
    return out
