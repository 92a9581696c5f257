"""Typed, validated run configuration: the single source of truth for a run.

A :class:`Config` has one section per stage of the pipeline (``data``, ``model``,
``objective``, ``training``, ``figures``) plus the run's ``name``, ``output_dir`` and ``seed``. It
round-trips through YAML without loss (``config.yaml`` in every run directory is loadable with
``vaelab train --config``). Each field carries its help text (shown by ``vaelab train --help``,
whose options are generated from these fields) and its constraints; :meth:`Config.from_dict`
rejects unknown keys (suggesting the closest valid one), wrong types and out-of-range values,
listing every problem at once.

The choices of component fields (likelihood, prior, network, activation, init, optimizer,
bound) are the names registered beside the components' code (:mod:`vaelab.registry`), and each
component checks the rules of its own fields (``config_problems`` in its module); the section
machinery (fields with help and checks, building from plain values, YAML) is
:mod:`vaelab.schema`. Sections stay flat, so every existing YAML file and flag keeps its shape.

The defaults are those of pytorch/examples' VAE (MNIST gray levels, 784-400-20, ReLU, Adam
1e-3, batch 128, 10 epochs, seed 1) so that a default run is comparable to the best-known
baseline.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import registry
from .errors import ConfigError
from .schema import (Applies, at_least, between, build_section, config_field, format_problems, positive,
                     positive_floats, positive_list, probability, set_dotted, type_hints, when, yaml_dump, yaml_load)


def _convolutional_networks() -> tuple[str, ...]:
    """The networks whose encoder is convolutional (the registry's, read when asked)."""
    return tuple(name for name, network in registry.NETWORKS.entries.items() if network.convolutional)


def _scaled_likelihoods() -> tuple[str, ...]:
    """The likelihoods with a scale parameter (``has_scale``)."""
    return tuple(name for name, likelihood in registry.LIKELIHOODS.entries.items() if likelihood.has_scale)


_PERCEPTUAL = ("perceptual", "perceptual+likelihood")


@dataclass
class DataConfig:
    """Which dataset, where to find it, and how to present it to the model."""

    dataset: str = config_field(
        "mnist", "dataset name (see `vaelab datasets`), or your own data: a .npz/.pt/.safetensors file "
        "with x_train, x_test (optional y_train, y_test) or an image folder with train/<class>/ and "
        "test/<class>/ (see docs: your own data)")
    data_dir: str | None = config_field(
        None, "directory holding the dataset files (default: $VAELAB_DATA_DIR, then the user cache)"
    )
    binarize: str = config_field(
        "none",
        "pixel binarisation: none (gray levels in [0, 1]), static (one Bernoulli draw, fixed "
        "seed) or dynamic (a fresh draw per batch, Burda et al. 2016)",
        choices=("none", "static", "dynamic"),
    )
    binarize_seed: int = config_field(
        0, "seed of the static draw (and of the evaluation draw under dynamic)",
        applies=when("data.binarize", ("static", "dynamic")),
    )
    validation_size: int = config_field(
        0, "examples carved from the training set as a validation split (0: evaluate on test)",
        check=at_least(0),
    )
    split_seed: int = config_field(
        0, "seed of the train/validation split", check=at_least(0),
        applies=Applies("data.validation_size", test=lambda n: n > 0, needs="N"),
    )
    test_split_seed: int | None = config_field(
        None, "pool the dataset's training and test examples and draw a test split of the same size at random "
        "with this seed (default: the dataset's own test split; e.g. Frey Faces' last 200 frames)",
        check=at_least(0),
    )
    train_examples: int | None = config_field(
        None, "use only the first N training examples (quick runs; default all)", check=at_least(1)
    )
    eval_examples: int | None = config_field(
        None, "use only the first N evaluation examples (quick runs; default all)", check=at_least(1)
    )
    subset_seed: int | None = config_field(
        None, "with train_examples: draw the N training examples at random with this seed instead of "
        "taking the first N (sweeps set it to the run's seed so seeds vary the subset)", check=at_least(0),
    )
    max_classes: int = config_field(
        10000, "your own data: the largest number of classes its labels may name (labels 0..N-1); a label "
        "above it is an error, not N classes (a conditional VAE has one input per class)", check=at_least(1),
    )
    max_gigabytes: float = config_field(
        16.0, "your own data: the most gigabytes its arrays may take once read (decompressed); a larger file is "
        "an error before anything is allocated, and a larger torch Dataset given from Python streams (its test "
        "split must fit)", check=positive,
    )
    image_size: list[int] | None = config_field(
        None, "your own image folder only: resize every image to H W (bilinear; default: keep the size, "
        "which must then be the same for all; at most 4096 each)", check=between(1, 4096),
    )
    toy2d_range: str = config_field(
        "unit", "toy2d only: the square the points are uniform in, unit = [0, 1]^2 or "
        "symmetric = [-1, 1]^2", choices=("unit", "symmetric"), applies=when("data.dataset", ("toy2d",)),
    )
    toy2d_train_size: int = config_field(
        10000, "toy2d only: number of training points", check=at_least(1),
        applies=when("data.dataset", ("toy2d",)),
    )
    toy2d_test_size: int = config_field(
        2000, "toy2d only: number of test points", check=at_least(1),
        applies=when("data.dataset", ("toy2d",)),
    )
    toy2d_seed: int = config_field(
        0, "toy2d only: seed of the generated points", check=at_least(0),
        applies=when("data.dataset", ("toy2d",)),
    )


LOSS_SHORTCUTS = {
    # what the studies call a "loss", as the likelihood it is the negative log of
    "bce": {"likelihood": "bernoulli"},
    "mse": {"likelihood": "gaussian", "likelihood_scale": 1.0, "learn_scale": "none"},
    "mae": {"likelihood": "laplace", "likelihood_scale": 1.0, "learn_scale": "none"},
}


@dataclass
class ModelConfig:
    """The VAE: encoder q(z|x), decoder p(x|z), prior p(z) and likelihood."""

    latent_dim: int = config_field(20, "dimension of the latent variable z", check=at_least(1))
    network: str = config_field(
        "mlp", "encoder/decoder family: mlp, conv (configurable stack), conv3 (3x3-32, 7x7-64, "
        "5x5-128, each with 2x2 max-pooling) or dcgan (4x4 stride-2 convolutions, batch norm)",
        choices=registry.NETWORKS,
    )
    decoder_network: str | None = config_field(
        None, "the decoder's family when it differs from the encoder's: mlp pairs a convolutional "
        "encoder with an MLP decoder (default: the same as network)", choices=("mlp",),
    )
    hidden: list[int] = config_field(
        None, "hidden layer widths of the MLP encoder, input side first (depth = length); for "
        "conv networks, the fully connected layers after the convolutions",
        factory=lambda: [400], check=positive_list,
    )
    decoder_hidden: list[int] | None = config_field(
        None, "hidden widths of the decoder, latent side first (default: encoder's, mirrored)",
        check=positive_list,
    )
    conv_channels: list[int] | None = config_field(
        None, "network=conv: output channels of each convolution (default 32 64)", check=positive_list,
    )
    conv_kernels: list[int] | None = config_field(
        None, "network=conv: kernel size of each convolution (one value or one per layer; default 3)",
        check=positive_list,
    )
    conv_downsample: str = config_field(
        "pool", "network=conv: halve the resolution after each convolution by 2x2 max-pooling "
        "(pool) or by stride 2 (stride)", choices=("pool", "stride"), applies=when("model.network", ("conv",)),
    )
    conv_upsample: str = config_field(
        "transpose", "conv decoders: double the resolution by transposed convolutions (transpose) "
        "or nearest-neighbour upsampling then convolution (upsample)", choices=("transpose", "upsample"),
        applies=when("model.network", _convolutional_networks),
    )
    activation: str = config_field(
        "relu", "hidden-layer activation",
        choices=registry.ACTIVATIONS,
    )
    batch_norm: bool = config_field(False, "batch normalisation after each hidden layer")
    dropout: float = config_field(0.0, "dropout probability after each hidden layer", check=probability)
    init: str = config_field(
        "default", "weight initialisation: default (PyTorch's), xavier_uniform, xavier_normal, "
        "kaiming_normal, kaiming_uniform (biases zero for all but default)",
        choices=registry.INITIALISERS,
    )
    likelihood: str = config_field(
        "bernoulli", "likelihood p(x|z): bernoulli (BCE), continuous_bernoulli, gaussian (MSE), "
        "laplace (MAE), logit_normal", choices=registry.LIKELIHOODS,
    )
    loss: str | None = config_field(
        None, "shortcut for the likelihood a 'loss' is: bce -> bernoulli, mse -> gaussian with "
        "sigma 1, mae -> laplace with scale 1 (sets likelihood, likelihood_scale, learn_scale)",
        choices=tuple(LOSS_SHORTCUTS),
    )
    likelihood_scale: float = config_field(
        1.0, "gaussian/logit_normal sigma or laplace scale b (fixed value, or initial value when learned)",
        check=positive, applies=when("model.likelihood", _scaled_likelihoods),
    )
    learn_scale: str = config_field(
        "none", "learn the likelihood scale: none (fixed), scalar (one value), pixel (one per pixel) or "
        "decoder (a second decoder output per pixel: the scale depends on z)",
        choices=("none", "scalar", "pixel", "decoder"),
    )
    scale_floor: float = config_field(
        1e-3, "smallest scale a learned sigma/b can take (keeps the NLL finite)", check=positive,
    )
    logit_eps: float = config_field(
        1e-3, "logit_normal: pixels are clamped to [eps, 1-eps] before the logit", check=positive,
        applies=when("model.likelihood", ("logit_normal",)),
    )
    prior: str = config_field(
        "normal", "prior p(z): normal, a diagonal Gaussian N(prior_loc, prior_std^2) "
        "(standard_normal is N(0, I)); mog, a learned mixture of mog_components diagonal Gaussians; "
        "vamp, the VampPrior (Tomczak & Welling 2018): the encoder's posteriors at vamp_components "
        "learned pseudo-inputs (with mog and vamp the KL is a Monte Carlo estimate)",
        choices=registry.PRIORS,
    )
    vamp_components: int = config_field(
        500, "prior=vamp: number K of pseudo-inputs (Tomczak & Welling 2018 use 500 on MNIST)",
        check=at_least(1),
    )
    mog_components: int = config_field(
        500, "prior=mog: number K of mixture components (weights 1/K, means and scales learned)",
        check=at_least(1),
    )
    lower_latents: list[int] | None = config_field(
        None, "a hierarchical VAE: the sizes of the stochastic layers below the top one, z_1 (next to x) "
        "first; latent_dim is the top layer's, the prior's (100 with latent_dim 50: the two-layer VAE of "
        "Burda et al. 2016); network mlp only", check=positive_list,
    )
    upper_hidden: list[int] | None = config_field(
        None, "hierarchical VAEs: hidden widths of the networks between consecutive stochastic layers, "
        "in q and in p (default: two layers as wide as z_1, Burda et al.'s 100-100)", check=positive_list,
    )
    inference: str = config_field(
        "bottom_up", "hierarchical VAEs: bottom_up, q(z_1|x) q(z_2|z_1) ... (Burda et al. 2016), or ladder, "
        "top-down with each layer's Gaussian the precision-weighted merge of a bottom-up one and "
        "p(z_l|z_l+1) (Sønderby et al. 2016)", choices=("bottom_up", "ladder"),
    )
    conditional: bool = config_field(
        False, "conditional VAE (Sohn et al. 2015): the one-hot label is concatenated to the encoder's "
        "input and to z at the decoder's, so q(z|x,y) and p(x|z,y) with p(z) unchanged; needs labelled data",
    )
    prior_loc: list[float] = config_field(
        None, "prior mean: one value or one per latent dimension", factory=lambda: [0.0],
    )
    prior_std: list[float] | None = config_field(
        None, "prior standard deviation: one value or one per dimension (default 1); give this "
        "or prior_variance, not both", check=positive_floats,
    )
    prior_variance: list[float] | None = config_field(
        None, "prior variance (= prior_std squared): one value or one per dimension", check=positive_floats,
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

    beta: float = config_field(1.0, "weight of the KL term (beta-VAE, Higgins et al. 2017)", check=at_least(0))
    n_samples: int = config_field(1, "Monte Carlo samples of z per example (S)", check=at_least(1))
    kl_schedule: str = config_field(
        "constant", "KL weight over training: constant (beta), linear (warm-up from 0 to beta over "
        "kl_warmup_epochs, Bowman et al. 2016) or cyclical (kl_cycles linear ramps, Fu et al. 2019)",
        choices=("constant", "linear", "cyclical"),
    )
    kl_warmup_epochs: float = config_field(
        5.0, "kl_schedule=linear: epochs to reach beta", check=positive,
        applies=when("objective.kl_schedule", ("linear",)),
    )
    kl_cycles: int = config_field(
        4, "kl_schedule=cyclical: number of cycles over the whole run", check=at_least(1),
        applies=when("objective.kl_schedule", ("cyclical",)),
    )
    kl_cycle_ramp: float = config_field(
        0.5, "kl_schedule=cyclical: fraction of each cycle spent increasing the weight", check=positive,
        applies=when("objective.kl_schedule", ("cyclical",)),
    )
    free_bits: float = config_field(
        0.0, "free bits (Kingma et al. 2016): nats per latent dimension below which the batch-mean "
        "KL of that dimension is not penalised (0: off)", check=at_least(0),
    )
    bound: str = config_field(
        "elbo", "training bound: elbo (Kingma & Welling 2014) or iwae, the importance-weighted bound "
        "log (1/K) sum_k p(x,z_k)/q(z_k|x) with K = iwae_k samples (Burda et al. 2016, eq. 8)",
        choices=registry.BOUNDS,
    )
    iwae_k: int = config_field(
        5, "bound=iwae: importance samples K per example", check=at_least(1),
        applies=when("objective.bound", ("iwae",)),
    )
    reconstruction: str = config_field(
        "likelihood", "reconstruction term of the loss: likelihood (-log p(x|z), nats), perceptual "
        "(distance between the dataset classifier's feature maps of x and of the decoder mean; NOT a "
        "likelihood, needs `vaelab classifier train`) or perceptual+likelihood (perceptual_weight * "
        "perceptual + -log p(x|z)); metrics always report the plain likelihood",
        choices=RECONSTRUCTION_NAMES,
    )
    perceptual_weight: float = config_field(
        1.0, "weight lambda of the perceptual term", check=at_least(0),
        applies=when("objective.reconstruction", _PERCEPTUAL),
    )
    perceptual_layers: list[str] = config_field(
        None, "classifier layers compared by the perceptual term (relu1 .. relu4, features)",
        factory=lambda: ["relu2", "relu4"], applies=when("objective.reconstruction", _PERCEPTUAL),
    )


LOGGER_NAMES = ("tensorboard", "csv", "mlflow", "wandb")


def logger_names(value: str) -> list[str]:
    """The loggers of ``training.logger`` (``"tensorboard,csv,mlflow"``), in order, each once:
    the one parser of the option (the config's check, the trackers and TensorBoard use it).

    Raises:
        ValueError: an unknown name (with the closest valid one).
    """
    names = [part.strip().lower() for part in value.split(",") if part.strip()]
    for name in names:
        if name not in LOGGER_NAMES:
            close = difflib.get_close_matches(name, LOGGER_NAMES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"unknown logger {name!r}{hint}; use a comma-separated list of {', '.join(LOGGER_NAMES)}")
    return list(dict.fromkeys(names))


def _logger_list(v):
    try:
        logger_names(v)
    except ValueError as exc:
        return f"has {exc}"
    return None


@dataclass
class TrainingConfig:
    """Optimisation and evaluation schedule."""

    epochs: int = config_field(10, "number of passes over the training set", check=at_least(1))
    batch_size: int = config_field(128, "training examples per step", check=at_least(1))
    optimizer: str = config_field("adam", "optimiser", choices=registry.OPTIMIZERS)
    learning_rate: float = config_field(1e-3, "learning rate", check=positive)
    momentum: float = config_field(0.0, "sgd/rmsprop momentum", check=probability)
    nesterov: bool = config_field(False, "sgd: Nesterov momentum")
    weight_decay: float = config_field(
        0.0, "L2 penalty lambda on the weights (adamw: decoupled weight decay)", check=at_least(0),
    )
    lr_schedule: str = config_field(
        "none", "learning-rate schedule per epoch: none, step (x lr_gamma every lr_step_epochs), "
        "cosine (to 0 at the last epoch) or plateau (x lr_gamma after lr_patience epochs without "
        "improvement of the evaluation -ELBO)", choices=("none", "step", "cosine", "plateau"),
    )
    lr_schedule_span: str = config_field(
        "epochs", "lr_schedule=cosine: what the decay spans: epochs (0 at the last epoch) or time (0 "
        "when the epochs or training.max_minutes run out, whichever is first: after each epoch the "
        "cosine's progress is the larger of epochs done / epochs and minutes used / max_minutes)",
        choices=("epochs", "time"), applies=when("training.lr_schedule", ("cosine",)),
    )
    lr_step_epochs: int = config_field(
        10, "lr_schedule=step: epochs between decays", check=at_least(1),
        applies=when("training.lr_schedule", ("step",)),
    )
    lr_gamma: float = config_field(
        0.1, "lr_schedule=step/plateau: decay factor", check=positive,
        applies=when("training.lr_schedule", ("step", "plateau")),
    )
    lr_patience: int = config_field(
        2, "lr_schedule=plateau: epochs without improvement", check=at_least(0),
        applies=when("training.lr_schedule", ("plateau",)),
    )
    clip_value: float | None = config_field(None, "clip each gradient element to [-v, v]", check=positive)
    clip_norm: float | None = config_field(None, "clip the global gradient norm to this value", check=positive)
    eval_batch_size: int = config_field(1000, "examples per evaluation batch", check=at_least(1))
    ema_decay: float = config_field(
        0.0, "exponential moving average of the weights, updated after every optimiser step with this "
        "decay (torch.optim.swa_utils; e.g. 0.999; 0: off); when on, the per-epoch evaluation, the best "
        "checkpoint, evaluate, export-weights and the figures use the averaged weights", check=probability,
    )
    max_minutes: float | None = config_field(
        None, "wall-clock budget of training in minutes, counted from the start (or resume) of the "
        "command: training ends cleanly, checkpoint and summary written, before an epoch that would "
        "end past it (judged by the longest of the last three epochs), or at a step once it is past "
        "(default: none; a resume may change it)",
        check=positive,
    )
    checkpoint_every_steps: int | None = config_field(
        None, "also checkpoint every N optimisation steps inside an epoch (default: end of epoch only)",
        check=at_least(1),
    )
    log_every_steps: int | None = config_field(
        None, "also write the training terms every N steps to steps.csv, each the mean over the N steps "
        "before it (how the KL moves inside an epoch; a host sync every N steps); default: per epoch only",
        check=at_least(1),
    )
    log_steps_epochs: int | None = config_field(
        None, "with log_every_steps: only in the first N epochs (default: every epoch)", check=at_least(1),
    )
    nonfinite: str = config_field(
        "stop", "on a non-finite loss or gradient: stop (keeping the last good checkpoint) or skip "
        "the step (at most max_skipped_steps per run)", choices=("stop", "skip"),
    )
    max_skipped_steps: int = config_field(10, "nonfinite=skip: steps that may be skipped before stopping",
                                    check=at_least(0), applies=when("training.nonfinite", ("skip",)))
    sync_every_steps: int = config_field(
        50, "read the step metrics and check losses and gradients for NaN/inf on the host every N "
        "steps (one CPU-GPU sync each; a non-finite step is still reported as the first one); "
        "nonfinite=skip checks every step", check=at_least(1),
    )
    precision: str = config_field(
        "fp32", "arithmetic of the training steps: fp32, bf16 or fp16 autocast (fp16 with a gradient "
        "scaler; its overflowing steps are skipped by the scaler, not counted as non-finite); "
        "evaluation stays fp32", choices=("fp32", "bf16", "fp16"),
    )
    tf32: bool = config_field(True, "CUDA only: TensorFloat-32 matrix products and convolutions in fp32")
    compile: bool = config_field(False, "torch.compile the encoder and decoder (the first steps are slower)")
    device: str = config_field("auto", "device: auto (CUDA if present), cpu, cuda or cuda:N")
    progress: bool = config_field(True, "show a progress bar on a terminal")
    logger: str = config_field(
        "tensorboard,csv", "comma-separated trackers: tensorboard, csv (metrics.csv, always written), mlflow "
        "(a local SQLite store unless --mlflow-uri), wandb (offline unless logged in)", check=_logger_list,
    )
    mlflow_uri: str | None = config_field(
        None, "logger mlflow: tracking URI (default sqlite:///<output_dir>/mlflow.db, a local SQLite store)")
    mlflow_experiment: str = config_field("vaelab", "logger mlflow: experiment name")
    wandb_project: str = config_field("vaelab", "logger wandb: project name")
    tracker_group: str | None = config_field(
        None, "logger mlflow/wandb: group runs under one MLflow parent run / W&B group of this name (a sweep "
        "sets its name)")


def _manifold_range(v):
    if len(v) not in (1, 2):
        return "must be one bound B (for -B..B) or two bounds LO HI"
    lo, hi = (-abs(v[0]), abs(v[0])) if len(v) == 1 else v
    return None if lo < hi else "must have LO < HI (or B > 0)"


def _two_dims(v):
    if len(v) != 2 or v[0] == v[1] or min(v) < 1:
        return "must be two different latent dimensions counted from 1 (z_1 z_2 in the figures), e.g. 1 2"
    return None


@dataclass
class FiguresConfig:
    """Figures of a run (:mod:`vaelab.plots`): drawn at the end of training and by
    ``vaelab plot``, and the image grids written to TensorBoard during training."""

    tensorboard_images_every: int = config_field(
        1, "write image grids (reconstructions, samples, latent manifold) to TensorBoard every N "
        "epochs and after the last one (0: never)", check=at_least(0),
    )
    draw_at_end: bool = config_field(
        True, "draw every figure into RUN_DIR/figures when training ends (off: none, e.g. in a large sweep; "
        "`vaelab plot RUN_DIR` draws them later)",
    )
    log_scale: bool = config_field(False, "draw loss curves on a logarithmic y axis")
    manifold_range: list[float] | None = config_field(
        None, "latent manifold grid bounds in every latent dimension: B (for -B..B) or LO HI "
        "(default: the prior's quantiles, see --manifold-quantile)", check=_manifold_range,
    )
    manifold_quantile: float = config_field(
        0.025, "without --manifold-range the grid spans the prior's quantiles Q..1-Q in each "
        "dimension (0.025: its central 95 percent)",
        check=lambda v: None if 0 < v < 0.5 else "must be in (0, 0.5)",
    )
    manifold_steps: int = config_field(20, "latent manifold grid points per latent dimension (at most 200: "
                                             "200 x 200 decoded images)", check=between(2, 200))
    manifold_dims: list[int] | None = config_field(
        None, "for latents of more than 2 dimensions: the two dimensions (from 1, as z_1 z_2 in the "
        "figures) the manifold grid spans, the others at the prior mean (default: the two whose test "
        "posterior means vary most)",
        check=_two_dims,
    )
    reconstruction_layout: str = config_field(
        "interleaved", "reconstructions figure: interleaved (a row of inputs above a row of their "
        "reconstructions, repeated), block (all input rows above all reconstruction rows) or columns "
        "(one image per row: the original first, then decoder means at 7 draws z ~ q(z|x))",
        choices=("interleaved", "block", "columns"),
    )
    interpolation: str = config_field(
        "linear", "path between two posterior means in the interpolation figure: linear, or "
        "spherical (slerp, White 2016)", choices=("linear", "spherical"),
    )
    split: str = config_field(
        "test", "images the reconstruction, interpolation and latent figures show: test, or train (training "
        "images, e.g. beside the test ones to see overfitting)", choices=("test", "train"),
    )


@dataclass
class Config:
    """A whole run. Build it with :meth:`from_dict`, :func:`load_config` or by hand."""

    name: str | None = config_field(None, "run name (default: timestamp and dataset)")
    output_dir: str = config_field("runs", "directory holding run directories")
    seed: int = config_field(1, "seed of parameters init, data order and sampling", check=at_least(0))
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
        values = _expand_loss_shortcut(expand_components(values or {}, problems), problems)
        config = build_section(cls, values, "", problems)
        if not problems:
            problems.extend(_cross_checks(config))
        if problems:
            raise ConfigError(format_problems(problems))
        return config

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON-serialisable) holding every field."""
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        """The config as YAML that :func:`load_config` reads back to the same values."""
        return yaml_dump(self.to_dict(), sort_keys=False)

    def replace(self, overrides: dict[str, Any]) -> "Config":
        """A new validated config with dotted-key ``overrides`` applied (``{"model.latent_dim": 2}``)."""
        values = self.to_dict()
        if overrides.get("model.loss") is not None:  # the shortcut replaces the settings it implies
            for key in LOSS_SHORTCUTS.get(overrides["model.loss"], {}):
                if f"model.{key}" not in overrides:
                    values["model"].pop(key, None)
        set_dotted(values, overrides)
        return Config.from_dict(values)


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
    hints = type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config) if dataclasses.is_dataclass(hints[f.name])}


# --- internals ---------------------------------------------------------------------------


COMPONENT_SECTIONS: dict[tuple[str, str], dict[str, str | dict[str, str]]] = {
    ("data", "dataset"): {"name": "dataset", "range": "toy2d_range", "train_size": "toy2d_train_size",
                          "test_size": "toy2d_test_size", "seed": "toy2d_seed"},
    ("model", "network"): {"name": "network", "hidden": "hidden", "channels": "conv_channels",
                           "kernels": "conv_kernels", "downsample": "conv_downsample", "upsample": "conv_upsample",
                           "activation": "activation", "batch_norm": "batch_norm", "dropout": "dropout",
                           "init": "init"},
    ("model", "likelihood"): {"name": "likelihood", "scale": "likelihood_scale", "learn_scale": "learn_scale",
                              "scale_floor": "scale_floor", "logit_eps": "logit_eps"},
    ("model", "prior"): {"name": "prior", "components": {"vamp": "vamp_components", "mog": "mog_components"},
                         "loc": "prior_loc", "std": "prior_std", "variance": "prior_variance"},
    ("objective", "bound"): {"name": "bound", "k": "iwae_k"},
    ("objective", "kl_schedule"): {"name": "kl_schedule", "warmup_epochs": "kl_warmup_epochs",
                                   "cycles": "kl_cycles", "cycle_ramp": "kl_cycle_ramp"},
    ("objective", "reconstruction"): {"name": "reconstruction", "weight": "perceptual_weight",
                                      "layers": "perceptual_layers"},
    ("training", "optimizer"): {"name": "optimizer", "learning_rate": "learning_rate", "momentum": "momentum",
                                "nesterov": "nesterov", "weight_decay": "weight_decay"},
    ("training", "lr_schedule"): {"name": "lr_schedule", "span": "lr_schedule_span", "step_epochs": "lr_step_epochs",
                                  "gamma": "lr_gamma", "patience": "lr_patience"},
}
"""A component's settings may be written as one mapping under its name (the component-section
form), ``model: {prior: {name: vamp, components: 500}}``, instead of the flat fields it stands
for, ``model: {prior: vamp, vamp_components: 500}``: (section, component) -> {key in the
mapping: flat field} (a dict of flat fields by the component's name where the key's field
depends on it). Both forms resolve to the same config, which is kept flat."""


def expand_components(values: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """``values`` (plain nested config values) with every component mapping
    (:data:`COMPONENT_SECTIONS`) replaced by the flat fields it stands for; a key the mapping
    does not know, or a field set both ways to different values, is added to ``problems``."""
    if not isinstance(values, dict):
        return values
    out = dict(values)
    for (section, component), keys in COMPONENT_SECTIONS.items():
        fields = out.get(section)
        if not isinstance(fields, dict) or not isinstance(fields.get(component), dict):
            continue
        given, fields = fields[component], {k: v for k, v in fields.items() if k != component}
        where = f"{section}.{component}"
        name = given.get("name")
        for key, value in given.items():
            target = keys.get(key)
            if isinstance(target, dict):
                target = target.get(name)
                if target is None:
                    problems.append(f"{where}.{key} applies to {' or '.join(keys[key])} only; {where}.name is "
                                    f"{name!r}" if name is not None else f"{where}.{key} needs {where}.name")
                    continue
            if target is None:
                close = difflib.get_close_matches(str(key), list(keys), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                problems.append(f"unknown key {where}.{key}{hint}; {where} takes {', '.join(keys)}")
                continue
            if target != component and target in fields and fields[target] != value:
                problems.append(f"{where}.{key} is {value!r} but {section}.{target} is {fields[target]!r}; give one")
                continue
            fields[target] = value
        out[section] = fields
    return out


def nest_components(values: dict[str, Any]) -> dict[str, Any]:
    """The component-section form of flat config values (``config.to_dict()``): each
    component's fields gathered under its name; :func:`expand_components` reads it back to the
    same values."""
    out = {section: dict(fields) if isinstance(fields, dict) else fields for section, fields in values.items()}
    for (section, component), keys in COMPONENT_SECTIONS.items():
        fields = out.get(section)
        if not isinstance(fields, dict) or component not in fields:
            continue
        name = fields[component]
        nested = {}
        for key, target in keys.items():
            target = target.get(name) if isinstance(target, dict) else target
            if target is not None and target in fields:
                nested[key] = fields.pop(target) if target != component else fields[target]
        fields.pop(component, None)
        fields[component] = nested
    return out


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


MAX_NAME_BYTES = 150
"""Longest run name in UTF-8 bytes: a directory name, with room for what is added to it."""


def _cross_checks(config: Config) -> list[str]:
    """Checks that involve more than one field: each component's own (``config_problems`` beside
    its code, see :mod:`vaelab.registry`), then the run's."""
    problems = [problem for checked in registry.CHECKED for problem in checked.problems(config)]
    if config.name is not None and (
        not config.name or "/" in config.name or "\\" in config.name or config.name in (".", "..")
    ):
        problems.append(f"name must be a plain directory name without '/', got {config.name!r}")
    elif config.name is not None and any(not c.isprintable() for c in config.name):
        problems.append(f"name must be printable text (no control characters), got {config.name!r}")
    elif config.name is not None and len(config.name.encode("utf-8", "replace")) > MAX_NAME_BYTES:
        problems.append(f"name is {len(config.name.encode('utf-8', 'replace'))} bytes long; a run name has at most "
                        f"{MAX_NAME_BYTES} (file systems allow 255 bytes per file name)")
    if not config.data.dataset:
        problems.append("data.dataset must be a dataset name or the path of your data, got ''")
    if config.data.image_size is not None and len(config.data.image_size) != 2:
        problems.append(f"data.image_size needs two values H W, got {config.data.image_size}")
    problem = manifold_dims_problem(config.figures.manifold_dims, config.model.latent_dim)
    if problem:
        problems.append(problem)
    return problems


def manifold_dims_problem(dims: list[int] | None, latent_dim: int) -> str | None:
    """Why ``figures.manifold_dims`` cannot be drawn for a ``latent_dim``-dimensional latent
    (the config's check, and the plots' for a checkpoint's model), or None."""
    if dims is not None and max(dims) > latent_dim:
        return (f"figures.manifold_dims {dims} must be at most model.latent_dim={latent_dim} (dimensions count "
                "from 1)")
    return None
