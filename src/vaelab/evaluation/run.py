"""``vaelab evaluate``: every measurement of a trained run, written to ``evaluation.json``.

For one split of the run's dataset (with the run's binarisation) and one checkpoint:

* negative ELBO, reconstruction NLL and KL, nats per example (recon from the K importance
  samples, KL in closed form);
* the importance-sampled NLL with K samples (IWAE bound, Burda et al. 2016), its standard error
  over examples, and bits per dimension;
* active units and KL per latent dimension; posterior-mean probes for labelled data;
* sample quality: classifier-feature FID (``fid_classifier``), optionally Inception FID, and the
  class histogram and entropy of generated samples, z ~ p(z) (a conditional VAE: every class in
  turn, and ``label_accuracy``, how often the classifier names the class asked for); with ``sampler='gmm'`` the same for
  samples from a Gaussian mixture fitted to the training posterior means (``samples.gmm``,
  Ghosh et al. 2020).

The result is written atomically to ``RUN_DIR/evaluation.json`` (or ``evaluation-<split>.json``
for the val and train splits) and printed as a table. A weights-only file
(``vaelab export-weights``, :mod:`vaelab.training.weights`) is evaluated the same way by
:func:`evaluate_weights`, its result written beside it as ``FILE.evaluation.json``.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..data import binarize_split, load_dataset
from ..errors import CheckpointError, ConfigError, option
from ..models.classifier import RECIPES, load_classifier, train_command
from ..rundir import RunDir, write_json
from ..runtime import resolve_device
from ..schema import at_least, between, config_field, section_from_dict
from .classifier import accuracy, class_confidence, class_histogram, predict
from .fid import balanced_labels, fid_classifier, fid_inception, find_inception_weights, generate_samples
from .latents import ACTIVE_THRESHOLD, active_units, posterior_summary, probe_accuracy
from .loglik import bits_per_dim, importance_log_likelihood, mean_and_stderr
from .samplers import decode_latents, draw_latents, training_view

UNITS = ("nats per example (summed over pixels and latent dimensions, averaged over examples) "
         "unless the key says bits_per_dim, accuracy or fid")


@dataclass
class EvaluationConfig:
    """What ``vaelab evaluate`` measures on a run (not part of a run's config)."""

    split: str = config_field("test", "split to evaluate: test, val (needs data.validation_size) or train",
                        choices=("test", "val", "train"))
    checkpoint: str = config_field("best", "checkpoint to evaluate", choices=("best", "last"))
    k: int = config_field(1000, "importance samples K per example for the log-likelihood (Burda et al. 2016; "
                          "at most 100,000)", check=between(1, 100_000))
    examples: int | None = config_field(None, "evaluate only the first N examples of the split (default all)",
                                  check=at_least(1))
    batch_size: int | None = config_field(
        None, "examples per batch (default: as many as fit chunk_size latent samples)", check=at_least(1))
    chunk_size: int | None = config_field(
        None, "latent samples decoded at once (bounds memory: about chunk_size * pixels * 12 bytes; default: "
        "4096 on the CPU, a quarter of the free memory on a GPU)", check=at_least(1))
    seed: int = config_field(0, "seed of the importance samples and of the generated samples", check=at_least(0))
    probe: bool = config_field(True, "fit a logistic-regression and a 5-NN probe on the latent means")
    probe_train_examples: int | None = config_field(
        10000, "training examples the probes are fit on (null: all)", check=at_least(1))
    fid: str = config_field(
        "auto", "sample quality: auto (classifier FID when a classifier is cached), classifier, "
        "inception (needs torch-fidelity and local weights), none", choices=("auto", "classifier", "inception", "none"))
    fid_samples: int = config_field(10000, "generated samples for the FID and the class histogram (at most "
                                    "1,000,000)", check=between(2, 1_000_000))
    classifier: str = config_field(
        "default", "which cached classifier scores the samples (FID, class histogram): default (the perceptual "
        "loss's network) or independent (trained apart, used by no loss: `vaelab classifier train --recipe "
        "independent`)", choices=tuple(RECIPES))
    sampler: str = config_field(
        "prior", "latent sampler of the generated samples: prior (z ~ p(z)), or gmm, which also scores "
        "samples from a Gaussian mixture fitted to the training set's posterior means (Ghosh et al. 2020), "
        "beside the prior's", choices=("prior", "gmm"))
    gmm_components: int = config_field(10, "sampler=gmm: mixture components (full covariance; Ghosh et al. 2020 use 10)",
                                 check=at_least(1))
    inception_weights: str | None = config_field(
        None, "path of the FID Inception weights (default: $VAELAB_INCEPTION_WEIGHTS, then the "
        "torch-fidelity cache in the torch hub directory)")
    data_dir: str | None = config_field(None, "directory holding the dataset files (default: the run's)")
    device: str = config_field("auto", "device: auto (CUDA if present), cpu, cuda or cuda:N")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None) -> "EvaluationConfig":
        """Build and validate (see :meth:`Config.from_dict`).

        Raises:
            ConfigError: unknown keys, wrong types or out-of-range values.
        """
        return section_from_dict(cls, values)


@dataclass
class Evaluation:
    """The result of :func:`evaluate`: ``results`` is what ``path`` holds."""

    run_dir: Path
    results: dict[str, Any]
    path: Path

    def __getitem__(self, key: str) -> Any:
        return self.results[key]


WEAK_CLASSIFIER = 0.8
"""Below this test accuracy a classifier's FID and class histogram come with a warning."""


def evaluate(run_dir: str | Path, config: EvaluationConfig | dict[str, Any] | None = None, *,
             verbose: bool = True, encoder=None, decoder=None, **overrides: Any) -> Evaluation:
    """Evaluate the run in ``run_dir`` and write ``evaluation.json``.

    Args:
        run_dir: a directory written by ``vaelab train`` (or a weights file:
            :func:`evaluate_weights`).
        config: an :class:`~vaelab.config.EvaluationConfig` or a dict of its fields;
            ``overrides`` (e.g. ``k=5000, split="test"``) are applied on top.
        verbose: print progress and the table.
        encoder, decoder: a run of your own modules (``model.network: custom``) is loaded into
            modules of the same architecture (:func:`~vaelab.training.load_model`).

    Raises:
        CheckpointError: ``run_dir`` is not a run directory, lacks the checkpoint, or (with
            ``fid='classifier'``) no classifier is cached, naming the command that trains one.
        ConfigError: invalid settings, a val split the run does not have, or ``fid='inception'``
            without torch-fidelity and local weights.
        DataError: the dataset cannot be found.
        RunDirectoryBusy: another process is training or evaluating in ``run_dir``.
    """
    run_dir = Path(run_dir)
    if run_dir.suffix == ".safetensors" and run_dir.is_file():  # a weights-only file
        return evaluate_weights(run_dir, config, verbose=verbose, **overrides)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist; check the path")
    from ..runlock import run_lock

    with run_lock(run_dir, doing="evaluating"):
        return _evaluate(run_dir, config, verbose=verbose, networks=(encoder, decoder), **overrides)


def evaluate_weights(weights: str | Path, config: EvaluationConfig | dict[str, Any] | None = None, *,
                     run_config: Any = None, output: str | Path | None = None, verbose: bool = True,
                     **overrides: Any) -> Evaluation:
    """Evaluate the model of a weights-only file (``vaelab export-weights``) as :func:`evaluate`
    does a run's checkpoint (``config.checkpoint`` does not apply), and write the result to
    ``output`` (default: beside the file, :func:`~vaelab.training.weights.evaluation_path`).

    Args:
        weights: a ``.safetensors`` file of model weights.
        run_config: the model's config (a :class:`~vaelab.config.Config` or a YAML file;
            default: the config stored in the file).

    Raises:
        CheckpointError: the file is missing or unreadable, or its weights do not fit the config.
        ConfigError, DataError: as for :func:`evaluate`.
    """
    from ..training.weights import evaluation_path, load_weights

    config = _evaluation_config(config, overrides)
    say = print if verbose else (lambda *a, **k: None)
    loaded = load_weights(weights, run_config)
    ctx = _data_context(loaded.path, config, loaded.config, loaded.model, say)
    source = {"weights": str(loaded.path), "checkpoint": "weights",
              "weights_source": {k: loaded.metadata[k] for k in ("source", "checkpoint", "epoch", "ema")
                                 if k in loaded.metadata}}
    results = _measure(ctx, source, f"{loaded.path} (weights)", verbose, say)
    path = write_json(Path(output) if output is not None else evaluation_path(loaded.path, config.split), results)
    if verbose:
        print_table(results)
        print(f"written to {path}")
    return Evaluation(loaded.path, results, path)


@dataclass
class EvaluationContext:
    """What every metric reads: the run's model (on ``device``) and config (the checkpoint's),
    the evaluated ``images: (N, C, H, W)`` and ``labels: (N,)``, the loaded dataset, and the
    classifier that scores samples (None when there is none)."""

    run_dir: Path
    config: EvaluationConfig
    run_config: Any
    data_config: Any
    dataset: Any
    model: Any
    images: torch.Tensor
    labels: torch.Tensor
    device: torch.device
    classifier: Any = None
    classifier_info: Any = None

    @property
    def cond(self) -> torch.Tensor | None:
        """The labels a conditional VAE is given (log p(x|y), q(z|x,y)); None otherwise."""
        return self.labels if self.model.conditional else None


@dataclass
class LikelihoodResult:
    """The bound and the importance-sampled NLL, nats per example (and bits per dimension)."""

    neg_elbo: float
    neg_elbo_stderr: float
    recon: float
    kl: float
    nll_iwae: float
    nll_iwae_stderr: float
    bits_per_dim: float
    neg_elbo_bits_per_dim: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class LatentResult:
    """Active units and KL per dimension (``latent``) and the probe accuracies (``probe``)."""

    latent: dict[str, Any]
    probe: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {"latent": self.latent, "probe": self.probe}


@dataclass
class SamplesResult:
    """Sample quality: FIDs, the class histogram and its entropy (None when not measured)."""

    samples: dict[str, Any] | None

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples}


class Metric:
    """One measurement of ``vaelab evaluate``: ``compute(ctx, verbose)`` returns a typed result
    whose ``to_json()`` goes into ``evaluation.json``; ``seconds[name]`` times it. When it does
    not ``apply`` (no classifier for sample quality), ``empty()`` stands in its place."""

    name = ""

    def applies(self, ctx: EvaluationContext) -> bool:
        return True

    def compute(self, ctx: EvaluationContext, verbose: bool):
        raise NotImplementedError

    def empty(self):
        raise NotImplementedError(f"metric {self.name} always applies")


class LogLikelihoodMetric(Metric):
    """-ELBO, recon, KL and the K-sample importance-sampled NLL (Burda et al. 2016)."""

    name = "log_likelihood"

    def compute(self, ctx: EvaluationContext, verbose: bool) -> LikelihoodResult:
        c, pixels = ctx.config, math.prod(ctx.images.shape[1:])
        ll = importance_log_likelihood(ctx.model, ctx.images, c.k, seed=c.seed, batch_size=c.batch_size,
                                       chunk_size=c.chunk_size, device=ctx.device, progress=verbose, labels=ctx.cond)
        nll, nll_se = mean_and_stderr(ll.nll)
        neg_elbo, neg_elbo_se = mean_and_stderr(ll.neg_elbo)
        return LikelihoodResult(neg_elbo, neg_elbo_se, ll.recon.mean().item(), ll.kl.mean().item(), nll, nll_se,
                                bits_per_dim(nll, pixels), bits_per_dim(neg_elbo, pixels))


@torch.inference_mode()
def _layer_means(model, images: torch.Tensor, device, batch_size: int = 1000) -> list[torch.Tensor]:
    """A hierarchical VAE's posterior means of every layer over ``images``: ``[(N, D_l)]``."""
    was_training = model.training
    model.eval()
    try:
        batches = [model.layer_means(x.to(device)) for x in images.split(batch_size)]
    finally:
        model.train(was_training)
    return [torch.cat([b[i] for b in batches]).double().cpu() for i in range(len(batches[0]))]


class LatentMetric(Metric):
    """Active units, KL per latent dimension, and logistic / 5-NN probes on the posterior means
    (labelled data, not on the training split)."""

    name = "latents"

    def compute(self, ctx: EvaluationContext, verbose: bool) -> LatentResult:
        model, config = ctx.model, ctx.config
        summary = posterior_summary(model, ctx.images, device=ctx.device, labels=ctx.cond)
        count, variances = active_units(summary.means)
        latent = {
            "dim": model.latent_dim, "active_units": count, "active_threshold": ACTIVE_THRESHOLD,
            "posterior_mean_variance": variances.tolist(),
            "kl_per_dim": summary.kl_per_dim.tolist() if summary.kl_per_dim is not None else None,
        }
        if hasattr(model, "layer_means") and len(model.latent_dims) > 1:  # a hierarchical VAE: every layer's
            latent["layers"] = [{"dim": means.shape[1], "active_units": active_units(means)[0]}
                                for means in _layer_means(model, ctx.images, ctx.device)]
        probe = None
        if config.probe and config.split != "train" and len(ctx.dataset.spec.classes) > 1:
            train = _evaluation_view(ctx.dataset.train, ctx.run_config).head(config.probe_train_examples)
            train_means = posterior_summary(model, train.images, device=ctx.device,
                                            labels=train.labels if model.conditional else None).means
            probe = {
                "train_examples": len(train),
                "logistic_accuracy": probe_accuracy(train_means, train.labels, summary.means, ctx.labels, "logistic"),
                "knn5_accuracy": probe_accuracy(train_means, train.labels, summary.means, ctx.labels, "knn"),
            }
        return LatentResult(latent, probe)


class SampleQualityMetric(Metric):
    """Samples z ~ p(z) (and from the ex-post GMM, ``sampler: gmm``) scored by the classifier's
    FID and class histogram, and by Inception's FID when asked for."""

    name = "samples"

    def applies(self, ctx: EvaluationContext) -> bool:
        return ctx.classifier is not None or ctx.config.fid == "inception"

    def compute(self, ctx: EvaluationContext, verbose: bool) -> SamplesResult:
        model, config, classifier, info = ctx.model, ctx.config, ctx.classifier, ctx.classifier_info
        dataset_name = ctx.run_config.data.dataset
        samples = generate_samples(model, config.fid_samples, seed=config.seed, device=ctx.device)
        real = _gray_test_images(ctx.run_config, ctx.data_config, ctx.dataset)
        block: dict[str, Any] = {"n": config.fid_samples, "reference": f"{dataset_name} test, gray levels ({len(real)})"}
        if classifier is not None:
            block["fid_classifier"] = fid_classifier(real, samples, classifier)
            logits = predict(classifier, samples)
            counts, entropy = class_histogram(logits)
            block.update({
                "class_histogram": counts, "class_names": list(ctx.dataset.spec.classes),
                "class_entropy_nats": entropy, "class_entropy_max_nats": math.log(len(counts)),
                "class_confidence": class_confidence(logits),
                "classifier_sha256": info.sha256, "classifier_test_accuracy": info.test_accuracy,
                "classifier_recipe": config.classifier, "classifier_config": info.config,
            })
            if config.classifier == "default" and ctx.run_config.objective.reconstruction != "likelihood":
                block["classifier_bias"] = (
                    "this model's perceptual loss was trained against the same classifier that scores its samples, "
                    "which favours it; score them with an independent one: `vaelab classifier train --recipe "
                    "independent`, then `vaelab evaluate --classifier independent`")
            if model.conditional:  # how often a sample of class y is classified as y
                asked = balanced_labels(config.fid_samples, model.num_classes)
                block["label_accuracy"] = accuracy(classifier, samples, asked)
            if not info.test_accuracy >= WEAK_CLASSIFIER:
                block["classifier_warning"] = (
                    f"the cached {dataset_name} classifier has test accuracy {info.test_accuracy:.3f} (below "
                    f"{WEAK_CLASSIFIER}): its FID and class histogram are unreliable; retrain it on the whole "
                    f"training set (`{train_command(classifier_dataset(dataset_name), config.classifier)} --force`)")
                print(f"warning: {block['classifier_warning']}", file=sys.stderr)
        if config.fid == "inception":
            block["fid_inception"] = fid_inception(real, samples, config.inception_weights, device=ctx.device)
        if config.sampler == "gmm":
            block["gmm"] = _gmm_samples(model, ctx.dataset, ctx.run_config, config, real, classifier, ctx.device)
        return SamplesResult(block)

    def empty(self) -> SamplesResult:
        return SamplesResult(None)


METRICS = (LogLikelihoodMetric(), LatentMetric(), SampleQualityMetric())
"""What ``vaelab evaluate`` measures, in the order of ``evaluation.json``."""


def _evaluation_config(config, overrides: dict[str, Any]) -> EvaluationConfig:
    if isinstance(config, EvaluationConfig):
        config = dataclasses.replace(config, **overrides) if overrides else config
        return EvaluationConfig.from_dict(dataclasses.asdict(config))
    return EvaluationConfig.from_dict({**(config or {}), **overrides})


def _evaluate(run_dir: Path, config, *, verbose: bool, networks=(None, None), **overrides: Any) -> Evaluation:
    config = _evaluation_config(config, overrides)
    say = print if verbose else (lambda *a, **k: None)
    ctx = _context(Path(run_dir), config, say, networks)
    source = {"run_dir": str(run_dir), "checkpoint": config.checkpoint}
    results = _measure(ctx, source, f"{run_dir} ({config.checkpoint} checkpoint)", verbose, say)
    path = RunDir(run_dir).write_evaluation(results, config.split)
    if verbose:
        print_table(results)
        print(f"written to {path}")
    return Evaluation(run_dir, results, path)


def _measure(ctx: EvaluationContext, source: dict[str, Any], what: str, verbose: bool, say) -> dict[str, Any]:
    """Every metric of :data:`METRICS` on ``ctx``: ``evaluation.json``'s content, after the
    ``source`` keys (what was evaluated)."""
    config = ctx.config
    n, pixels = ctx.images.shape[0], math.prod(ctx.images.shape[1:])
    dataset_name = ctx.run_config.data.dataset
    say(f"evaluating {what} on {dataset_name} {config.split}: {n} examples, "
        f"K={config.k} importance samples, on {ctx.device}")
    results: dict[str, Any] = {
        **source, "dataset": dataset_name,
        "binarize": ctx.dataset.binarize, "likelihood": ctx.run_config.model.likelihood,
        "split": config.split, "examples": n, "pixels": pixels, "k": config.k, "seed": config.seed,
        "classifier": config.classifier,
        "units": UNITS,
    }
    seconds: dict[str, float] = {}
    for metric in METRICS:
        if not metric.applies(ctx):
            results.update(metric.empty().to_json())
            continue
        start = time.perf_counter()
        results.update(metric.compute(ctx, verbose).to_json())
        seconds[metric.name] = time.perf_counter() - start
        if metric.name == "log_likelihood":
            results["notes"] = _notes(ctx.run_config, ctx.dataset.binarize)
    results["seconds"] = seconds
    results.update({"vaelab": __version__, "torch": torch.__version__,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return results


def _context(run_dir: Path, config: EvaluationConfig, say, networks=(None, None)) -> EvaluationContext:
    """Check the run directory, then load what the metrics read: everything that can fail
    cheaply (a missing checkpoint or classifier) fails before the expensive work.

    Raises:
        CheckpointError: not a run directory, no such checkpoint, no classifier (``fid: classifier``).
        ConfigError: a split the run does not have, no Inception weights (``fid: inception``).
    """
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist; check the path")
    files = RunDir(run_dir)
    if not files.is_run():
        raise CheckpointError(f"{run_dir} is not a run directory (no config.yaml); pass a directory written by `vaelab train`")
    files.read_config()  # a damaged config.yaml is reported, not ignored
    checkpoint = files.checkpoint(config.checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(
            f"{run_dir} has no {config.checkpoint} checkpoint ({checkpoint} is missing): the run has not finished "
            f"an epoch; continue it with `vaelab train --resume {run_dir}`"
        )
    from ..training.checkpoint import load_model, read_checkpoint_config

    # the model and the data come from the checkpoint's config (the run's truth)
    run_config = read_checkpoint_config(checkpoint)
    encoder, decoder = networks
    return _data_context(run_dir, config, run_config,
                         load_model(run_dir, config.checkpoint, encoder=encoder, decoder=decoder), say)


def _data_context(source: Path, config: EvaluationConfig, run_config, model, say) -> EvaluationContext:
    """The context of ``model`` (built with ``run_config``): the classifier, the dataset with
    the binarisation actually used (binarized-mnist implies dynamic) and the split.

    Raises:
        CheckpointError: no classifier (``fid: classifier``).
        ConfigError: a split the run does not have, no Inception weights (``fid: inception``).
    """
    from ..data.datasets import dataset_spec, resolve_binarize

    run_config = dataclasses.replace(run_config, data=dataclasses.replace(  # your own data too, not only names
        run_config.data, binarize=resolve_binarize(dataset_spec(run_config.data), run_config.data)))
    device = resolve_device(config.device)
    classifier = info = None
    if config.fid in ("auto", "classifier"):
        try:
            classifier, info = load_classifier(classifier_dataset(run_config.data.dataset), device=device,
                                               recipe=config.classifier)
        except CheckpointError as exc:
            if config.fid == "classifier":
                raise
            say(f"note: sample quality skipped: {exc}")
    if config.fid == "inception":
        find_inception_weights(config.inception_weights)

    model = model.to(device)
    data_config = dataclasses.replace(run_config.data, train_examples=None, eval_examples=None,
                                      data_dir=config.data_dir or run_config.data.data_dir)
    dataset = load_dataset(data_config)
    if dataset.binarize != run_config.data.binarize:  # binarized-mnist implies dynamic with data.binarize none
        run_config = run_config.replace({"data.binarize": dataset.binarize})
    split = _pick_split(dataset, config.split, run_config)
    return EvaluationContext(source, config, run_config, data_config, dataset, model,
                             split.images[: config.examples], split.labels[: config.examples], device, classifier, info)


def _gmm_samples(model, dataset, run_config, config, real, classifier, device) -> dict[str, Any]:
    """The FIDs (and class histogram) of samples from the ex-post GMM sampler (Ghosh et al. 2020)
    fitted to the posterior means of the whole training split."""
    train = training_view(dataset.train, run_config.data.binarize, run_config.data.binarize_seed)
    z = draw_latents(model, "gmm", config.fid_samples, config.seed, train.images, config.gmm_components, device,
                     train_labels=train.labels if model.conditional else None)
    samples = decode_latents(model, z, device=device)
    block: dict[str, Any] = {"components": config.gmm_components, "covariance": "full",
                             "fit_on": f"posterior means of {len(train)} training images"}
    if classifier is not None:
        block["fid_classifier"] = fid_classifier(real, samples, classifier)
        counts, entropy = class_histogram(predict(classifier, samples))
        block.update({"class_histogram": counts, "class_entropy_nats": entropy})
    if config.fid == "inception":
        block["fid_inception"] = fid_inception(real, samples, config.inception_weights, device=device)
    return block


def classifier_dataset(name: str) -> str:
    """The dataset whose classifier scores samples of ``name``: a dataset that only implies a
    binarisation of another's files (``binarized-mnist`` reads ``mnist``'s) shares that one's, as
    the FID reference images are the same gray levels; any other dataset has its own."""
    from ..data import get_spec, is_user_dataset

    if is_user_dataset(name):
        return name
    spec = get_spec(name)
    return spec.dirnames[0] if spec.binarize is not None and spec.dirnames[0] != spec.name else name


def _pick_split(dataset, name: str, run_config):
    if name == "test":
        return dataset.test
    if name == "val":
        if dataset.validation is None:
            raise ConfigError(f"this run has no validation split (data.validation_size is 0); use {option('split', 'test')}")
        return dataset.validation
    return _evaluation_view(dataset.train, run_config)


def _evaluation_view(split, run_config):
    """The training split as the model sees it at evaluation: under dynamic binarisation, one
    fixed Bernoulli draw (seed ``binarize_seed``) instead of gray levels."""
    if run_config.data.binarize == "dynamic":
        return binarize_split(split, run_config.data.binarize_seed)
    return split


def _gray_test_images(run_config, data_config, dataset) -> torch.Tensor:
    if run_config.data.binarize == "none":
        return dataset.test.images
    gray = dataclasses.replace(data_config, dataset=classifier_dataset(data_config.dataset), binarize="none",
                               validation_size=0)  # binarized-mnist's gray levels are mnist's
    return load_dataset(gray).test.images


def _notes(run_config, binarize: str | None = None) -> list[str]:
    """Caveats of the numbers; ``binarize`` is the binarisation in effect (``binarized-mnist``
    implies dynamic while its ``data.binarize`` stays ``none``)."""
    notes = []
    binarize = run_config.data.binarize if binarize is None else binarize
    if run_config.model.likelihood == "bernoulli" and binarize == "none":
        notes.append("gray-level data under a Bernoulli likelihood: the 'NLL' is a binary cross-entropy, "
                     "not a log-likelihood; compare with tables only for binarised data")
    if run_config.model.likelihood != "bernoulli":
        notes.append("a density on continuous pixels: bits_per_dim is -log density / (pixels ln 2), not the "
                     "discrete 8-bit bits/dim of image-model tables")
    if run_config.model.conditional:
        notes.append("a conditional VAE (Sohn et al. 2015): nll_iwae and neg_elbo are of log p(x|y) given the true "
                     "label, not comparable with an unconditional log p(x); samples are drawn for every class in turn")
    if run_config.objective.reconstruction != "likelihood":
        notes.append(f"trained with reconstruction={run_config.objective.reconstruction}, which is not a likelihood; "
                     f"every nats value here uses the plain {run_config.model.likelihood} likelihood")
    return notes


def print_table(results: dict[str, Any]) -> None:
    """The evaluation as an aligned table of metric, value and unit."""
    rows = [
        ("-ELBO", f"{results['neg_elbo']:.3f} ± {results['neg_elbo_stderr']:.3f}", "nats/example"),
        ("  reconstruction NLL", f"{results['recon']:.3f}", "nats/example"),
        ("  KL", f"{results['kl']:.3f}", "nats/example"),
        (f"NLL (IWAE, K={results['k']})", f"{results['nll_iwae']:.3f} ± {results['nll_iwae_stderr']:.3f}", "nats/example"),
        ("NLL", f"{results['bits_per_dim']:.4f}", "bits/dim"),
        ("-ELBO - NLL (bound gap)", f"{results['neg_elbo'] - results['nll_iwae']:.3f}", "nats/example"),
    ]
    latent = results["latent"]
    rows.append(("active units", f"{latent['active_units']} / {latent['dim']}", f"Cov_x E_q[z] > {latent['active_threshold']}"))
    for i, layer in enumerate(latent.get("layers") or []):
        rows.append((f"  layer z_{i + 1}", f"{layer['active_units']} / {layer['dim']}", "active units"))
    if latent["kl_per_dim"] is not None:
        kl_dims = sorted(latent["kl_per_dim"], reverse=True)
        shown = " ".join(f"{v:.2f}" for v in kl_dims[:8]) + (" ..." if len(kl_dims) > 8 else "")
        rows.append(("KL per dim (largest)", shown, "nats"))
    else:
        rows.append(("KL per dim", "n/a", "the mixture prior does not factorise"))
    if results.get("probe"):
        probe = results["probe"]
        rows.append(("probe accuracy, logistic", f"{probe['logistic_accuracy']:.4f}", f"fit on {probe['train_examples']} train"))
        rows.append(("probe accuracy, 5-NN", f"{probe['knn5_accuracy']:.4f}", ""))
    samples = results.get("samples")
    if samples:
        if "fid_classifier" in samples:
            rows.append(("fid_classifier", f"{samples['fid_classifier']:.3f}",
                         f"{samples['n']} samples; classifier test accuracy "
                         f"{samples.get('classifier_test_accuracy', float('nan')):.3f}"))
            rows.append(("sample class entropy", f"{samples['class_entropy_nats']:.3f} / {samples['class_entropy_max_nats']:.3f}", "nats"))
            rows.append(("sample class histogram", " ".join(map(str, samples["class_histogram"])), ""))
            if "label_accuracy" in samples:
                rows.append(("sample label accuracy", f"{samples['label_accuracy']:.4f}",
                             "classifier agrees with the asked label"))
        if "fid_inception" in samples:
            rows.append(("fid_inception", f"{samples['fid_inception']:.3f}", f"{samples['n']} samples"))
        gmm = samples.get("gmm")
        if gmm:
            for key in ("fid_classifier", "fid_inception"):
                if key in gmm:
                    rows.append((f"{key}, gmm sampler", f"{gmm[key]:.3f}", f"{gmm['components']}-component GMM on "
                                 "train posterior means"))
            if "class_entropy_nats" in gmm:
                rows.append(("sample class entropy, gmm", f"{gmm['class_entropy_nats']:.3f}", "nats"))
    width = max(len(r[0]) for r in rows)
    value_width = max(len(value) for _, value, _ in rows if len(value) <= 20)
    source = "weights file" if results["checkpoint"] == "weights" else f"{results['checkpoint']} checkpoint"
    print(f"\n{results['dataset']} {results['split']}, {results['examples']} examples, {source}")
    for name, value, unit in rows:
        shown = f"{value:>{value_width}}" if len(value) <= 20 else value  # long lists left-aligned
        print(f"  {name:<{width}}  {shown}  {unit}".rstrip())
    for note in results.get("notes", []):
        print(f"  note: {note}")
