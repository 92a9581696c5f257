"""``vaelab evaluate``: every measurement of a trained run, written to ``evaluation.json``.

For one split of the run's dataset (with the run's binarisation) and one checkpoint:

* negative ELBO, reconstruction NLL and KL, nats per example (recon from the K importance
  samples, KL in closed form);
* the importance-sampled NLL with K samples (IWAE bound, Burda et al. 2016), its standard error
  over examples, and bits per dimension;
* active units and KL per latent dimension; posterior-mean probes for labelled data;
* sample quality: classifier-feature FID (``fid_classifier``), optionally Inception FID, and the
  class histogram and entropy of generated samples.

The result is written atomically to ``RUN_DIR/evaluation.json`` (or ``evaluation-<split>.json``
for the val and train splits) and printed as a table.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..config import EvaluationConfig, load_config
from ..data import binarize_split, load_dataset
from ..errors import CheckpointError, ConfigError
from ..io import atomic_write_text
from ..models.classifier import load_classifier
from ..runtime import resolve_device
from .classifier import class_histogram, predict
from .fid import fid_classifier, fid_inception, find_inception_weights, generate_samples
from .latents import ACTIVE_THRESHOLD, active_units, posterior_summary, probe_accuracy
from .loglik import bits_per_dim, importance_log_likelihood, mean_and_stderr

UNITS = ("nats per example (summed over pixels and latent dimensions, averaged over examples) "
         "unless the key says bits_per_dim, accuracy or fid")


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


def output_name(split: str) -> str:
    return "evaluation.json" if split == "test" else f"evaluation-{split}.json"


def evaluate(run_dir: str | Path, config: EvaluationConfig | dict[str, Any] | None = None, *,
             verbose: bool = True, **overrides: Any) -> Evaluation:
    """Evaluate the run in ``run_dir`` and write ``evaluation.json``.

    Args:
        run_dir: a directory written by ``vaelab train``.
        config: an :class:`~vaelab.config.EvaluationConfig` or a dict of its fields;
            ``overrides`` (e.g. ``k=5000, split="test"``) are applied on top.
        verbose: print progress and the table.

    Raises:
        CheckpointError: ``run_dir`` is not a run directory, lacks the checkpoint, or (with
            ``fid='classifier'``) no classifier is cached, naming the command that trains one.
        ConfigError: invalid settings, a val split the run does not have, or ``fid='inception'``
            without torch-fidelity and local weights.
        DataError: the dataset cannot be found.
        RunDirectoryBusy: another process is training or evaluating in ``run_dir``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist; check the path")
    from ..training.lock import run_lock

    with run_lock(run_dir, doing="evaluating"):
        return _evaluate(run_dir, config, verbose=verbose, **overrides)


def _evaluate(run_dir: Path, config, *, verbose: bool, **overrides: Any) -> Evaluation:
    if isinstance(config, EvaluationConfig):
        config = dataclasses.replace(config, **overrides) if overrides else config
        config = EvaluationConfig.from_dict(dataclasses.asdict(config))
    else:
        config = EvaluationConfig.from_dict({**(config or {}), **overrides})
    say = print if verbose else (lambda *a, **k: None)
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"run directory {run_dir} does not exist; check the path")
    if not (run_dir / "config.yaml").is_file():
        raise CheckpointError(f"{run_dir} is not a run directory (no config.yaml); pass a directory written by `vaelab train`")
    load_config(run_dir / "config.yaml")  # a damaged config.yaml is reported, not ignored
    checkpoint = run_dir / "checkpoints" / f"{config.checkpoint}.safetensors"
    if not checkpoint.is_file():
        raise CheckpointError(
            f"{run_dir} has no {config.checkpoint} checkpoint ({checkpoint} is missing): the run has not finished "
            f"an epoch; continue it with `vaelab train --resume {run_dir}`"
        )
    from ..data import get_spec
    from ..data.datasets import resolve_binarize
    from ..training.trainer import read_checkpoint_config

    # the model and the data come from the checkpoint's config (the run's truth), with the
    # binarisation actually used (binarized-mnist implies dynamic)
    run_config = read_checkpoint_config(checkpoint)
    run_config = dataclasses.replace(run_config, data=dataclasses.replace(
        run_config.data, binarize=resolve_binarize(get_spec(run_config.data.dataset), run_config.data)))
    device = resolve_device(config.device)
    dataset_name = run_config.data.dataset
    # everything that can fail cheaply fails before the expensive work
    classifier = info = None
    if config.fid in ("auto", "classifier"):
        try:
            classifier, info = load_classifier(dataset_name, device=device)
        except CheckpointError as exc:
            if config.fid == "classifier":
                raise
            say(f"note: sample quality skipped: {exc}")
    if config.fid == "inception":
        find_inception_weights(config.inception_weights)

    from ..training import load_model

    model = load_model(run_dir, config.checkpoint).to(device)
    data_config = dataclasses.replace(run_config.data, train_examples=None, eval_examples=None,
                                      data_dir=config.data_dir or run_config.data.data_dir)
    dataset = load_dataset(data_config)
    split = _pick_split(dataset, config.split, run_config)
    images, labels = split.images[: config.examples], split.labels[: config.examples]
    n, pixels = images.shape[0], math.prod(images.shape[1:])
    seconds: dict[str, float] = {}
    say(f"evaluating {run_dir} ({config.checkpoint} checkpoint) on {dataset_name} {config.split}: {n} examples, "
        f"K={config.k} importance samples, on {device}")

    start = time.perf_counter()
    ll = importance_log_likelihood(model, images, config.k, seed=config.seed, batch_size=config.batch_size,
                                   chunk_size=config.chunk_size, device=device, progress=verbose)
    seconds["log_likelihood"] = time.perf_counter() - start
    nll, nll_se = mean_and_stderr(ll.nll)
    neg_elbo, neg_elbo_se = mean_and_stderr(ll.neg_elbo)
    results: dict[str, Any] = {
        "run_dir": str(run_dir), "checkpoint": config.checkpoint, "dataset": dataset_name,
        "binarize": run_config.data.binarize, "likelihood": run_config.model.likelihood,
        "split": config.split, "examples": n, "pixels": pixels, "k": config.k, "seed": config.seed,
        "units": UNITS,
        "neg_elbo": neg_elbo, "neg_elbo_stderr": neg_elbo_se,
        "recon": ll.recon.mean().item(), "kl": ll.kl.mean().item(),
        "nll_iwae": nll, "nll_iwae_stderr": nll_se,
        "bits_per_dim": bits_per_dim(nll, pixels),
        "neg_elbo_bits_per_dim": bits_per_dim(neg_elbo, pixels),
        "notes": _notes(run_config),
    }

    start = time.perf_counter()
    summary = posterior_summary(model, images, device=device)
    count, variances = active_units(summary.means)
    results["latent"] = {
        "dim": model.latent_dim, "active_units": count, "active_threshold": ACTIVE_THRESHOLD,
        "posterior_mean_variance": variances.tolist(), "kl_per_dim": summary.kl_per_dim.tolist(),
    }
    results["probe"] = None
    if config.probe and config.split != "train" and len(dataset.spec.classes) > 1:
        train = _evaluation_view(dataset.train, run_config).head(config.probe_train_examples)
        train_means = posterior_summary(model, train.images, device=device).means
        results["probe"] = {
            "train_examples": len(train),
            "logistic_accuracy": probe_accuracy(train_means, train.labels, summary.means, labels, "logistic"),
            "knn5_accuracy": probe_accuracy(train_means, train.labels, summary.means, labels, "knn"),
        }
    seconds["latents"] = time.perf_counter() - start

    results["samples"] = None
    if classifier is not None or config.fid == "inception":
        start = time.perf_counter()
        samples = generate_samples(model, config.fid_samples, seed=config.seed, device=device)
        real = _gray_test_images(run_config, data_config, dataset)
        block: dict[str, Any] = {"n": config.fid_samples, "reference": f"{dataset_name} test, gray levels ({len(real)})"}
        if classifier is not None:
            block["fid_classifier"] = fid_classifier(real, samples, classifier)
            counts, entropy = class_histogram(predict(classifier, samples))
            block.update({
                "class_histogram": counts, "class_names": list(dataset.spec.classes),
                "class_entropy_nats": entropy, "class_entropy_max_nats": math.log(len(counts)),
                "classifier_sha256": info.sha256, "classifier_test_accuracy": info.test_accuracy,
            })
            if not info.test_accuracy >= WEAK_CLASSIFIER:
                block["classifier_warning"] = (
                    f"the cached {dataset_name} classifier has test accuracy {info.test_accuracy:.3f} (below "
                    f"{WEAK_CLASSIFIER}): its FID and class histogram are unreliable; retrain it on the whole "
                    f"training set (`vaelab classifier train --dataset {dataset_name} --force`)")
                import sys

                print(f"warning: {block['classifier_warning']}", file=sys.stderr)
        if config.fid == "inception":
            block["fid_inception"] = fid_inception(real, samples, config.inception_weights, device=device)
        results["samples"] = block
        seconds["samples"] = time.perf_counter() - start

    results["seconds"] = seconds
    results.update({"vaelab": __version__, "torch": torch.__version__,
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    path = atomic_write_text(run_dir / output_name(config.split), json.dumps(results, indent=2))
    if verbose:
        print_table(results)
        print(f"written to {path}")
    return Evaluation(run_dir, results, path)


def _pick_split(dataset, name: str, run_config):
    if name == "test":
        return dataset.test
    if name == "val":
        if dataset.validation is None:
            raise ConfigError("this run has no validation split (data.validation_size is 0); use --split test")
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
    return load_dataset(dataclasses.replace(data_config, binarize="none", validation_size=0)).test.images


def _notes(run_config) -> list[str]:
    notes = []
    if run_config.model.likelihood == "bernoulli" and run_config.data.binarize == "none":
        notes.append("gray-level data under a Bernoulli likelihood: the 'NLL' is a binary cross-entropy, "
                     "not a log-likelihood; compare with tables only for binarised data")
    if run_config.model.likelihood != "bernoulli":
        notes.append("a density on continuous pixels: bits_per_dim is -log density / (pixels ln 2), not the "
                     "discrete 8-bit bits/dim of image-model tables")
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
    kl_dims = sorted(latent["kl_per_dim"], reverse=True)
    shown = " ".join(f"{v:.2f}" for v in kl_dims[:8]) + (" ..." if len(kl_dims) > 8 else "")
    rows.append(("KL per dim (largest)", shown, "nats"))
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
        if "fid_inception" in samples:
            rows.append(("fid_inception", f"{samples['fid_inception']:.3f}", f"{samples['n']} samples"))
    width = max(len(r[0]) for r in rows)
    value_width = max(len(value) for _, value, _ in rows if len(value) <= 20)
    print(f"\n{results['dataset']} {results['split']}, {results['examples']} examples, {results['checkpoint']} checkpoint")
    for name, value, unit in rows:
        shown = f"{value:>{value_width}}" if len(value) <= 20 else value  # long lists left-aligned
        print(f"  {name:<{width}}  {shown}  {unit}".rstrip())
    for note in results.get("notes", []):
        print(f"  note: {note}")
