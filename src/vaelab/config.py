"""Typed, validated run configuration: the single source of truth for a run.

A :class:`Config` has one section per stage of the pipeline (``data``, ``model``,
``objective``, ``training``, ``figures``) plus the run's ``name``, ``output_dir`` and ``seed``. It
round-trips through YAML without loss (``config.yaml`` in every run directory is loadable with
``vaelab train --config``). Each field carries its help text (shown by ``vaelab train --help``,
whose options are generated from these fields) and its constraints; :meth:`Config.from_dict`
rejects unknown keys (suggesting the closest valid one), wrong types and out-of-range values,
listing every problem at once.

The defaults are those of pytorch/examples' VAE (MNIST gray levels, 784-400-20, ReLU, Adam
1e-3, batch 128, 10 epochs, seed 1) so that a default run is comparable to the best-known
baseline.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


def _field(default, help: str, *, choices: tuple | None = None, check=None, factory=None):
    """A dataclass field carrying ``help``, optional ``choices`` and a ``check`` predicate.

    ``check(value) -> str | None`` returns a problem description, or None when valid.
    """
    meta = {"help": help, "choices": choices, "check": check}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _at_least(lo):
    return lambda v: None if v >= lo else f"must be >= {lo}"


def _positive(v):
    return None if v > 0 else "must be > 0"


def _positive_list(v):
    return None if all(w >= 1 for w in v) else "every width must be >= 1"


@dataclass
class DataConfig:
    """Which dataset, where to find it, and how to present it to the model."""

    dataset: str = _field("mnist", "dataset name (see `vaelab datasets`)")
    data_dir: str | None = _field(
        None, "directory holding the dataset files (default: $VAELAB_DATA_DIR, then the user cache)"
    )
    binarize: str = _field(
        "none",
        "pixel binarisation: none (gray levels in [0, 1]), static (one Bernoulli draw, fixed "
        "seed) or dynamic (a fresh draw per batch, Burda et al. 2016)",
        choices=("none", "static", "dynamic"),
    )
    binarize_seed: int = _field(0, "seed of the static draw (and of the evaluation draw under dynamic)")
    validation_size: int = _field(
        0, "examples carved from the training set as a validation split (0: evaluate on test)",
        check=_at_least(0),
    )
    split_seed: int = _field(0, "seed of the train/validation split", check=_at_least(0))
    train_examples: int | None = _field(
        None, "use only the first N training examples (quick runs; default all)", check=_at_least(1)
    )
    eval_examples: int | None = _field(
        None, "use only the first N evaluation examples (quick runs; default all)", check=_at_least(1)
    )


@dataclass
class ModelConfig:
    """The VAE: encoder q(z|x), decoder p(x|z), prior p(z) and likelihood."""

    latent_dim: int = _field(20, "dimension of the latent variable z", check=_at_least(1))
    hidden: list[int] = _field(
        None, "hidden layer widths of the MLP encoder, input side first (depth = length)",
        factory=lambda: [400], check=_positive_list,
    )
    decoder_hidden: list[int] | None = _field(
        None, "hidden widths of the decoder, latent side first (default: encoder's, mirrored)",
        check=_positive_list,
    )
    activation: str = _field(
        "relu", "hidden-layer activation",
        choices=("relu", "leaky_relu", "elu", "tanh", "softplus"),
    )
    likelihood: str = _field("bernoulli", "likelihood p(x|z)", choices=("bernoulli",))
    prior: str = _field("standard_normal", "prior p(z)", choices=("standard_normal",))


@dataclass
class ObjectiveConfig:
    """The training objective: negative ELBO = reconstruction NLL + beta * KL."""

    beta: float = _field(1.0, "weight of the KL term (beta-VAE, Higgins et al. 2017)", check=_at_least(0))
    n_samples: int = _field(1, "Monte Carlo samples of z per example (S)", check=_at_least(1))


@dataclass
class TrainingConfig:
    """Optimisation and evaluation schedule."""

    epochs: int = _field(10, "number of passes over the training set", check=_at_least(1))
    batch_size: int = _field(128, "training examples per step", check=_at_least(1))
    learning_rate: float = _field(1e-3, "Adam learning rate", check=_positive)
    eval_batch_size: int = _field(1000, "examples per evaluation batch", check=_at_least(1))
    device: str = _field("auto", "device: auto (CUDA if present), cpu, cuda or cuda:N")
    progress: bool = _field(True, "show a progress bar on a terminal")


def _manifold_range(v):
    if len(v) not in (1, 2):
        return "must be one bound B (for -B..B) or two bounds LO HI"
    lo, hi = (-abs(v[0]), abs(v[0])) if len(v) == 1 else v
    return None if lo < hi else "must have LO < HI (or B > 0)"


def _two_dims(v):
    if len(v) != 2 or v[0] == v[1] or min(v) < 0:
        return "must be two different latent dimensions counted from 0, e.g. 0 1"
    return None


@dataclass
class FiguresConfig:
    """Figures of a run (:mod:`vaelab.plots`): drawn at the end of training and by
    ``vaelab plot``, and the image grids written to TensorBoard during training."""

    tensorboard_images_every: int = _field(
        1, "write image grids (reconstructions, samples, latent manifold) to TensorBoard every N "
        "epochs and after the last one (0: never)", check=_at_least(0),
    )
    log_scale: bool = _field(False, "draw loss curves on a logarithmic y axis")
    manifold_range: list[float] | None = _field(
        None, "latent manifold grid bounds in every latent dimension: B (for -B..B) or LO HI "
        "(default: the prior's quantiles, see --manifold-quantile)", check=_manifold_range,
    )
    manifold_quantile: float = _field(
        0.025, "without --manifold-range the grid spans the prior's quantiles Q..1-Q in each "
        "dimension (0.025: its central 95 percent)",
        check=lambda v: None if 0 < v < 0.5 else "must be in (0, 0.5)",
    )
    manifold_steps: int = _field(20, "latent manifold grid points per latent dimension", check=_at_least(2))
    manifold_dims: list[int] | None = _field(
        None, "for latents of more than 2 dimensions: the two dimensions (from 0) the manifold grid "
        "spans, the others at the prior mean (default: the two whose test posterior means vary most)",
        check=_two_dims,
    )
    interpolation: str = _field(
        "linear", "path between two posterior means in the interpolation figure: linear, or "
        "spherical (slerp, White 2016)", choices=("linear", "spherical"),
    )


@dataclass
class Config:
    """A whole run. Build it with :meth:`from_dict`, :func:`load_config` or by hand."""

    name: str | None = _field(None, "run name (default: timestamp and dataset)")
    output_dir: str = _field("runs", "directory holding run directories")
    seed: int = _field(1, "seed of parameters init, data order and sampling", check=_at_least(0))
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    figures: FiguresConfig = field(default_factory=FiguresConfig)

    # --- construction -----------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "Config":
        """Build and validate a config from nested plain values (as read from YAML).

        Missing keys take their defaults.

        Raises:
            ConfigError: listing every unknown key (with the closest valid name), wrong type,
                invalid choice and out-of-range value found.
        """
        problems: list[str] = []
        config = _build(cls, values or {}, "", problems)
        if not problems:
            problems.extend(_cross_checks(config))
        if problems:
            raise ConfigError(_format_problems(problems))
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON-serialisable) holding every field."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, overrides: dict[str, Any]) -> "Config":
        """A new validated config with dotted-key ``overrides`` applied (``{"model.latent_dim": 2}``)."""
        values = self.to_dict()
        set_dotted(values, overrides)
        return Config.from_dict(values)


def set_dotted(values: dict[str, Any], overrides: dict[str, Any]) -> None:
    """Apply ``{"section.key": value}`` overrides to a nested dict in place."""
    for dotted, value in overrides.items():
        target = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ConfigError(f"cannot set {dotted}: {part} is not a section")
        target[leaf] = value


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file.

    Raises:
        ConfigError: the file is missing, is not valid YAML, or holds an invalid config.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the path") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"config file {path} is not valid YAML{where}; fix its syntax") from None
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, found {type(values).__name__}")
    try:
        return Config.from_dict(values)
    except ConfigError as exc:
        raise ConfigError(f"in {path}: {exc}") from None


def sections() -> dict[str, type]:
    """Map section name -> dataclass, in pipeline order."""
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if dataclasses.is_dataclass(hints[f.name])}


# --- internals ---------------------------------------------------------------------------


def _build(cls, values: Any, prefix: str, problems: list[str]):
    where = prefix.rstrip(".") or "config"
    if not isinstance(values, dict):
        problems.append(f"{where} must be a mapping, got {values!r}")
        return cls()
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (valid: {', '.join(fields)})"
            problems.append(f"unknown key {prefix}{key}{hint}")
    kwargs = {}
    for name, f in fields.items():
        if name not in values:
            continue
        kind = hints[name]
        if dataclasses.is_dataclass(kind):
            kwargs[name] = _build(kind, values[name], f"{prefix}{name}.", problems)
            continue
        ok, value = _coerce(values[name], kind)
        if not ok:
            problems.append(f"{prefix}{name} must be {_type_name(kind)}, got {values[name]!r}")
            continue
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(f"{prefix}{name} must be one of {', '.join(choices)}; got {value!r}{hint}")
            continue
        check = f.metadata.get("check")
        if check is not None and value is not None:
            problem = check(value)
            if problem:
                problems.append(f"{prefix}{name} {problem} (got {value!r})")
                continue
        kwargs[name] = value
    return cls(**kwargs)


def _coerce(value: Any, kind) -> tuple[bool, Any]:
    """Check ``value`` against a simple type hint, allowing int -> float and scalar -> [scalar]."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(kind)
        if value is None and type(None) in args:
            return True, None
        for arg in args:
            if arg is type(None):
                continue
            ok, out = _coerce(value, arg)
            if ok:
                return True, out
        return False, value
    if origin is list:
        (item,) = typing.get_args(kind)
        items = value if isinstance(value, (list, tuple)) else [value]
        out = []
        for v in items:
            ok, c = _coerce(v, item)
            if not ok:
                return False, value
            out.append(c)
        return (len(out) > 0), out
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return (isinstance(value, int) and not isinstance(value, bool)), value
    if kind is float:
        if isinstance(value, bool):
            return False, value
        if isinstance(value, (int, float)):
            return True, float(value)
        return False, value
    if kind is str:
        return isinstance(value, str), value
    return False, value


def _type_name(kind) -> str:
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in typing.get_args(kind) if a is not type(None)]
        return " or ".join(names) + " or null"
    if origin is list:
        return f"a non-empty list of {_type_name(typing.get_args(kind)[0])}"
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(kind, str(kind))


def _cross_checks(config: Config) -> list[str]:
    """Checks that involve more than one field."""
    problems = []
    if config.name is not None and (
        not config.name or "/" in config.name or "\\" in config.name or config.name in (".", "..")
    ):
        problems.append(f"name must be a plain directory name without '/', got {config.name!r}")
    if "/" in config.data.dataset or "\\" in config.data.dataset or config.data.dataset.startswith("."):
        problems.append(f"data.dataset must be a dataset name, got {config.data.dataset!r}")
    dims = config.figures.manifold_dims
    if dims is not None and max(dims) >= config.model.latent_dim:
        problems.append(f"figures.manifold_dims {dims} must be below model.latent_dim={config.model.latent_dim}")
    return problems


def _format_problems(problems: list[str]) -> str:
    if len(problems) == 1:
        return f"invalid config: {problems[0]}"
    return "invalid config (" + str(len(problems)) + " problems):\n  - " + "\n  - ".join(problems)
