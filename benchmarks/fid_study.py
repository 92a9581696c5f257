"""Classifier-feature FID study on MNIST: untrained vs trained decoders, 10-D vs 2-D latents.

Trains the pytorch/examples model (784-400-z, ReLU, Bernoulli on gray levels, Adam 1e-3, batch
128) with z = 10 and z = 2 for ``--epochs`` epochs per seed, then for each model (and for the
same architectures untrained, i.e. at their random initialisation) draws ``--samples`` decoder
means from p(z) and reports ``fid_classifier`` against the 10,000 test images, with the class
histogram entropy of the samples (log 10 = 2.303 nats when every digit is equally frequent).
Needs the cached MNIST classifier (``vaelab classifier train --dataset mnist``).

    python benchmarks/fid_study.py [--epochs 10] [--seeds 1 2] [--out DIR] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import torch

import vaelab
from vaelab.config import DataConfig, ModelConfig
from vaelab.data import load_dataset
from vaelab.evaluation.classifier import class_histogram, predict
from vaelab.evaluation.fid import fid_classifier, generate_samples
from vaelab.models import build_model
from vaelab.models.classifier import load_classifier


def score(model, real, classifier, n: int, seed: int) -> dict[str, float]:
    samples = generate_samples(model, n, seed=seed)
    counts, entropy = class_histogram(predict(classifier, samples))
    return {"fid_classifier": fid_classifier(real, samples, classifier), "class_entropy_nats": entropy,
            "class_histogram": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--samples", type=int, default=10000)
    parser.add_argument("--out", type=Path, default=Path("runs/fid-study"))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/fid_study.json"))
    args = parser.parse_args()

    classifier, info = load_classifier("mnist")
    real = load_dataset(DataConfig(data_dir=args.data_dir)).test.images
    rows = []
    for latent_dim in (10, 2):
        for seed in args.seeds:
            torch.manual_seed(seed)
            untrained = build_model(ModelConfig(latent_dim=latent_dim), (1, 28, 28))
            rows.append({"latent_dim": latent_dim, "seed": seed, "model": "untrained",
                         **score(untrained, real, classifier, args.samples, seed)})
            name = f"z{latent_dim}-seed{seed}"
            run_dir = args.out / name
            if not (run_dir / "checkpoints" / "best.safetensors").exists():
                vaelab.train({"name": name, "output_dir": str(args.out), "seed": seed,
                              "model": {"latent_dim": latent_dim},
                              "data": {"data_dir": args.data_dir},
                              "training": {"epochs": args.epochs, "progress": False}}, verbose=False)
            trained = vaelab.load_model(run_dir)
            rows.append({"latent_dim": latent_dim, "seed": seed, "model": f"trained {args.epochs} epochs",
                         **score(trained, real, classifier, args.samples, seed)})
            print(f"z={latent_dim:2d} seed {seed}: fid_classifier untrained {rows[-2]['fid_classifier']:9.2f}  "
                  f"trained {rows[-1]['fid_classifier']:7.2f}  (sample class entropy "
                  f"{rows[-1]['class_entropy_nats']:.3f} nats)", flush=True)
    print(f"\nfid_classifier, {args.samples} samples vs 10,000 MNIST test images (classifier sha256 "
          f"{info.sha256[:12]}, test accuracy {info.test_accuracy:.4f}); mean over seeds {args.seeds}")
    print(f"{'latent':>6s}  {'model':22s} {'fid_classifier':>14s} {'class entropy':>14s}")
    summary = {}
    for latent_dim in (10, 2):
        for kind in ("untrained", f"trained {args.epochs} epochs"):
            sel = [r for r in rows if r["latent_dim"] == latent_dim and r["model"] == kind]
            fid = statistics.mean(r["fid_classifier"] for r in sel)
            ent = statistics.mean(r["class_entropy_nats"] for r in sel)
            summary[f"z{latent_dim} {kind}"] = {"fid_classifier": fid, "class_entropy_nats": ent}
            print(f"{latent_dim:6d}  {kind:22s} {fid:14.2f} {ent:14.3f}")
    print(f"(max class entropy log 10 = {math.log(10):.3f} nats)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"study": "fid_classifier", "classifier_sha256": info.sha256,
                                     "classifier_test_accuracy": info.test_accuracy, "samples": args.samples,
                                     "epochs": args.epochs, "rows": rows, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
