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
from datetime import timedelta

import torch
import torch.distributed as dist

from ..errors import ConfigError


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
    :data:`SINGLE` when not launched by torchrun.

    On CUDA the rank's GPU (``cuda:LOCAL_RANK``) is made the current device *before* the group
    opens, and passed to it as ``device_id``: NCCL then binds each rank to its own GPU from the
    first collective on (without it, the objects broadcast at startup were all put on
    ``cuda:0`` and NCCL stopped with "Duplicate GPU detected"). A group for the ranks'
    end-of-run wait (:func:`barrier`) is opened beside it on gloo, without NCCL's watchdog.

    Raises:
        ConfigError: ``LOCAL_RANK`` names a GPU this machine does not have (more processes per
            node than GPUs).
    """
    if not launched():
        return SINGLE
    global _CONTROL
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if not dist.is_initialized():
        device_id = None
        if device.type == "cuda":
            count = torch.cuda.device_count()
            if local_rank >= count:
                raise ConfigError(f"torchrun started local rank {local_rank}, but this machine has {count} GPU(s); "
                                  f"start at most {count} processes per node (--nproc-per-node {count})")
            device_id = torch.device("cuda", local_rank)
            torch.cuda.set_device(device_id)
        dist.init_process_group("nccl" if device_id is not None else "gloo", device_id=device_id)
        atexit.register(leave)  # a group left open at exit can abort the process (SIGABRT from its threads)
        # the end-of-run wait, on the CPU: rank 0 writes figures and reports meanwhile, which may
        # take longer than NCCL's watchdog allows a collective (10 minutes by default)
        _CONTROL = dist.new_group(backend="gloo", timeout=END_OF_RUN_TIMEOUT)
    return World(dist.get_rank(), dist.get_world_size(), dist.get_backend(), local_rank)


END_OF_RUN_TIMEOUT = timedelta(hours=4)
"""How long the other ranks wait for rank 0's end-of-run work (figures, reports) in :func:`barrier`."""

_CONTROL = None
"""The gloo group of :func:`barrier` (opened by :func:`setup`)."""


def leave() -> None:
    """Destroy the process group, if one is open (registered at exit by :func:`setup`).

    Objects left in reference cycles (a DDP wrapper, gloo's finished work) are collected first,
    while the interpreter is whole: freed during its finalisation instead, their tensors can
    abort the process (SIGABRT, "terminate called without an active exception"; the cause
    described in pytorch/pytorch#179291)."""
    global _CONTROL
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()  # every group, the control group too
        _CONTROL = None
        gc.collect()


def barrier(world: World) -> None:
    """Wait until every rank gets here (nothing when not distributed): on the gloo group
    :func:`setup` opened, whose timeout (:data:`END_OF_RUN_TIMEOUT`) leaves rank 0 time for its
    end-of-run work, or on the default group of a process group opened by someone else."""
    if world.distributed:
        dist.barrier(group=_CONTROL)


def current() -> World:
    """The :class:`World` of an initialised process group, else :data:`SINGLE`."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    return World(dist.get_rank(), dist.get_world_size(), dist.get_backend(), int(os.environ.get("LOCAL_RANK", 0)))


def rank_device(device: torch.device, world: World) -> torch.device:
    """A rank's device: ``cuda:LOCAL_RANK`` when training on CUDA, else ``device`` (the current
    CUDA device is already this one: :func:`setup` set it before opening the group)."""
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
        torch.cuda.set_device(device)
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


def all_sum(tensor: torch.Tensor, world: World) -> torch.Tensor:
    """``tensor`` summed over the ranks (an all-reduce, in place; every rank must call it)."""
    if world.distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


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
