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
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, with two changes for configs: a key given twice in one mapping is an
    error (not silently the last value), and numbers are read the way people write them:
    ``1e-3`` and ``3E5`` are floats (YAML 1.1 wants ``1.0e-3``)."""


_FLOAT = (r"^(?:[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?"
          r"|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
          r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_StrictLoader.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
for _first in list(_StrictLoader.yaml_implicit_resolvers):
    _StrictLoader.yaml_implicit_resolvers[_first] = [
        (tag, regexp) for tag, regexp in _StrictLoader.yaml_implicit_resolvers[_first]
        if tag != "tag:yaml.org,2002:float"]
import re as _re  # noqa: E402

_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", _re.compile(_FLOAT), list("-+0123456789."))


def _construct_mapping(loader, node, deep=False):
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} appears twice in one mapping (lines {seen[key] + 1} and "
                f"{key_node.start_mark.line + 1}); keep one", key_node.start_mark)
        seen[key] = key_node.start_mark.line
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def yaml_load(text: str) -> Any:
    """Parse config YAML: safe (no objects), duplicate keys rejected, ``1e-3`` a number.

    Raises:
        yaml.YAMLError: invalid YAML or a duplicate key (with its line).
    """
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass


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

    dataset: str = _field(
        "mnist", "dataset name (see `vaelab datasets`), or your own data: a .npz/.pt/.safetensors file "
        "with x_train, x_test (optional y_train, y_test) or an image folder with train/<class>/ and "
        "test/<class>/ (see docs: your own data)")
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
    subset_seed: int | None = _field(
        None, "with train_examples: draw the N training examples at random with this seed instead of "
        "taking the first N (sweeps set it to the run's seed so seeds vary the subset)", check=_at_least(0),
    )
    image_size: list[int] | None = _field(
        None, "your own image folder only: resize every image to H W (bilinear; default: keep the size, "
        "which must then be the same for all)", check=_positive_list,
    )
    toy2d_range: str = _field(
        "unit", "toy2d only: the square the points are uniform in, unit = [0, 1]^2 or "
        "symmetric = [-1, 1]^2", choices=("unit", "symmetric"),
    )
    toy2d_train_size: int = _field(10000, "toy2d only: number of training points", check=_at_least(1))
    toy2d_test_size: int = _field(2000, "toy2d only: number of test points", check=_at_least(1))
    toy2d_seed: int = _field(0, "toy2d only: seed of the generated points", check=_at_least(0))


LIKELIHOOD_NAMES = ("bernoulli", "continuous_bernoulli", "gaussian", "laplace", "logit_normal")
NETWORK_NAMES = ("mlp", "conv", "conv3", "dcgan")
LOSS_SHORTCUTS = {
    # what the studies call a "loss", as the likelihood it is the negative log of
    "bce": {"likelihood": "bernoulli"},
    "mse": {"likelihood": "gaussian", "likelihood_scale": 1.0, "learn_scale": "none"},
    "mae": {"likelihood": "laplace", "likelihood_scale": 1.0, "learn_scale": "none"},
}


def _probability(v):
    return None if 0 <= v < 1 else "must be in [0, 1)"


def _positive_floats(v):
    return None if all(x > 0 for x in v) else "every value must be > 0"


@dataclass
class ModelConfig:
    """The VAE: encoder q(z|x), decoder p(x|z), prior p(z) and likelihood."""

    latent_dim: int = _field(20, "dimension of the latent variable z", check=_at_least(1))
    network: str = _field(
        "mlp", "encoder/decoder family: mlp, conv (configurable stack), conv3 (3x3-32, 7x7-64, "
        "5x5-128, each with 2x2 max-pooling) or dcgan (4x4 stride-2 convolutions, batch norm)",
        choices=NETWORK_NAMES,
    )
    decoder_network: str | None = _field(
        None, "the decoder's family when it differs from the encoder's: mlp pairs a convolutional "
        "encoder with an MLP decoder (default: the same as network)", choices=("mlp",),
    )
    hidden: list[int] = _field(
        None, "hidden layer widths of the MLP encoder, input side first (depth = length); for "
        "conv networks, the fully connected layers after the convolutions",
        factory=lambda: [400], check=_positive_list,
    )
    decoder_hidden: list[int] | None = _field(
        None, "hidden widths of the decoder, latent side first (default: encoder's, mirrored)",
        check=_positive_list,
    )
    conv_channels: list[int] | None = _field(
        None, "network=conv: output channels of each convolution (default 32 64)", check=_positive_list,
    )
    conv_kernels: list[int] | None = _field(
        None, "network=conv: kernel size of each convolution (one value or one per layer; default 3)",
        check=_positive_list,
    )
    conv_downsample: str = _field(
        "pool", "network=conv: halve the resolution after each convolution by 2x2 max-pooling "
        "(pool) or by stride 2 (stride)", choices=("pool", "stride"),
    )
    conv_upsample: str = _field(
        "transpose", "conv decoders: double the resolution by transposed convolutions (transpose) "
        "or nearest-neighbour upsampling then convolution (upsample)", choices=("transpose", "upsample"),
    )
    activation: str = _field(
        "relu", "hidden-layer activation",
        choices=("relu", "leaky_relu", "elu", "tanh", "softplus"),
    )
    batch_norm: bool = _field(False, "batch normalisation after each hidden layer")
    dropout: float = _field(0.0, "dropout probability after each hidden layer", check=_probability)
    init: str = _field(
        "default", "weight initialisation: default (PyTorch's), xavier_uniform, xavier_normal, "
        "kaiming_normal, kaiming_uniform (biases zero for all but default)",
        choices=("default", "xavier_uniform", "xavier_normal", "kaiming_normal", "kaiming_uniform"),
    )
    likelihood: str = _field(
        "bernoulli", "likelihood p(x|z): bernoulli (BCE), continuous_bernoulli, gaussian (MSE), "
        "laplace (MAE), logit_normal", choices=LIKELIHOOD_NAMES,
    )
    loss: str | None = _field(
        None, "shortcut for the likelihood a 'loss' is: bce -> bernoulli, mse -> gaussian with "
        "sigma 1, mae -> laplace with scale 1 (sets likelihood, likelihood_scale, learn_scale)",
        choices=tuple(LOSS_SHORTCUTS),
    )
    likelihood_scale: float = _field(
        1.0, "gaussian/logit_normal sigma or laplace scale b (fixed value, or initial value when learned)",
        check=_positive,
    )
    learn_scale: str = _field(
        "none", "learn the likelihood scale: none (fixed), scalar (one value), pixel (one per pixel) or "
        "decoder (a second decoder output per pixel: the scale depends on z)",
        choices=("none", "scalar", "pixel", "decoder"),
    )
    scale_floor: float = _field(
        1e-3, "smallest scale a learned sigma/b can take (keeps the NLL finite)", check=_positive,
    )
    logit_eps: float = _field(
        1e-3, "logit_normal: pixels are clamped to [eps, 1-eps] before the logit", check=_positive,
    )
    prior: str = _field(
        "normal", "prior p(z): normal, a diagonal Gaussian N(prior_loc, prior_std^2) "
        "(standard_normal is N(0, I)); mog, a learned mixture of mog_components diagonal Gaussians; "
        "vamp, the VampPrior (Tomczak & Welling 2018): the encoder's posteriors at vamp_components "
        "learned pseudo-inputs (with mog and vamp the KL is a Monte Carlo estimate)",
        choices=("normal", "standard_normal", "mog", "vamp"),
    )
    vamp_components: int = _field(
        500, "prior=vamp: number K of pseudo-inputs (Tomczak & Welling 2018 use 500 on MNIST)",
        check=_at_least(1),
    )
    mog_components: int = _field(
        500, "prior=mog: number K of mixture components (weights 1/K, means and scales learned)",
        check=_at_least(1),
    )
    conditional: bool = _field(
        False, "conditional VAE (Sohn et al. 2015): the one-hot label is concatenated to the encoder's "
        "input and to z at the decoder's, so q(z|x,y) and p(x|z,y) with p(z) unchanged; needs labelled data",
    )
    prior_loc: list[float] = _field(
        None, "prior mean: one value or one per latent dimension", factory=lambda: [0.0],
    )
    prior_std: list[float] | None = _field(
        None, "prior standard deviation: one value or one per dimension (default 1); give this "
        "or prior_variance, not both", check=_positive_floats,
    )
    prior_variance: list[float] | None = _field(
        None, "prior variance (= prior_std squared): one value or one per dimension", check=_positive_floats,
    )

    def prior_scale(self) -> list[float]:
        """The prior's standard deviations, whichever spelling the config used."""
        if self.prior_variance is not None:
            return [v ** 0.5 for v in self.prior_variance]
        return list(self.prior_std) if self.prior_std is not None else [1.0]


RECONSTRUCTION_NAMES = ("likelihood", "perceptual", "perceptual+likelihood")


@dataclass
class ObjectiveConfig:
    """The training objective: negative ELBO = reconstruction NLL + beta * KL."""

    beta: float = _field(1.0, "weight of the KL term (beta-VAE, Higgins et al. 2017)", check=_at_least(0))
    n_samples: int = _field(1, "Monte Carlo samples of z per example (S)", check=_at_least(1))
    kl_schedule: str = _field(
        "constant", "KL weight over training: constant (beta), linear (warm-up from 0 to beta over "
        "kl_warmup_epochs, Bowman et al. 2016) or cyclical (kl_cycles linear ramps, Fu et al. 2019)",
        choices=("constant", "linear", "cyclical"),
    )
    kl_warmup_epochs: float = _field(5.0, "kl_schedule=linear: epochs to reach beta", check=_positive)
    kl_cycles: int = _field(4, "kl_schedule=cyclical: number of cycles over the whole run", check=_at_least(1))
    kl_cycle_ramp: float = _field(
        0.5, "kl_schedule=cyclical: fraction of each cycle spent increasing the weight", check=_positive,
    )
    free_bits: float = _field(
        0.0, "free bits (Kingma et al. 2016): nats per latent dimension below which the batch-mean "
        "KL of that dimension is not penalised (0: off)", check=_at_least(0),
    )
    bound: str = _field(
        "elbo", "training bound: elbo (Kingma & Welling 2014) or iwae, the importance-weighted bound "
        "log (1/K) sum_k p(x,z_k)/q(z_k|x) with K = iwae_k samples (Burda et al. 2016, eq. 8)",
        choices=("elbo", "iwae"),
    )
    iwae_k: int = _field(5, "bound=iwae: importance samples K per example", check=_at_least(1))
    reconstruction: str = _field(
        "likelihood", "reconstruction term of the loss: likelihood (-log p(x|z), nats), perceptual "
        "(distance between the dataset classifier's feature maps of x and of the decoder mean; NOT a "
        "likelihood, needs `vaelab classifier train`) or perceptual+likelihood (perceptual_weight * "
        "perceptual + -log p(x|z)); metrics always report the plain likelihood",
        choices=RECONSTRUCTION_NAMES,
    )
    perceptual_weight: float = _field(
        1.0, "weight lambda of the perceptual term", check=_at_least(0),
    )
    perceptual_layers: list[str] = _field(
        None, "classifier layers compared by the perceptual term (relu1 .. relu4, features)",
        factory=lambda: ["relu2", "relu4"],
    )


LOGGER_NAMES = ("tensorboard", "csv", "mlflow", "wandb")


def _logger_list(v):
    names = [part.strip().lower() for part in v.split(",") if part.strip()]
    bad = [n for n in names if n not in LOGGER_NAMES]
    if bad:
        close = difflib.get_close_matches(bad[0], LOGGER_NAMES, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return f"has unknown logger {bad[0]!r}{hint}; use a comma-separated list of {', '.join(LOGGER_NAMES)}"
    return None


@dataclass
class TrainingConfig:
    """Optimisation and evaluation schedule."""

    epochs: int = _field(10, "number of passes over the training set", check=_at_least(1))
    batch_size: int = _field(128, "training examples per step", check=_at_least(1))
    optimizer: str = _field("adam", "optimiser", choices=("adam", "adamw", "sgd", "rmsprop"))
    learning_rate: float = _field(1e-3, "learning rate", check=_positive)
    momentum: float = _field(0.0, "sgd/rmsprop momentum", check=_probability)
    nesterov: bool = _field(False, "sgd: Nesterov momentum")
    weight_decay: float = _field(
        0.0, "L2 penalty lambda on the weights (adamw: decoupled weight decay)", check=_at_least(0),
    )
    lr_schedule: str = _field(
        "none", "learning-rate schedule per epoch: none, step (x lr_gamma every lr_step_epochs), "
        "cosine (to 0 at the last epoch) or plateau (x lr_gamma after lr_patience epochs without "
        "improvement of the evaluation -ELBO)", choices=("none", "step", "cosine", "plateau"),
    )
    lr_step_epochs: int = _field(10, "lr_schedule=step: epochs between decays", check=_at_least(1))
    lr_gamma: float = _field(0.1, "lr_schedule=step/plateau: decay factor", check=_positive)
    lr_patience: int = _field(2, "lr_schedule=plateau: epochs without improvement", check=_at_least(0))
    clip_value: float | None = _field(None, "clip each gradient element to [-v, v]", check=_positive)
    clip_norm: float | None = _field(None, "clip the global gradient norm to this value", check=_positive)
    eval_batch_size: int = _field(1000, "examples per evaluation batch", check=_at_least(1))
    checkpoint_every_steps: int | None = _field(
        None, "also checkpoint every N optimisation steps inside an epoch (default: end of epoch only)",
        check=_at_least(1),
    )
    nonfinite: str = _field(
        "stop", "on a non-finite loss or gradient: stop (keeping the last good checkpoint) or skip "
        "the step (at most max_skipped_steps per run)", choices=("stop", "skip"),
    )
    max_skipped_steps: int = _field(10, "nonfinite=skip: steps that may be skipped before stopping",
                                    check=_at_least(0))
    device: str = _field("auto", "device: auto (CUDA if present), cpu, cuda or cuda:N")
    progress: bool = _field(True, "show a progress bar on a terminal")
    logger: str = _field(
        "tensorboard,csv", "comma-separated trackers: tensorboard, csv (metrics.csv, always written), mlflow "
        "(a local SQLite store unless --mlflow-uri), wandb (offline unless logged in)", check=_logger_list,
    )
    mlflow_uri: str | None = _field(
        None, "logger mlflow: tracking URI (default sqlite:///<output_dir>/mlflow.db, a local SQLite store)")
    mlflow_experiment: str = _field("vaelab", "logger mlflow: experiment name")
    wandb_project: str = _field("vaelab", "logger wandb: project name")
    tracker_group: str | None = _field(
        None, "logger mlflow/wandb: group runs under one MLflow parent run / W&B group of this name (a sweep "
        "sets its name)")


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
        None, "for latents of more than 2 dimensions: the two dimensions (from 0, as z_0 z_1 in the "
        "figures) the manifold grid spans, the others at the prior mean (default: the two whose test "
        "posterior means vary most)",
        check=_two_dims,
    )
    reconstruction_layout: str = _field(
        "interleaved", "reconstructions figure: interleaved (a row of inputs above a row of their "
        "reconstructions, repeated), block (all input rows above all reconstruction rows) or columns "
        "(one image per row: the original first, then decoder means at 7 draws z ~ q(z|x))",
        choices=("interleaved", "block", "columns"),
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
        values = _expand_loss_shortcut(values or {}, problems)
        config = _build(cls, values, "", problems)
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
        if overrides.get("model.loss") is not None:  # the shortcut replaces the settings it implies
            for key in LOSS_SHORTCUTS.get(overrides["model.loss"], {}):
                if f"model.{key}" not in overrides:
                    values["model"].pop(key, None)
        set_dotted(values, overrides)
        return Config.from_dict(values)


@dataclass
class EvaluationConfig:
    """What ``vaelab evaluate`` measures on a run (not part of a run's config)."""

    split: str = _field("test", "split to evaluate: test, val (needs data.validation_size) or train",
                        choices=("test", "val", "train"))
    checkpoint: str = _field("best", "checkpoint to evaluate", choices=("best", "last"))
    k: int = _field(1000, "importance samples K per example for the log-likelihood (Burda et al. 2016)",
                    check=_at_least(1))
    examples: int | None = _field(None, "evaluate only the first N examples of the split (default all)",
                                  check=_at_least(1))
    batch_size: int | None = _field(
        None, "examples per batch (default: as many as fit chunk_size latent samples)", check=_at_least(1))
    chunk_size: int = _field(4096, "latent samples decoded at once (bounds memory: about "
                             "chunk_size * pixels * 12 bytes)", check=_at_least(1))
    seed: int = _field(0, "seed of the importance samples and of the generated samples", check=_at_least(0))
    probe: bool = _field(True, "fit a logistic-regression and a 5-NN probe on the latent means")
    probe_train_examples: int | None = _field(
        10000, "training examples the probes are fit on (null: all)", check=_at_least(1))
    fid: str = _field(
        "auto", "sample quality: auto (classifier FID when a classifier is cached), classifier, "
        "inception (needs torch-fidelity and local weights), none", choices=("auto", "classifier", "inception", "none"))
    fid_samples: int = _field(10000, "generated samples for the FID and the class histogram", check=_at_least(2))
    sampler: str = _field(
        "prior", "latent sampler of the generated samples: prior (z ~ p(z)), or gmm, which also scores "
        "samples from a Gaussian mixture fitted to the training set's posterior means (Ghosh et al. 2020), "
        "beside the prior's", choices=("prior", "gmm"))
    gmm_components: int = _field(10, "sampler=gmm: mixture components (full covariance; Ghosh et al. 2020 use 10)",
                                 check=_at_least(1))
    inception_weights: str | None = _field(
        None, "path of the FID Inception weights (default: $VAELAB_INCEPTION_WEIGHTS, then the "
        "torch-fidelity cache in the torch hub directory)")
    data_dir: str | None = _field(None, "directory holding the dataset files (default: the run's)")
    device: str = _field("auto", "device: auto (CUDA if present), cpu, cuda or cuda:N")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "EvaluationConfig":
        """Build and validate (see :meth:`Config.from_dict`).

        Raises:
            ConfigError: unknown keys, wrong types or out-of-range values.
        """
        return section_from_dict(cls, values)


@dataclass
class ClassifierConfig:
    """The small CNN behind classifier-feature FID, sample class histograms and the perceptual
    loss (``vaelab classifier train``)."""

    dataset: str = _field("mnist", "dataset whose training split the classifier learns")
    epochs: int = _field(4, "passes over the training set", check=_at_least(1))
    batch_size: int = _field(128, "training examples per step", check=_at_least(1))
    learning_rate: float = _field(2e-3, "Adam learning rate (cosine decay to 0 over the epochs)", check=_positive)
    channels: list[int] = _field(None, "output channels of the four 3x3 convolutions",
                                 factory=lambda: [16, 16, 32, 32], check=_positive_list)
    hidden: int = _field(128, "width of the penultimate layer (the FID feature space)", check=_at_least(1))
    dropout: float = _field(0.25, "dropout before the last layer", check=_probability)
    seed: int = _field(1, "seed of the initialisation and data order", check=_at_least(0))
    train_examples: int | None = _field(
        None, "use only the first N training images (quick runs; default all)", check=_at_least(1))
    data_dir: str | None = _field(None, "directory holding the dataset files (default: $VAELAB_DATA_DIR)")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "ClassifierConfig":
        """Build and validate (see :meth:`Config.from_dict`).

        Raises:
            ConfigError: unknown keys, wrong types or out-of-range values.
        """
        return section_from_dict(cls, values)


def section_from_dict(cls, values: dict[str, Any] | None):
    """Build and validate one config dataclass ``cls`` from plain values.

    Raises:
        ConfigError: listing every problem found.
    """
    problems: list[str] = []
    config = _build(cls, values or {}, "", problems)
    if problems:
        raise ConfigError(_format_problems(problems))
    return config


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
    from .errors import VaelabError
    from .io import read_text

    try:
        text = read_text(path, "config file")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; check the path") from None
    except VaelabError as exc:
        raise ConfigError(str(exc)) from None
    try:
        values = yaml_load(text)
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(f"config file {path}: {exc.problem}") from None
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
        if ok and any(isinstance(v, float) and not math.isfinite(v) for v in (value if isinstance(value, list) else [value])):
            problems.append(f"{prefix}{name} must be a finite number, got {values[name]!r}")
            continue
        if not ok:
            problems.append(f"{prefix}{name} must be {_type_name(kind)}, got {values[name]!r}")
            continue
        choices = f.metadata.get("choices")
        if choices and value is not None and value not in choices:
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


def _expand_loss_shortcut(values: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """Replace ``model.loss`` (bce/mse/mae) by the likelihood settings it stands for, so the
    resolved config names the likelihood explicitly."""
    model = values.get("model") if isinstance(values, dict) else None
    if not isinstance(model, dict) or model.get("loss") is None:
        return values
    loss = model["loss"]
    if loss not in LOSS_SHORTCUTS:
        close = difflib.get_close_matches(str(loss), list(LOSS_SHORTCUTS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"model.loss must be one of {', '.join(LOSS_SHORTCUTS)}; got {loss!r}{hint}")
        return values
    for key, implied in LOSS_SHORTCUTS[loss].items():
        if key in model and model[key] != implied:
            problems.append(f"model.loss {loss} means {key} {implied}, but model.{key} is {model[key]!r}; "
                            f"give one of them")
    return {**values, "model": {**model, **LOSS_SHORTCUTS[loss], "loss": None}}


def _cross_checks(config: Config) -> list[str]:
    """Checks that involve more than one field."""
    problems = []
    m, t, d = config.model, config.training, config.data
    if m.prior_std is not None and m.prior_variance is not None:
        problems.append("give model.prior_std or model.prior_variance, not both")
    for key in ("prior_loc", "prior_std", "prior_variance"):
        value = getattr(m, key)
        if value is not None and len(value) not in (1, m.latent_dim):
            problems.append(f"model.{key} needs 1 or latent_dim={m.latent_dim} values, got {len(value)}")
    if m.prior == "standard_normal" and (m.prior_loc != [0.0] or m.prior_scale() != [1.0]):
        problems.append("model.prior standard_normal is N(0, I); use prior: normal with prior_loc/prior_std")
    if m.prior in ("mog", "vamp"):
        if m.prior_loc != [0.0] or m.prior_std is not None or m.prior_variance is not None:
            problems.append(f"model.prior_loc/prior_std/prior_variance set a normal prior; prior {m.prior} learns "
                            "its own (drop them, or use prior: normal)")
        if config.objective.free_bits:
            problems.append(f"objective.free_bits needs the KL per latent dimension, which prior {m.prior} (a "
                            "mixture) does not have; use prior: normal or free_bits: 0")
    if m.conditional and m.prior == "vamp":
        problems.append("model.conditional with prior vamp: the VampPrior's pseudo-inputs have no labels; "
                        "use prior normal or mog")
    if m.likelihood == "logit_normal" and d.binarize != "none":
        problems.append(
            f"model.likelihood logit_normal is a density on (0, 1) and cannot model binarised data "
            f"(data.binarize={d.binarize}); use bernoulli, or binarize: none"
        )
    if m.likelihood in ("gaussian", "laplace", "logit_normal") and m.likelihood_scale < m.scale_floor:
        problems.append(
            f"model.likelihood_scale={m.likelihood_scale} is below model.scale_floor={m.scale_floor}, the "
            "smallest scale the likelihood takes; raise the scale or lower scale_floor")
    if m.learn_scale != "none" and m.likelihood in ("bernoulli", "continuous_bernoulli"):
        problems.append(f"model.learn_scale={m.learn_scale}: the {m.likelihood} likelihood has no scale")
    o = config.objective
    if o.bound == "iwae":
        if o.n_samples != 1:
            problems.append("objective.n_samples is the ELBO's sample count; with bound iwae set objective.iwae_k")
        if o.free_bits:
            problems.append("objective.free_bits applies to the ELBO's KL term, not to bound iwae")
        if o.reconstruction != "likelihood":
            problems.append("bound iwae needs reconstruction: likelihood (a perceptual term is not a log-density)")
    if m.network == "mlp" and (m.conv_channels or m.conv_kernels):
        problems.append("model.conv_channels/conv_kernels need network: conv")
    if m.conv_kernels and m.conv_channels and len(m.conv_kernels) not in (1, len(m.conv_channels)):
        problems.append("model.conv_kernels needs one value or one per entry of model.conv_channels")
    if t.momentum and t.optimizer not in ("sgd", "rmsprop"):
        problems.append(f"training.momentum applies to sgd and rmsprop, not {t.optimizer}")
    if t.nesterov and (t.optimizer != "sgd" or not t.momentum):
        problems.append("training.nesterov needs optimizer: sgd and momentum > 0")
    if config.name is not None and (
        not config.name or "/" in config.name or "\\" in config.name or config.name in (".", "..")
    ):
        problems.append(f"name must be a plain directory name without '/', got {config.name!r}")
    if not config.data.dataset:
        problems.append("data.dataset must be a dataset name or the path of your data, got ''")
    if config.data.image_size is not None and len(config.data.image_size) != 2:
        problems.append(f"data.image_size needs two values H W, got {config.data.image_size}")
    dims = config.figures.manifold_dims
    if dims is not None and max(dims) >= config.model.latent_dim:
        problems.append(f"figures.manifold_dims {dims} must be below model.latent_dim={config.model.latent_dim}")
    return problems


def _format_problems(problems: list[str]) -> str:
    if len(problems) == 1:
        return f"invalid config: {problems[0]}"
    return "invalid config (" + str(len(problems)) + " problems):\n  - " + "\n  - ".join(problems)
