"""Checkpoints: one safetensors file holding everything needed to resume a run.

Tensors (model weights, optimizer moments, RNG states) are stored as safetensors; everything
else (epoch, best metric, metric history, optimizer hyper-parameters, numpy/python RNG states,
the resolved config) as JSON in the file's metadata. Loading never executes code, and every
file is written atomically (:mod:`vaelab.io`).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as save_safetensors

from ..errors import CheckpointError
from ..io import atomic_write_bytes

FORMAT = "vaelab-checkpoint-1"


@dataclass
class EpochPosition:
    """Where training stands inside an unfinished epoch: the batches done (``step``), the running
    sums of the train metrics, the training seconds so far and the skipped steps. The epoch's
    batch order is stored beside it as a tensor."""

    step: int = 0
    recon_total: float = 0.0
    kl_total: float = 0.0
    n_seen: int = 0
    seconds: float = 0.0
    kl_weight: float = 0.0
    extra_totals: dict[str, float] = field(default_factory=dict)
    """Running sums of the objective's extra terms (``neg_iwae``, ``perceptual``)."""


@dataclass
class TrainingState:
    """Progress of a run: the last finished epoch, the best evaluation metric, the history, the
    position inside the next epoch (mid-epoch checkpoints) and the count of skipped steps."""

    epoch: int = 0
    best_epoch: int = 0
    best_value: float = float("inf")
    history: list[dict[str, float]] = field(default_factory=list)
    position: EpochPosition | None = None
    skipped_steps: int = 0

    def to_json(self) -> str:
        return json.dumps({**self.__dict__, "position": self.position and self.position.__dict__})

    @classmethod
    def from_json(cls, text: str) -> "TrainingState":
        values = json.loads(text)
        position = values.pop("position", None)
        return cls(**values, position=EpochPosition(**position) if position else None)


def capture_rng(data_generator: torch.Generator) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every RNG state: torch's global (and CUDA's), the data generator, numpy, python."""
    tensors = {"rng.torch": torch.get_rng_state(), "rng.data": data_generator.get_state()}
    if torch.cuda.is_available():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = state
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    meta = {"numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss_next]}
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any], data_generator: torch.Generator) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    data_generator.set_state(tensors["rng.data"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    name, keys, pos, has_gauss, cached = meta["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss_next = meta["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for pid, values in state_dict["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.state.{pid}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{pid}.{name}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer.state."):
            pid, name = key[len("optimizer.state."):].split(".", 1)
            state.setdefault(int(pid), {})[name] = value
    for key, value in meta["scalars"].items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def encode_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: TrainingState,
                      config: dict[str, Any], data_generator: torch.Generator, scheduler=None,
                      order: torch.Tensor | None = None) -> bytes:
    """Serialise a whole training state into safetensors bytes (``order``: the batch order of an
    unfinished epoch)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if order is not None:
        tensors["data.order"] = order.cpu().contiguous()
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    rng_tensors, rng_meta = capture_rng(data_generator)
    tensors.update(opt_tensors)
    tensors.update(rng_tensors)
    meta = {
        "format": FORMAT,
        "training_state": state.to_json(),
        "optimizer": json.dumps(opt_meta),
        "rng": json.dumps(rng_meta),
        "config": json.dumps(config),
        "scheduler": json.dumps(scheduler.state_dict() if scheduler is not None else None),
    }
    return save_safetensors(tensors, metadata=meta)


def write_checkpoint(paths: list[Path], payload: bytes) -> None:
    """Write the same checkpoint ``payload`` atomically to each of ``paths``."""
    for path in paths:
        atomic_write_bytes(path, payload)


@dataclass
class Checkpoint:
    """A checkpoint read back from disk."""

    path: Path
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict
    training_state: TrainingState
    config: dict[str, Any]
    rng_tensors: dict[str, torch.Tensor]
    rng_meta: dict[str, Any]
    scheduler_state: dict[str, Any] | None = None
    order: torch.Tensor | None = None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`encode_checkpoint` (no code is executed).

    Raises:
        CheckpointError: the file is missing, not a safetensors file, or not a vaelab
            checkpoint (foreign, truncated or tampered).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the run directory")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({exc}); it is corrupt or truncated") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vaelab checkpoint (format {meta.get('format')!r}, expected {FORMAT})")
    try:
        training = TrainingState.from_json(meta["training_state"])
        optimizer = _unflatten_optimizer(tensors, json.loads(meta["optimizer"]))
        rng_meta = json.loads(meta["rng"])
        config = json.loads(meta["config"])
        scheduler = json.loads(meta.get("scheduler", "null"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is damaged ({exc})") from None
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    rng = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    if training.position is not None and "data.order" not in tensors:
        raise CheckpointError(f"{path}: a mid-epoch checkpoint without its batch order; it is damaged")
    return Checkpoint(path, model_state, optimizer, training, config, rng, rng_meta, scheduler,
                      tensors.get("data.order"))
