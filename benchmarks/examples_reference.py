"""The quality reference for `vaelab train`'s defaults: pytorch/examples' VAE (vae/main.py),
ported line for line without torchvision, trained for 10 epochs per seed on real MNIST; prints
its final test loss (negative ELBO, nats per example) beside `vaelab train --seed N`'s.

pytorch/examples' model: fc1 784->400, fc21/fc22 400->20, fc3 20->400, fc4 400->784, ReLU,
sigmoid output, loss = BCE(sum) + KL (Kingma & Welling 2014, Appendix B), Adam 1e-3, batch 128,
``torch.manual_seed(seed)``; its test loss is the same loss summed over the test set (one
sample of z per image, as its ``reparameterize`` always samples) divided by 10,000.

    python -m benchmarks.examples_reference [--seeds 1 2 3 4 5] [--epochs 10] [--data-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn, optim
from torch.utils.data import DataLoader

from benchmarks.common import mnist_test, mnist_train, table, write_json
from benchmarks.train_speed import ExamplesStyleMNIST


class VAE(nn.Module):
    """pytorch/examples/vae/main.py's ``VAE``, unchanged."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn_like(std)
        return mu + eps * std

    def decode(self, z):
        h3 = F.relu(self.fc3(z))
        return torch.sigmoid(self.fc4(h3))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def loss_function(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def examples_test_loss(seed: int, epochs: int, data_dir=None) -> float:
    """pytorch/examples' ``main`` for ``seed``: its test loss after ``epochs`` epochs."""
    torch.manual_seed(seed)
    train_images, train_labels = mnist_train(data_dir)
    test_images = mnist_test(data_dir)
    train_loader = DataLoader(ExamplesStyleMNIST(train_images, train_labels), batch_size=128, shuffle=True)
    test_loader = DataLoader(ExamplesStyleMNIST(test_images, train_labels[: len(test_images)]), batch_size=128,
                             shuffle=False)
    model = VAE()
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(epochs):
        model.train()
        for data, _ in train_loader:
            optimizer.zero_grad()
            recon_batch, mu, logvar = model(data)
            loss = loss_function(recon_batch, data, mu, logvar)
            loss.backward()
            optimizer.step()
        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for data, _ in test_loader:
                recon_batch, mu, logvar = model(data)
                test_loss += loss_function(recon_batch, data, mu, logvar).item()
    return test_loss / len(test_loader.dataset)


def vaelab_test_loss(seed: int, epochs: int, data_dir=None) -> float:
    """`vaelab train --seed SEED --epochs EPOCHS` (defaults otherwise): final test -ELBO."""
    out = tempfile.mkdtemp()
    argv = [sys.executable, "-m", "vaelab", "train", "--seed", str(seed), "--epochs", str(epochs), "--output-dir",
            out, "--name", "run", "--quiet", "--no-progress"]
    if data_dir:
        argv += ["--data-dir", str(data_dir)]
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return json.loads((Path(out) / "run" / "summary.json").read_text())["final"]["neg_elbo"]


def run(seeds=(1, 2, 3, 4, 5), epochs: int = 10, data_dir=None) -> dict:
    rows, result = [], {"epochs": epochs, "seeds": list(seeds), "pytorch_examples": [], "vaelab": []}
    for seed in seeds:
        result["pytorch_examples"].append(examples_test_loss(seed, epochs, data_dir))
        result["vaelab"].append(vaelab_test_loss(seed, epochs, data_dir))
        rows.append([seed, f"{result['pytorch_examples'][-1]:.3f}", f"{result['vaelab'][-1]:.3f}"])
        print(f"seed {seed}: pytorch/examples {rows[-1][1]}, vaelab {rows[-1][2]}", flush=True)
    for name in ("pytorch_examples", "vaelab"):
        values = result[name]
        result[f"{name}_mean"] = statistics.fmean(values)
        result[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    rows.append(["mean ± std", f"{result['pytorch_examples_mean']:.3f} ± {result['pytorch_examples_std']:.3f}",
                 f"{result['vaelab_mean']:.3f} ± {result['vaelab_std']:.3f}"])
    print(table(f"\ntest negative ELBO after {epochs} epochs (nats per example)", rows,
                ["seed", "pytorch/examples", "vaelab train"]))
    write_json("examples_reference", result)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    run(args.seeds, args.epochs, args.data_dir)


if __name__ == "__main__":
    main()
