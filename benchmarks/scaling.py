"""Does vaelab's epoch time grow as the FLOPs do? Epoch time of the MLP VAE against batch size
and against hidden width, with the matrix-product FLOPs of an epoch and the rate achieved.

FLOPs per step: 2 * B * sum(in * out) forward, twice that backward (weight and input
gradients), over the linear layers; the rate is those FLOPs over the measured seconds.

    python -m benchmarks.scaling [--quick] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

from benchmarks.common import alternate, median, mnist_train, table, write_json
from benchmarks.train_speed import linear_shapes
from vaelab.config import Config
from vaelab.data import InMemoryBatches
from vaelab.models import build_model
from vaelab.training import make_optimizer, train_epoch


def epoch_gflop(shapes, batch: int, n: int) -> float:
    return 6 * math.ceil(n / batch) * batch * sum(i * o for i, o in shapes) / 1e9


def measure(x: torch.Tensor, hidden: int, batch: int, repeats: int) -> dict:
    config = Config.from_dict({"model": {"hidden": [hidden]}, "training": {"batch_size": batch}})
    torch.manual_seed(0)
    model = build_model(config.model, (1, 28, 28))
    optimizer = make_optimizer(model, config.training)
    batches = InMemoryBatches(x, batch, shuffle=True, generator=torch.Generator().manual_seed(0))
    times = alternate({"epoch": lambda: train_epoch(model, optimizer, batches, config.objective, config.training,
                                                     torch.device("cpu"), 1)}, repeats)
    seconds = median(times["epoch"])
    gflop = epoch_gflop(linear_shapes(model), batch, len(x))
    return {"hidden": hidden, "batch": batch, "seconds": seconds, "gflop": gflop, "gflops": gflop / seconds}


def run(quick: bool = False, data_dir=None) -> dict:
    images, _ = mnist_train(data_dir, 2000 if quick else 20000)
    x = torch.from_numpy(images.astype(np.float32) / 255).unsqueeze(1)
    repeats = 1 if quick else 2
    batches, widths = ((64, 256), (100, 400)) if quick else ((32, 64, 128, 256, 512), (100, 200, 400, 800, 1600))
    by_batch = [measure(x, 400, b, repeats) for b in batches]
    by_width = [measure(x, w, 128, repeats) for w in widths]
    for title, rows in (("epoch time vs batch size (hidden 400)", by_batch),
                        ("epoch time vs hidden width (batch 128)", by_width)):
        print(table(f"\n{title}, {len(x)} MNIST images", [
            [r["batch"], r["hidden"], f"{r['seconds']:.2f}", f"{r['gflop']:.1f}", f"{r['gflops']:.1f}"] for r in rows],
            ["batch", "hidden", "s/epoch", "GFLOP/epoch", "GFLOP/s"]))
    result = {"quick": quick, "examples": len(x), "by_batch": by_batch, "by_width": by_width}
    write_json("scaling", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    run(args.quick, args.data_dir)


if __name__ == "__main__":
    main()
