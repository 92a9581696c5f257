"""Checkpoints: one safetensors file holding everything needed to resume a run.

Tensors (model weights, the weights' moving average when ``training.ema_decay`` is on,
optimizer moments, RNG states) are stored as safetensors; everything
else (epoch, best metric, metric history, optimizer hyper-parameters, numpy/python RNG states,
the callbacks' states, the resolved config) as JSON in the file's metadata. Loading never executes code, and every
file is written atomically (:mod:`vaelab.io`).
"""

from __future__ import annotations

import json
import random
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from ..config import Config
from ..errors import CheckpointError, ConfigError, option
from ..io import atomic_write_bytes, safetensors_bytes
from ..models import VAE, build_model
from ..models.networks import CUSTOM
from ..models.likelihoods import declare_binary_data
from ..rundir import RunDir, unknown_network
from .checkpoint_schema import check_metadata

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


def _cuda_device(generator: torch.Generator | None) -> torch.device | None:
    """The GPU a CUDA run trains on: its data generator's (None for a run on the CPU)."""
    if generator is None or generator.device.type != "cuda":
        return None
    index = generator.device.index
    return torch.device("cuda", torch.cuda.current_device() if index is None else index)


def capture_rng(data_generator: torch.Generator, device_generator: torch.Generator | None = None
                ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Every RNG state: torch's global, the data generator (and its CUDA twin, which draws the
    batch order and binarisation of a CUDA run, on the run's GPU), numpy, python; and on CUDA
    the global generator of the run's GPU (``rng.cuda``: the latent noise), whatever other GPUs
    the machine has."""
    tensors = {"rng.torch": torch.get_rng_state(), "rng.data": data_generator.get_state()}
    if device_generator is not None:
        tensors["rng.data_device"] = device_generator.get_state()
    cuda = _cuda_device(device_generator)
    if cuda is not None:
        tensors["rng.cuda"] = torch.cuda.get_rng_state(cuda)
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    meta = {"numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "python": [version, list(internal), gauss_next]}
    return tensors, meta


def restore_rng(tensors: dict[str, torch.Tensor], meta: dict[str, Any], data_generator: torch.Generator,
                device_generator: torch.Generator | None = None) -> None:
    """Set every RNG from a checkpoint's; a CUDA data generator keeps its seed when the
    checkpoint has none (a run that trained on the CPU so far). On CUDA the run's GPU gets the
    checkpoint's ``rng.cuda`` whichever GPU (and how many) the run trained on before; from a
    checkpoint of an earlier version, which held one state per GPU of its machine
    (``rng.cuda.<i>``), the state of the GPU with this run's number, and when it has none a
    one-line warning says that the noise does not continue."""
    torch.set_rng_state(tensors["rng.torch"])
    data_generator.set_state(tensors["rng.data"])
    saved = tensors.get("rng.data_device")
    if device_generator is not None and saved is not None and saved.shape == device_generator.get_state().shape:
        device_generator.set_state(saved)
    cuda = _cuda_device(device_generator)
    if cuda is not None:
        state = tensors.get("rng.cuda", tensors.get(f"rng.cuda.{cuda.index}"))
        if state is not None:
            torch.cuda.set_rng_state(state, cuda)
        elif any(k.startswith("rng.cuda.") for k in tensors):
            count = sum(k.startswith("rng.cuda.") for k in tensors)
            warnings.warn(f"the checkpoint holds the CUDA random states of {count} GPU(s), none for {cuda}: the "
                          "latent noise starts a new stream, so this resume will not repeat an uninterrupted run "
                          "exactly", stacklevel=2)
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
                      order: torch.Tensor | None = None, ema: torch.nn.Module | None = None,
                      device_generator: torch.Generator | None = None, grad_scaler=None,
                      rank_rng: list[dict[str, torch.Tensor]] | None = None,
                      callbacks: dict[str, dict[str, Any]] | None = None) -> bytes:
    """Serialise a whole training state into safetensors bytes (``order``: the batch order of an
    unfinished epoch; ``ema``: the ``AveragedModel`` of the weights, stored as ``ema.*``:
    ``ema.module.<weight>`` and ``ema.n_averaged``; ``device_generator``: the CUDA data generator
    of a CUDA run; ``grad_scaler``: an fp16 run's scaler; ``rank_rng``: every rank's RNG states
    of a run on several processes; ``callbacks``: the callbacks' states by key,
    :meth:`~vaelab.training.callbacks.Callback.state_dict`, JSON-serialisable).

    Raises:
        ValueError: a callback's state that JSON cannot hold (naming the callback).
    """
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if ema is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    if order is not None:
        tensors["data.order"] = order.cpu().contiguous()
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    rng_tensors, rng_meta = capture_rng(data_generator, device_generator)
    tensors.update(opt_tensors)
    tensors.update(rng_tensors)
    for rank, states in enumerate(rank_rng or []):  # a run on several processes: each rank's own
        tensors.update({f"rng.rank{rank}.{name}": value.cpu().contiguous() for name, value in states.items()})
    meta = {
        "format": FORMAT,
        "training_state": state.to_json(),
        "optimizer": json.dumps(opt_meta),
        "rng": json.dumps(rng_meta),
        "config": json.dumps(config),
        "scheduler": json.dumps(scheduler.state_dict() if scheduler is not None else None),
    }
    if rank_rng:
        meta["world_size"] = str(len(rank_rng))
    if grad_scaler is not None:  # fp16: the loss scale and its growth tracker
        meta["grad_scaler"] = json.dumps(grad_scaler.state_dict())
    if callbacks:
        for key, value in callbacks.items():
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"callback {key}: its state_dict() must be JSON (numbers, strings, lists, dicts), "
                                 f"{exc}") from None
        meta["callbacks"] = json.dumps(callbacks, allow_nan=False)
    return safetensors_bytes(tensors, metadata=meta)


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
    ema_state: dict[str, torch.Tensor] | None = None
    """The ``AveragedModel``'s state (``module.<weight>``, ``n_averaged``) when the run keeps an EMA."""
    grad_scaler_state: dict[str, Any] | None = None
    """fp16 runs: ``torch.amp.GradScaler.state_dict()`` (scale, growth factors, tracker)."""
    callback_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    """The callbacks' states by key (empty in a checkpoint written before callbacks had any)."""

    def eval_state(self) -> dict[str, torch.Tensor]:
        """The weights evaluation uses: the moving average when the run kept one, else the
        trained weights."""
        if self.ema_state is None:
            return self.model_state
        return {k[len("module."):]: v for k, v in self.ema_state.items() if k.startswith("module.")}


def read_safetensors(path: Path, what: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The metadata and tensors of the safetensors file ``path`` (no code is executed).

    Raises:
        CheckpointError: ``path`` is not a readable safetensors file; the message is
            ``"{path} is not a readable " + what`` with ``{exc}`` replaced by the reason.
    """
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a readable " + what.replace("{exc}", str(exc))) from None


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a checkpoint written by :func:`encode_checkpoint` (no code is executed).

    Raises:
        CheckpointError: the file is missing, not a safetensors file, or not a vaelab
            checkpoint (foreign, truncated or tampered).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the run directory")
    meta, tensors = read_safetensors(path, "checkpoint ({exc}); it is corrupt or truncated")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a vaelab checkpoint (format {meta.get('format')!r}, expected {FORMAT})")
    try:
        fields = {name: json.loads(meta[name]) for name in ("training_state", "optimizer", "rng", "config")}
        fields.update({name: json.loads(meta.get(name, "null")) for name in ("scheduler", "grad_scaler", "callbacks")})
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is damaged ({exc}); {_other_advice(path)}") from None
    try:
        check_metadata(fields)  # every field's type and range, before anything uses it
    except ValueError as exc:
        raise CheckpointError(f"{path}: checkpoint field {exc}; the checkpoint is damaged: {_other_advice(path)}") from None
    try:
        training = TrainingState.from_json(meta["training_state"])
        optimizer = _unflatten_optimizer(tensors, fields["optimizer"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: checkpoint metadata is damaged ({exc}); {_other_advice(path)}") from None
    rng_meta, config = fields["rng"], fields["config"]
    scheduler, grad_scaler = fields["scheduler"], fields["grad_scaler"]
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    ema_state = {k[len("ema."):]: v for k, v in tensors.items() if k.startswith("ema.")} or None
    rng = {k: v for k, v in tensors.items() if k.startswith("rng.")}
    if training.position is not None and "data.order" not in tensors:
        raise CheckpointError(f"{path}: a mid-epoch checkpoint without its batch order; it is damaged")
    _validate_tensors(path, training, optimizer, rng, tensors.get("data.order"), config)
    return Checkpoint(path, model_state, optimizer, training, config, rng, rng_meta, scheduler,
                      tensors.get("data.order"), ema_state, grad_scaler, fields["callbacks"] or {})


def _other_advice(path: Path) -> str:
    other = {"last": "best", "best": "last"}.get(path.stem)
    if other is None:
        return "use another checkpoint of the run, or start a new run"
    return (f"use the other checkpoint, {path.with_name(other + path.suffix)} ({option('checkpoint', other)} for "
            f"evaluate and plot; to resume from it, copy it over {path.name}), or start a new run")


def invalid_field(path: Path, name: str, why: str) -> CheckpointError:
    """The error for a checkpoint whose field ``name`` is well-formed but wrong."""
    return CheckpointError(f"{path}: checkpoint field {name} {why}; the checkpoint is damaged: {_other_advice(path)}")


def _validate_tensors(path: Path, training: TrainingState, optimizer: dict, rng: dict[str, torch.Tensor],
                      order: torch.Tensor | None, config: Any) -> None:
    """The tensors of a checkpoint whose metadata passed :func:`check_metadata`: the batch order
    a permutation, every RNG state of the dtype and shape torch writes, the optimizer's state
    tensors floating point, its groups' parameter numbers those of its state.

    Raises:
        CheckpointError: naming the first field that does not fit (:func:`invalid_field`).
    """
    def bad(name, why):
        return invalid_field(path, name, why)

    if order is not None:
        if order.dim() != 1 or order.dtype not in (torch.int64, torch.int32):
            raise bad("data.order", f"must be a 1-D integer tensor, got {order.dtype} {tuple(order.shape)}")
        if not torch.equal(torch.sort(order.long()).values, torch.arange(order.numel())):
            raise bad("data.order", f"must be a permutation of 0..{order.numel() - 1}")
    shapes = {"rng.torch": torch.get_rng_state(), "rng.data": torch.Generator().get_state()}
    for name, reference in shapes.items():
        value = rng.get(name)
        if value is None or value.dtype != reference.dtype or value.shape != reference.shape:
            got = "missing" if value is None else f"{value.dtype} {tuple(value.shape)}"
            raise bad(name, f"must be a {reference.dtype} tensor of shape {tuple(reference.shape)}, got {got}")
    for name, value in rng.items():
        if name not in shapes and (value.dtype != torch.uint8 or value.dim() != 1):
            raise bad(name, f"must be a 1-D uint8 tensor, got {value.dtype} {tuple(value.shape)}")
    numbered = {q for group in optimizer["param_groups"] for q in group["params"]}
    for pid, values in optimizer["state"].items():
        if pid not in numbered:
            raise bad(f"optimizer.state.{pid}", f"belongs to no parameter group (parameters {sorted(numbered)[:5]}...)")
        for name, value in values.items():
            if torch.is_tensor(value) and not value.is_floating_point():
                raise bad(f"optimizer.state.{pid}.{name}", f"must be a floating-point tensor, got {value.dtype}")
            if torch.is_tensor(value) and not torch.isfinite(value).all():
                raise bad(f"optimizer.state.{pid}.{name}", "must be finite")
    if not isinstance(config, dict):
        raise bad("config", f"must be a mapping, got {type(config).__name__}")


# --- a checkpoint's model and config ----------------------------------------------------------


def load_model(run_dir: str | Path, which: str = "best", *, encoder: torch.nn.Module | None = None,
               decoder: torch.nn.Module | None = None) -> VAE:
    """Rebuild a run's model from ``run_dir/checkpoints/<which>.safetensors`` (with the
    checkpoint's own config, whatever ``config.yaml`` says): with the moving average of the
    weights when the run kept one (``training.ema_decay``), else the trained weights. A run of
    your own modules (``model.network: custom``) needs ``encoder`` and ``decoder`` of the same
    architecture: the weights are loaded into them.

    Raises:
        CheckpointError: missing or corrupt checkpoint, weights that do not fit the config (or
            your modules), or weights that are not finite (NaN or infinite).
        ConfigError: a run of your own modules without them, or modules given for another run.
    """
    checkpoint = read_checkpoint(RunDir(run_dir).checkpoint(which))
    image_shape = tuple(checkpoint.config.get("_image_shape", ()))
    num_classes = checkpoint.config.get("_num_classes")
    config = checkpoint_config(checkpoint)
    networks = None
    if encoder is not None or decoder is not None:
        if encoder is None or decoder is None or config.model.network != CUSTOM:
            raise ConfigError(f"encoder= and decoder= (both) load a run trained with your own modules; {run_dir} "
                              f"trained model.network {config.model.network}")
        networks = (encoder, decoder)
    model = build_model(config.model, image_shape, num_classes, networks)
    declare_binary_data(model.likelihood, config.data.binarize != "none")  # the run's data are 0/1
    weights = checkpoint.eval_state()
    try:
        model.load_state_dict(weights)
    except RuntimeError as exc:
        raise CheckpointError(f"{checkpoint.path}: weights do not fit the model of its config ({exc})") from None
    for name, value in weights.items():
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise invalid_field(checkpoint.path, f"model.{name}", "holds non-finite values (NaN or inf)")
    return model.eval()


def read_checkpoint_config(path: str | Path) -> Config:
    """The config stored in the checkpoint at ``path`` (only its metadata is read).

    Raises:
        CheckpointError: the file is missing or unreadable, or its config is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; check the run directory")
    try:
        with safe_open(str(path), framework="pt") as f:
            values = json.loads((f.metadata() or {})["config"])
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} is not a readable checkpoint ({exc}); it is corrupt or truncated") from None

    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: checkpoint metadata is damaged (its config is not a mapping)")
    return checkpoint_config(values, path)


def checkpoint_config(checkpoint, path: Path | None = None) -> Config:
    """The config a checkpoint (a :class:`Checkpoint`, or its stored config dict and ``path``)
    was trained with: the run's truth.

    Raises:
        CheckpointError: the stored config is not a valid config.
        ConfigError: it names a plug-in network nobody registered (the checkpoint is fine; the
            message says which module the run imported, :meth:`~vaelab.rundir.RunDir.plugin_hint`).
    """
    stored, path = (checkpoint, path) if isinstance(checkpoint, dict) else (checkpoint.config, checkpoint.path)
    values = {k: v for k, v in stored.items() if not k.startswith("_")}  # _image_shape, _num_classes
    try:
        return Config.from_dict(values)
    except ConfigError as exc:
        if unknown_network(values):  # not damaged: a plug-in network whose module was not imported
            raise ConfigError(f"{path}: {exc}{RunDir(Path(path).parent.parent).plugin_hint()}") from None
        raise CheckpointError(f"{path}: its config is invalid ({exc}); use the other checkpoint "
                              "of the run, or start a new run") from None


def check_checkpoint_fits(checkpoint, model: torch.nn.Module, n_train: int, batch_size: int,
                          optimizer: torch.optim.Optimizer | None = None) -> None:
    """The checks of a checkpoint's values that need the run's model and data: the data order
    is a permutation of the training set, the position inside the epoch is within it, every
    optimizer state tensor has its parameter's shape, and (with the run's ``optimizer``) every
    parameter group holds each hyper-parameter that optimizer reads.

    Raises:
        CheckpointError: naming the field, with the advice to use the other checkpoint.
    """
    order, position = checkpoint.order, checkpoint.training_state.position
    if order is not None and order.numel() != n_train:
        raise invalid_field(checkpoint.path, "data.order", f"has {order.numel()} entries for a training set of "
                            f"{n_train} examples")
    steps = -(-n_train // batch_size)
    if position is not None and position.step > steps:
        raise invalid_field(checkpoint.path, "training_state.position.step",
                            f"is {position.step}, beyond the {steps} steps of an epoch")
    params = [p for group in checkpoint.optimizer_state["param_groups"] for p in group["params"]]
    shapes = [tuple(p.shape) for p in model.parameters()]
    if sorted(params) != list(range(len(shapes))):
        raise invalid_field(checkpoint.path, "optimizer.param_groups", f"name parameters {sorted(params)[:8]}, the "
                            f"model has {len(shapes)}")
    if optimizer is not None:
        needed = set(optimizer.param_groups[0]) - {"params", "initial_lr"}
        for i, group in enumerate(checkpoint.optimizer_state["param_groups"]):
            missing = sorted(needed - set(group))
            if missing:
                raise invalid_field(checkpoint.path, f"optimizer.param_groups.{i}", f"lacks {', '.join(missing)}, which "
                                    f"{type(optimizer).__name__} reads")
    for pid, values in checkpoint.optimizer_state["state"].items():
        if not 0 <= pid < len(shapes):
            raise invalid_field(checkpoint.path, f"optimizer.state.{pid}", "is for a parameter the model does not have")
        for name, value in values.items():
            if torch.is_tensor(value) and value.dim() > 0 and tuple(value.shape) != shapes[pid]:
                raise invalid_field(checkpoint.path, f"optimizer.state.{pid}.{name}",
                                    f"has shape {tuple(value.shape)}, its parameter {shapes[pid]}")
