"""Importance-sampled NLL (K=1000) on the 10,000 MNIST test images: vaelab vs a per-example loop
written like pythae's ``get_nll``, and the floor, in one process.

The model is the 784-400-20 VAE (ReLU, Bernoulli likelihood on logits) trained with dynamic
binarisation; the test images are binarised once (seed 1), as ``vaelab train --binarize
dynamic`` evaluates them. Three timings, each over all N*K = 10M latent samples:

* **vaelab**: :func:`vaelab.evaluation.importance_log_likelihood` (encoder once per batch, K*B
  latents decoded as one matrix, chunked, float64 streaming log-mean-exp, inference mode).
* **pythae-style loop**: pythae's ``VAE.get_nll`` (benchmark_VAE, src/pythae/models/vae/
  vae_model.py) with each example's K samples in one batch: for every example, repeat it K
  times, encode the copies, sample z, compute log q(z|x), log p(z) and the Bernoulli log p(x|z),
  then logsumexp - log K and ``.item()``. It is run under ``torch.no_grad`` and fed the *same*
  noise as vaelab (``example_noise``), so both give the same estimate.
* **pythae** (when installed): pythae 0.1.2's own ``VAE.get_nll`` on a pythae ``VAE`` wrapping the
  same encoder and decoder, with ``batch_size`` = K (its fastest setting), under ``no_grad``
  (which its ``get_nll`` does not set itself), with its own noise.
* **floor**: only the decoder's two matrix products (20x400 and 400x784) for 10M latent
  samples, into preallocated outputs, in chunks of the same size as vaelab's: no bias, no
  activation, no likelihood, no sampling. No implementation of this estimate can be faster.

    python -m benchmarks.eval_speed [--run RUN_DIR] [--k 1000] [--examples 10000] [--data-dir DIR]

Without ``--run`` it first trains the model for ``--train-epochs`` epochs (not timed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

import vaelab
from benchmarks.common import RESULTS, pythae_vae
from vaelab.config import DataConfig
from vaelab.data import binarize_split, load_dataset
from vaelab.evaluation.loglik import example_noise, importance_log_likelihood


@torch.no_grad()
def pythae_style_nll(model, images: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Per-example loop in the manner of pythae's ``get_nll`` (its ``batch_size`` = K: each
    example's K samples in one batch), with vaelab's noise. Returns log p(x) per example."""
    log_p = []
    for i in range(len(images)):
        x = images[i].unsqueeze(0)
        x_rep = torch.cat(k * [x])  # (K, 1, 28, 28)
        mu, log_var = model.encoder(x_rep)
        std = torch.exp(0.5 * log_var)
        z = mu + example_noise(seed, i, k, mu.shape[-1]) * std
        log_q_z_given_x = -0.5 * (log_var + (z - mu) ** 2 / torch.exp(log_var)).sum(dim=-1)
        log_p_z = -0.5 * (z ** 2).sum(dim=-1)  # the -D/2 log(2 pi) of both cancel
        logits = model.decoder(z)
        log_p_x_given_z = -F.binary_cross_entropy_with_logits(
            logits.reshape(k, -1), x_rep.reshape(k, -1), reduction="none").sum(dim=-1)
        log_p_x = log_p_x_given_z + log_p_z - log_q_z_given_x
        log_p.append(torch.logsumexp(log_p_x, 0).item() - math.log(k))
    return torch.tensor(log_p, dtype=torch.float64)


@torch.no_grad()
def decoder_gemm_floor(model, samples: int, chunk: int) -> float:
    """Seconds for the decoder's matrix products alone over ``samples`` latents."""
    first, last = model.decoder.body[0], model.decoder.out
    w1, w2 = first.weight.t().contiguous(), last.weight.t().contiguous()  # (20, 400), (400, 784)
    z = torch.randn(chunk, w1.shape[0])
    h, out = torch.empty(chunk, w1.shape[1]), torch.empty(chunk, w2.shape[1])
    torch.mm(z, w1, out=h)
    torch.mm(h, w2, out=out)  # warm-up
    start = time.perf_counter()
    for begin in range(0, samples, chunk):
        rows = min(chunk, samples - begin)
        torch.mm(z[:rows], w1, out=h[:rows])
        torch.mm(h[:rows], w2, out=out[:rows])
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a trained 784-400-20 run (default: train one first)")
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--examples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--train-epochs", type=int, default=5)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/eval_speed.json"))
    bench(parser.parse_args())


def run(quick: bool = False, data_dir=None) -> None:
    """Entry point of `python -m benchmarks run`: ``quick`` is a smoke run (K=20, 300 images,
    a 1-epoch model on 3,000 images)."""
    import types as _types

    args = _types.SimpleNamespace(run=None, k=20 if quick else 1000, examples=300 if quick else 10000, seed=0,
                                  chunk_size=4096, train_epochs=1 if quick else 5, data_dir=data_dir,
                                  train_examples=3000 if quick else None,
                                  json=RESULTS / ("quick" if quick else "") / "eval_speed.json")
    bench(args)


def bench(args) -> None:
    run_dir = args.run
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp(prefix="vaelab-eval-speed-")) / "run"
        print(f"training the 784-400-20 model for {args.train_epochs} epochs (dynamic binarisation), not timed")
        vaelab.train({"name": run_dir.name, "output_dir": str(run_dir.parent), "data": {"binarize": "dynamic",
                      "data_dir": args.data_dir, "train_examples": getattr(args, "train_examples", None)},
                      "training": {"epochs": args.train_epochs, "progress": False}},
                     verbose=False)
    model = vaelab.load_model(run_dir)
    test = load_dataset(DataConfig(data_dir=args.data_dir)).test
    images = binarize_split(test, 1).images[: args.examples]
    n, k = len(images), args.k
    print(f"IS-NLL, K={k}, {n} binarised MNIST test images, {n * k / 1e6:.1f}M latent samples, "
          f"{torch.get_num_threads()} torch threads, model {run_dir}")

    load_before = os.getloadavg()[0]
    wall, cpu = {}, {}

    def timed(name, fn):
        start, start_cpu = time.perf_counter(), time.process_time()
        out = fn()
        wall[name], cpu[name] = time.perf_counter() - start, time.process_time() - start_cpu
        return out

    ours = timed("vaelab", lambda: importance_log_likelihood(model, images, k, seed=args.seed,
                                                               chunk_size=args.chunk_size))
    print(f"  vaelab              {wall['vaelab']:7.1f} s   NLL {ours.nll.mean().item():.4f} nats", flush=True)
    reference = timed("pythae_style_loop", lambda: pythae_style_nll(model, images, k, args.seed))
    print(f"  pythae-style loop   {wall['pythae_style_loop']:7.1f} s   NLL {-reference.mean().item():.4f} nats",
          flush=True)
    pythae = pythae_vae(model)
    pythae = pythae.eval() if pythae is not None else None
    pythae_nll = None
    if pythae is not None:  # its fastest setting: batch_size = K, each example's K samples at once
        pythae_nll = -timed("pythae_get_nll", lambda: torch.no_grad()(pythae.get_nll)(images, n_samples=k,
                                                                                     batch_size=k))
        print(f"  pythae get_nll      {wall['pythae_get_nll']:7.1f} s   NLL {pythae_nll:.4f} nats (its own noise)",
              flush=True)
    timed("decoder_gemm_floor", lambda: decoder_gemm_floor(model, n * k, args.chunk_size))
    print(f"  decoder GEMM floor  {wall['decoder_gemm_floor']:7.1f} s", flush=True)
    t_vaelab, t_loop, t_floor = wall["vaelab"], wall["pythae_style_loop"], wall["decoder_gemm_floor"]
    load_after = os.getloadavg()[0]

    diff = (ours.log_px - reference).abs()
    if pythae_nll is not None:
        print(f"pythae get_nll / vaelab = {wall['pythae_get_nll'] / t_vaelab:.2f}x")
    print(f"\nvaelab / floor = {t_vaelab / t_floor:.2f}x   pythae-style loop / vaelab = {t_loop / t_vaelab:.2f}x"
          f"   (process CPU seconds: {cpu['vaelab']:.1f}, {cpu['pythae_style_loop']:.1f}, "
          f"{cpu['decoder_gemm_floor']:.1f}; load average {load_before:.1f} -> {load_after:.1f})")
    print(f"same noise, same estimate: mean NLL {ours.nll.mean().item():.6f} vs {-reference.mean().item():.6f} "
          f"nats; largest per-example difference {diff.max().item():.2e} nats")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": "eval_speed", "examples": n, "k": k, "latent_samples": n * k, "chunk_size": args.chunk_size,
        "threads": torch.get_num_threads(), "torch": torch.__version__, "platform": platform.platform(),
        "seconds": wall, "cpu_seconds": cpu, "load_average": [load_before, load_after],
        "vaelab_over_floor": t_vaelab / t_floor, "loop_over_vaelab": t_loop / t_vaelab,
        "pythae_get_nll_over_vaelab": wall["pythae_get_nll"] / t_vaelab if pythae_nll is not None else None,
        "nll": {"vaelab": ours.nll.mean().item(), "pythae_style_loop": -reference.mean().item(),
                "pythae_get_nll": pythae_nll},
        "max_abs_difference_per_example": diff.max().item(),
    }, indent=2))


if __name__ == "__main__":
    main()
