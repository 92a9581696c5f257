"""Speed ideas measured, not assumed: each against vaelab's default, alternately in one process,
on real MNIST. What helps is kept in vaelab; what does not stays here as evidence.

- **torch.compile** of the objective (Inductor, C++ kernels on the CPU) for the 784-400-20 MLP:
  epoch time once compiled, and the compile time a run pays first.
- **channels_last** weights and activations for the conv VAE (16-32 channels): kept
  (:func:`vaelab.runtime.place_model`).
- **threads**: one vs two (``torch.set_num_threads``) for the 784-400-20 MLP.
- **batch gathers and preallocated batches**: an epoch's batches gathered by
  ``torch.index_select`` (what :class:`vaelab.data.InMemoryBatches` does), by ``x[index]``, and
  by ``index_select(..., out=buffer)`` into one reused buffer; the gathers alone.
- **the gradient finiteness check** run after every backward pass: vaelab's one foreach norm
  (``torch.nn.utils.get_total_norm``) vs the sum of the gradients' sums vs no check at all.
- **fused vs for-each Adam** (``torch.optim.Adam(fused=True)``, vaelab's choice, vs the
  multi-tensor ``foreach=True`` kernels).

    python -m benchmarks.ideas [--repeats 3] [--quick] [--data-dir DIR] [--only WORD ...] [--examples N]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

import vaelab.training.trainer as trainer_module
from benchmarks.common import alternate, median, mnist_train, table, write_json
from vaelab.config import Config
from vaelab.data import InMemoryBatches
from vaelab.models import build_model
from vaelab.objectives import Objective
from vaelab.training import make_optimizer, train_epoch

CPU = torch.device("cpu")


class CompiledObjective(Objective):
    """vaelab's objective with its forward pass (encoder, sampling, decoder, likelihood, KL)
    compiled by ``torch.compile``; the backward pass is compiled with it (AOTAutograd)."""

    def __init__(self, config):
        super().__init__(config)
        self._compiled = torch.compile(super().__call__, dynamic=False)  # a graph per batch shape

    def __call__(self, model, x, beta=1.0, generator=None):
        return self._compiled(model, x, beta)


def trainer(values: dict, x: torch.Tensor, batch: int, objective_class=Objective, channels_last: bool = False,
            foreach_adam: bool = False):
    config = Config.from_dict(values)
    torch.manual_seed(1)
    model = build_model(config.model, (1, 28, 28))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = (torch.optim.Adam(model.parameters(), lr=config.training.learning_rate, foreach=True)
                 if foreach_adam else make_optimizer(model, config.training))
    batches = InMemoryBatches(x, batch, shuffle=True, generator=torch.Generator().manual_seed(1))
    objective = objective_class(config.objective)
    return lambda: train_epoch(model, optimizer, batches, objective, config.training, CPU, 1)


def with_threads(n: int, epoch):
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            epoch()
        finally:
            torch.set_num_threads(before)
    return run


def sums_check(model, parameters):
    """A finiteness check by the sum of the gradients' sums (a NaN or inf anywhere makes it
    non-finite): one reduction per parameter."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads or math.isfinite(torch.stack([g.sum() for g in grads]).sum().item()):
        return None
    return "a gradient"


def with_gradient_check(check, epoch):
    """``epoch`` with vaelab's trainer using ``check`` in place of its gradient finiteness check."""
    def run():
        vaelab_check = trainer_module._nonfinite_gradient
        trainer_module._nonfinite_gradient = check
        try:
            epoch()
        finally:
            trainer_module._nonfinite_gradient = vaelab_check
    return run


def gather_epoch(x: torch.Tensor, batch: int, how: str, buffer: torch.Tensor | None = None) -> None:
    for index in torch.randperm(len(x)).split(batch):
        if how == "index":
            x[index]
        elif buffer is None:
            torch.index_select(x, 0, index)
        else:
            torch.index_select(x, 0, index, out=buffer[: len(index)])


def run(quick: bool = False, repeats: int = 3, data_dir=None, only: list[str] | None = None,
        examples: int | None = None) -> dict:
    images, _ = mnist_train(data_dir, 2000 if quick else examples)
    x = torch.from_numpy(images.astype(np.float32) / 255).unsqueeze(1)
    repeats = 1 if quick else repeats
    mlp = {"model": {"hidden": [400], "latent_dim": 20}}
    iwae = {"model": {"hidden": [200, 200], "latent_dim": 50, "activation": "tanh"}}
    conv = {"model": {"network": "conv", "conv_channels": [16, 32], "hidden": [256], "latent_dim": 20}}
    results = {}

    experiments = {
        "torch.compile (784-400-20)": lambda: {"eager (vaelab)": trainer(mlp, x, 128),
                                               "compiled": trainer(mlp, x, 128, CompiledObjective)},
        "channels_last (conv 16-32)": lambda: {"channels_last (vaelab)": trainer(conv, x, 128, channels_last=True),
                                               "contiguous": trainer(conv, x, 128)},
        "threads (784-400-20)": lambda: {f"{torch.get_num_threads()} threads (vaelab)": trainer(mlp, x, 128),
                                         "1 thread": with_threads(1, trainer(mlp, x, 128))},
        "batch gathers only (batch 128)": lambda: {
            "index_select (vaelab)": lambda: gather_epoch(x, 128, "index_select"),
            "x[index]": lambda: gather_epoch(x, 128, "index"),
            "index_select into a preallocated buffer": lambda: gather_epoch(x, 128, "index_select",
                                                                            torch.empty(128, *x.shape[1:]))},
        "gradient finiteness check (IWAE MLP 784-200-200-50)": lambda: {
            "get_total_norm (vaelab)": trainer(iwae, x, 100),
            "sum of sums": with_gradient_check(sums_check, trainer(iwae, x, 100)),
            "no check": with_gradient_check(lambda *args: None, trainer(iwae, x, 100))},
        "Adam kernels (784-400-20)": lambda: {"fused (vaelab)": trainer(mlp, x, 128),
                                              "foreach": trainer(mlp, x, 128, foreach_adam=True)},
    }
    first_epoch = None
    for name, make_contenders in experiments.items():
        if only and not any(word in name for word in only):
            continue
        contenders = make_contenders()
        if "compiled" in contenders:
            start = time.perf_counter()
            contenders["compiled"]()  # compiles (batch 128 and the last, smaller one), trains one epoch
            first_epoch = time.perf_counter() - start
        times = alternate(contenders, repeats)
        base = median(next(iter(times.values())))
        results[name] = {k: {"seconds": median(v), "all": v, "ratio_to_default": median(v) / base}
                         for k, v in times.items()}
        rows = [[k, f"{r['seconds']:.3f}", f"{r['ratio_to_default']:.2f}x", " ".join(f"{t:.2f}" for t in r["all"])]
                for k, r in results[name].items()]
        print(table(f"\n{name}, {len(x)} MNIST images, median of {repeats}", rows,
                    ["variant", "s/epoch", "vs default", "runs"]))
    if first_epoch is not None:
        results["torch.compile (784-400-20)"]["compiled"]["first_epoch_with_compile_s"] = first_epoch
        print(f"torch.compile: the first epoch, compiling included, took {first_epoch:.1f} s")
    name = "ideas" if not only else "ideas_" + "_".join(w.replace(" ", "-") for w in only)
    write_json(name, {"quick": quick, "examples": len(x), "results": results})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--only", nargs="+", metavar="WORD", help="run only the ideas whose name contains a WORD")
    parser.add_argument("--examples", type=int, default=None,
                        help="the first N training images (default: all 60,000); short epochs and many --repeats "
                             "resolve effects of a few percent on a noisy machine")
    args = parser.parse_args()
    run(args.quick, args.repeats, args.data_dir, args.only, args.examples)


if __name__ == "__main__":
    main()
