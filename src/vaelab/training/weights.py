"""Weights-only files: a trained model's weights, without the optimizer, RNG or history of a
checkpoint, small enough to keep in a repository and enough to evaluate the model again.

``vaelab export-weights RUN_DIR -o FILE.safetensors`` (:func:`export_weights`) writes the
weights evaluation uses (the moving average with ``training.ema_decay``), every floating-point
tensor as float32, in safetensors, with the run's config in the file's metadata, and the same
config as ``FILE.yaml`` beside it. ``vaelab evaluate FILE.safetensors [--config FILE.yaml]``
reads it back (:func:`load_weights`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..config import Config, load_config
from ..errors import CheckpointError, option
from ..io import atomic_write_bytes, atomic_write_text, safetensors_bytes
from ..models import VAE, build_model
from ..models.likelihoods import declare_binary_data
from ..rundir import RunDir
from .checkpoint import FORMAT as CHECKPOINT_FORMAT
from .checkpoint import checkpoint_config, read_checkpoint, read_safetensors

FORMAT = "vaelab-weights-1"


@dataclass
class Weights:
    """A weights file read back: its path, the model (CPU, eval mode), the config it was built
    with and the file's metadata (``source``, ``checkpoint``, ``epoch``, ``ema``)."""

    path: Path
    model: VAE
    config: Config
    metadata: dict[str, Any]


def export_weights(run_dir: str | Path, output: str | Path, which: str = "last") -> Path:
    """Write the weights of ``run_dir``'s ``which`` checkpoint ('last' or 'best') to ``output``
    (safetensors) and its config to ``output`` with suffix ``.yaml``; return ``output``.

    The weights are those evaluation uses: the moving average when the run kept one
    (``training.ema_decay``), else the trained weights; floating-point tensors as float32.

    Raises:
        CheckpointError: the run has no such checkpoint, or it is unreadable.
    """
    if which not in ("last", "best"):
        raise CheckpointError(f"{option('checkpoint')} must be last or best, got {which!r}")
    checkpoint = read_checkpoint(RunDir(run_dir).checkpoint(which))
    tensors = {name: (value.float() if value.is_floating_point() else value).contiguous()
               for name, value in checkpoint.eval_state().items()}
    bad = [name for name, value in tensors.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise CheckpointError(f"{run_dir}: the {which} checkpoint's weights are not finite ({bad[0]}"
                              + (f" and {len(bad) - 1} more" if len(bad) > 1 else "") + "); nothing was exported: "
                              "export another checkpoint (--checkpoint best) or retrain")
    config = checkpoint_config(checkpoint)
    stored = {k: v for k, v in checkpoint.config.items() if k.startswith("_")}  # _image_shape, _num_classes
    metadata = {
        "format": FORMAT, "config": json.dumps({**config.to_dict(), **stored}), "source": Path(run_dir).name,
        "checkpoint": which, "epoch": str(checkpoint.training_state.epoch),
        "ema": json.dumps(checkpoint.ema_state is not None), "vaelab": __version__,
    }
    output = Path(output)
    atomic_write_bytes(output, safetensors_bytes(tensors, metadata=metadata))
    atomic_write_text(output.with_suffix(".yaml"), config.to_yaml())
    return output


def load_weights(path: str | Path, config: Config | str | Path | None = None) -> Weights:
    """The model in the weights file ``path``, built with ``config`` (a :class:`Config` or a
    YAML file; default: the config stored in the file).

    Raises:
        CheckpointError: the file is missing, not a safetensors file, holds no config and none
            was given, or its weights do not fit the config's model.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist; check the path")
    metadata, tensors = read_safetensors(path, "safetensors file ({exc})")
    if metadata.get("format") == CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is a training checkpoint, not a weights file; pass its run directory "
                              f"({path.parent.parent}), or export the weights first: `vaelab export-weights "
                              f"{path.parent.parent} -o FILE.safetensors`")
    try:
        stored = json.loads(metadata["config"]) if "config" in metadata else {}
    except ValueError:
        stored = None
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path}: the config in its metadata is not a JSON mapping; pass the model's config "
                              "with --config FILE.yaml, or export the weights again")
    if isinstance(config, (str, Path)):
        config = load_config(config)
    if config is None:
        if not stored:
            raise CheckpointError(f"{path} holds no config; pass the run's config with --config FILE.yaml")
        config = checkpoint_config(stored, path)
    image_shape = tuple(stored.get("_image_shape") or _image_shape(config))
    model = build_model(config.model, image_shape, stored.get("_num_classes"))
    declare_binary_data(model.likelihood, config.data.binarize != "none")  # as load_model: the run's data are 0/1
    try:
        model.load_state_dict(tensors)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the model of the config ({exc})") from None
    return Weights(path, model.eval(), config, metadata)


def _image_shape(config: Config) -> tuple[int, ...]:
    from ..data import get_spec, is_user_dataset

    if is_user_dataset(config.data.dataset):
        raise CheckpointError("the weights file does not record the image shape; export it with "
                              "`vaelab export-weights`")
    return get_spec(config.data.dataset).image_shape


def evaluation_path(weights: str | Path, split: str = "test") -> Path:
    """Where ``vaelab evaluate FILE.safetensors`` writes its result by default: beside the file,
    ``FILE.evaluation.json`` (``FILE.evaluation-<split>.json`` for val and train)."""
    weights = Path(weights)
    suffix = "" if split == "test" else f"-{split}"
    return weights.with_name(f"{weights.stem}.evaluation{suffix}.json")
