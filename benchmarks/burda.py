"""`python -m benchmarks.burda RECIPE.yaml [--output JSON]`: a recipe end to end against
Burda et al. 2016, Table 1 (MNIST, dynamically binarised).

Trains the recipe (its ``training.max_minutes`` bounds the training), evaluates the chosen
checkpoint on the whole test set with K = 5000 importance samples (test NLL with its standard
error, test -ELBO, active units), exports the weights-only file (``vaelab export-weights``) and
writes a JSON with the wall times, epochs, these numbers, the threads and the machine. The
checkpoint is ``best`` (chosen on the validation split) when the recipe has one
(``data.validation_size``), else ``last``: never chosen on the test set.

``--smoke`` is a seconds-long check that it all runs: 2,000 training images, one epoch, K = 20
on 200 test images, into ``benchmarks/results/quick/``; its numbers mean nothing.

As ``python -m benchmarks run --only burda`` it runs ``configs/benchmarks/burda-vae.yaml``
(``--quick``: the smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import RESULTS, machine

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RECIPE = REPO / "configs" / "benchmarks" / "burda-vae.yaml"

PAPER = {
    # Burda et al. 2016, Table 1, MNIST test NLL (nats), K = 5000
    "vae_1_layer_k1": 86.76, "iwae_1_layer_k50": 84.78, "vae_2_layer_k1": 85.33, "iwae_2_layer_k5": 83.89,
    "iwae_2_layer_k50": 82.90,
}


def target_row(config, recipe: str | Path = "") -> str:
    """The paper's row a recipe is measured against: the one-layer IWAE, k = 50 (84.78), for
    ``best-1h`` (any lever vaelab offers) and for any objective but the ELBO; else the VAE,
    k = 1, of the recipe's number of stochastic layers (86.76 for one, 85.33 for two)."""
    if Path(recipe).stem.startswith("best-1h") or config.objective.bound != "elbo":
        return "iwae_1_layer_k50"
    return f"vae_{1 + len(config.model.lower_latents or [])}_layer_k1"

SMOKE = {"data.train_examples": 2000, "data.validation_size": 0, "training.epochs": 1,
         "training.max_minutes": None, "training.lr_schedule_span": "epochs", "training.progress": False}
"""What ``--smoke`` changes in the recipe (and it evaluates K = 20 on 200 test images)."""


def checkpoint_to_evaluate(config) -> str:
    """``best`` (chosen on the validation split) when the recipe holds one out, else ``last``:
    the test set never chooses."""
    return "best" if config.data.validation_size > 0 else "last"


def run_recipe(recipe: str | Path, output: str | Path | None = None, weights: str | Path | None = None, *,
               smoke: bool = False, k: int | None = None, threads: int | None = None, data_dir: str | None = None,
               seed: int | None = None,
               output_dir: str | Path | None = None, verbose: bool = True) -> dict[str, Any]:
    """Train ``recipe``, evaluate it with K = ``k`` (default 5000; smoke 20), export its weights
    (beside the JSON: ``<recipe>.safetensors`` and ``<recipe>.yaml``) and write the JSON
    (default ``benchmarks/results/<recipe>.json``, ``<recipe>-seed<N>.json`` with ``seed``;
    smoke: in ``results/quick/``). Returns the JSON's content."""
    import vaelab
    from vaelab.config import load_config
    from vaelab.training.weights import export_weights

    recipe = Path(recipe)
    threads = threads or int(os.environ.get("OMP_NUM_THREADS", 0)) or os.cpu_count() or 1
    torch.set_num_threads(threads)
    config = load_config(recipe)
    overrides: dict[str, Any] = dict(SMOKE) if smoke else {}
    if data_dir is not None:
        overrides["data.data_dir"] = data_dir
    if seed is not None:
        overrides["seed"] = seed
    scratch = None
    if output_dir is None and smoke:
        scratch = tempfile.TemporaryDirectory(prefix="burda-smoke-")
        output_dir = scratch.name
    if output_dir is not None:
        overrides["output_dir"] = str(output_dir)
    stem = recipe.stem if seed is None else f"{recipe.stem}-seed{seed}"
    # the seed in the run's name: two seeds started in the same second get two run directories
    name = config.name or recipe.stem
    overrides["name"] = f"{name if seed is None else f'{name}-seed{seed}'}-{time.strftime('%Y%m%d-%H%M%S')}"
    config = config.replace(overrides)
    folder = RESULTS / "quick" if smoke else RESULTS
    output = Path(output) if output is not None else folder / f"{stem}.json"
    weights = Path(weights) if weights is not None else output.with_suffix(".safetensors")
    which = checkpoint_to_evaluate(config)

    start = time.perf_counter()
    run = vaelab.train(config, verbose=verbose)
    train_wall = time.perf_counter() - start
    evaluation = vaelab.evaluate(run.run_dir, k=k or (20 if smoke else 5000), checkpoint=which, split="test",
                                 examples=200 if smoke else None, fid="none", probe=False, verbose=verbose)
    eval_wall = time.perf_counter() - start - train_wall
    output.parent.mkdir(parents=True, exist_ok=True)
    export_weights(run.run_dir, weights, which)
    e = evaluation.results
    target = target_row(config, recipe)
    result = {
        "recipe": str(recipe.resolve().relative_to(REPO)) if recipe.resolve().is_relative_to(REPO) else str(recipe),
        "smoke": smoke,
        "config": config.to_dict(),
        "train_wall_seconds": round(train_wall, 1),
        "train_seconds_in_epochs": round(sum(row["train_seconds"] for row in run.history), 1),
        "evaluate_wall_seconds": round(eval_wall, 1),
        "epochs": run.summary.get("epochs", 0),
        "epochs_planned": config.training.epochs,
        "stopped": run.summary.get("stopped"),
        "checkpoint": which,
        "checkpoint_epoch": run.summary.get("best_epoch") if which == "best" else run.summary.get("epochs"),
        "test_nll": e["nll_iwae"], "test_nll_stderr": e["nll_iwae_stderr"], "k": e["k"],
        "test_neg_elbo": e["neg_elbo"], "test_recon": e["recon"], "test_kl": e["kl"],
        "active_units": e["latent"]["active_units"], "latent_dim": e["latent"]["dim"],
        "layers": e["latent"].get("layers"),  # a hierarchical VAE's active units per layer, z_1 first
        "test_examples": e["examples"],
        "paper": PAPER,
        "target": target, "target_nll": PAPER[target], "minus_target": e["nll_iwae"] - PAPER[target],
        "budget_seconds": None if config.training.max_minutes is None else 60 * config.training.max_minutes,
        "weights": _shown(weights),
        "threads": threads,
        "machine": {**machine(), "cpu_count": os.cpu_count(), "load_average": list(os.getloadavg())},
        "units": "nats per example",
    }
    output.write_text(json.dumps(result, indent=2))
    shutil.copyfile(Path(run.run_dir) / "metrics.csv", metrics_path(output))  # the curve behind the number
    if verbose:
        print(f"\n{result['recipe']}: test NLL (K={e['k']}) {e['nll_iwae']:.2f} ± {e['nll_iwae_stderr']:.2f} nats, "
              f"-ELBO {e['neg_elbo']:.2f}, {result['active_units']}/{result['latent_dim']} active units; "
              f"{result['epochs']} epochs in {train_wall:.0f} s of training ({threads} threads); "
              f"{result['minus_target']:+.2f} nats from the paper's {PAPER[target]}")
        print(f"wrote {output} and {weights}")
    if scratch is not None:
        scratch.cleanup()
    return result


def metrics_path(output: Path) -> Path:
    """Where the run's per-epoch ``metrics.csv`` is copied: ``<json stem>-metrics.csv``."""
    return output.with_name(f"{output.stem}-metrics.csv")


def plot_curves(outputs: list[Path], figure: Path) -> Path:
    """Draw the test -ELBO (nats) of each result's training against its wall-clock minutes
    (cumulative ``train_seconds``; the evaluation between epochs excluded), with each result's
    K = 5000 test NLL and the paper's row as horizontal lines, into ``figure`` (PNG)."""
    import csv

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 4.8))
    drawn = set()  # the paper's rows already drawn (a recipe and its rerun share one)
    colours = [f"tab:{c}" for c in ("blue", "orange", "green", "red", "purple", "brown", "pink", "olive",
                                                "cyan", "gray")]
    for output, colour in zip(outputs, colours, strict=False):
        result = json.loads(Path(output).read_text())
        with open(metrics_path(Path(output))) as f:
            rows = list(csv.DictReader(f))
        minutes, total = [], 0.0
        for row in rows:
            total += float(row["train_seconds"])
            minutes.append(total / 60)
        name = Path(output).stem  # burda-vae, burda-vae-rerun, best-1h-seed0, ...
        ax.plot(minutes, [float(row["test_neg_elbo"]) for row in rows], color=colour,
                label=f"{name}: test -ELBO ({len(rows)} epochs)")
        ax.axhline(result["test_nll"], color=colour, linestyle="--",
                   label=f"{name}: test NLL, K = {result['k']}: {result['test_nll']:.2f}")
        if result["target"] in drawn:
            continue
        drawn.add(result["target"])
        row = {"vae_1_layer_k1": "VAE, k = 1", "iwae_1_layer_k50": "IWAE, k = 50",
               "vae_2_layer_k1": "two layers, VAE, k = 1"}.get(result["target"], result["target"])
        ax.axhline(result["target_nll"], color="black", linestyle=(0, (1, 2 + 2 * len(drawn))), linewidth=1,
                   label=f"Burda et al. 2016, {row}: {result['target_nll']}")
    ax.set_ylim(82, 100)
    ax.set_xlabel("minutes of training (sum of the epochs' training time)")
    ax.set_ylabel("nats per test image")
    ax.set_title("MNIST, dynamically binarised: one hour of training on a 2-core CPU")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes, off the curves
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=110)
    plt.close(fig)
    return figure


def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def run(quick: bool = False, data_dir: str | None = None) -> None:
    """``python -m benchmarks run --only burda``: the burda-vae recipe (``quick``: smoke)."""
    run_recipe(DEFAULT_RECIPE, smoke=quick, data_dir=data_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.burda", description=__doc__.splitlines()[0])
    parser.add_argument("recipe", metavar="RECIPE.yaml", nargs="?", default=str(DEFAULT_RECIPE),
                        help="a vaelab config (default: configs/benchmarks/burda-vae.yaml)")
    parser.add_argument("--output", metavar="JSON", help="default: benchmarks/results/<recipe>.json")
    parser.add_argument("--weights", metavar="FILE.safetensors", help="default: the JSON's path, .safetensors")
    parser.add_argument("--smoke", action="store_true", help="seconds-long check on a slice (numbers mean nothing)")
    parser.add_argument("--k", type=int, help="importance samples (default: 5000; --smoke 20)")
    parser.add_argument("--threads", type=int, help="torch threads (default: $OMP_NUM_THREADS, else every core)")
    parser.add_argument("--data-dir", help="MNIST location (default: $VAELAB_DATA_DIR, the cache)")
    parser.add_argument("--output-dir", help="parent of the run directory (default: the recipe's; --smoke: a "
                                             "temporary one)")
    parser.add_argument("--seed", type=int, help="the run's seed instead of the recipe's (default output: "
                                                 "benchmarks/results/<recipe>-seed<N>.json)")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--plot", metavar="PNG", help="instead of training: draw the curves of the committed "
                                                      "results (every recipe's runs) into PNG")
    args = parser.parse_args(argv)
    if args.plot:
        names = ("burda-vae", "burda-vae-rerun", "iwae-k5-1h", "burda-vae-2l-seed0", "burda-vae-2l-seed1",
                 "best-1h-seed0", "best-1h-seed1", "best-1h-ladder-seed0", "best-1h-ladder-seed1")
        outputs = [RESULTS / f"{name}.json" for name in names if (RESULTS / f"{name}.json").exists()]
        print(f"wrote {plot_curves(outputs, Path(args.plot))}")
        return 0
    run_recipe(args.recipe, args.output, args.weights, smoke=args.smoke, k=args.k, threads=args.threads,
               data_dir=args.data_dir, output_dir=args.output_dir, seed=args.seed, verbose=not args.quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
