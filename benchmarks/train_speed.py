"""One training epoch of vaelab against a loop written like pytorch/examples' VAE, in one process.

Both train the same 784-400-20 model (ReLU, Bernoulli likelihood, Adam 1e-3, batch 128) on the
real MNIST training set (60,000 images). The reference loop follows pytorch/examples/vae/main.py:
a per-sample Dataset turning each uint8 image into a PIL image and then a float tensor (as
torchvision's MNIST with ToTensor does), a shuffling DataLoader with batch 128, sigmoid outputs with
``F.binary_cross_entropy(reduction='sum')`` and ``loss.item()`` every step. vaelab's epoch is
:func:`vaelab.training.train_epoch` over in-memory tensors. The two are timed alternately, each
``--repeats`` times, and the median ratio is printed. A third row runs the reference loop with
subnormal floats flushed to zero (what vaelab does on the CPU), to separate that setting's gain
from the in-memory batching's.

    python benchmarks/train_speed.py [--repeats 3] [--data-dir DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vaelab.config import Config
from vaelab.data import InMemoryBatches, get_spec
from vaelab.data.datasets import load_split_arrays
from vaelab.models import build_model
from vaelab.runtime import flush_denormals
from vaelab.training import make_optimizer, train_epoch


class ExamplesStyleMNIST(Dataset):
    """Per-sample dataset doing what torchvision's ``MNIST`` with ``transforms.ToTensor()`` does
    for each item (torchvision has no CPU wheel here): uint8 tensor -> PIL image ->
    float tensor (1, 28, 28) in [0, 1]."""

    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.data = torch.from_numpy(images.copy())
        self.targets = torch.from_numpy(labels.astype(np.int64))

    def __len__(self):
        return len(self.data)

    def __getitem__(self, index):
        img, target = self.data[index], int(self.targets[index])
        pic = Image.fromarray(img.numpy())  # torchvision: Image.fromarray(img.numpy(), mode="L")
        # torchvision.transforms.functional.to_tensor for a mode-L image:
        tensor = torch.from_numpy(np.array(pic, np.uint8, copy=True))
        tensor = tensor.view(pic.size[1], pic.size[0], 1).permute((2, 0, 1)).contiguous()
        return tensor.to(dtype=torch.get_default_dtype()).div(255), target


class ExamplesVAE(nn.Module):
    """The model of pytorch/examples/vae/main.py."""

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
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        z = self.reparameterize(mu, logvar)
        return self.decode(z), mu, logvar


def examples_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def examples_epoch(model, optimizer, loader) -> float:
    model.train()
    train_loss = 0.0
    for data, _ in loader:
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = examples_loss(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
    return train_loss / len(loader.dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-examples", type=int, default=None, help="use the first N images (smoke runs)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/train_speed.json"))
    args = parser.parse_args()

    images, labels = load_split_arrays(get_spec("mnist"), "train", args.data_dir)
    images, labels = images[: args.train_examples], labels[: args.train_examples]
    config = Config()

    torch.manual_seed(1)
    reference = ExamplesVAE()
    reference_opt = torch.optim.Adam(reference.parameters(), lr=1e-3)
    loader = DataLoader(ExamplesStyleMNIST(images, labels), batch_size=128, shuffle=True)

    torch.manual_seed(1)
    model = build_model(config.model, (1, 28, 28))
    optimizer = make_optimizer(model, config.training)
    x = torch.from_numpy(images.astype(np.float32) / 255).unsqueeze(1)
    batches = InMemoryBatches(x, 128, shuffle=True, generator=torch.Generator().manual_seed(1))
    device = torch.device("cpu")

    times: dict[str, list[float]] = {"pytorch/examples loop": [], "examples loop + FTZ": [], "vaelab": []}
    for _ in range(args.repeats):
        start = time.perf_counter()
        examples_epoch(reference, reference_opt, loader)
        times["pytorch/examples loop"].append(time.perf_counter() - start)
        with flush_denormals():  # the reference with vaelab's CPU setting, to show what it buys
            start = time.perf_counter()
            examples_epoch(reference, reference_opt, loader)
            times["examples loop + FTZ"].append(time.perf_counter() - start)
        start = time.perf_counter()
        train_epoch(model, optimizer, batches, config.objective, config.training, device, 1)
        times["vaelab"].append(time.perf_counter() - start)

    ratios = [r / v for r, v in zip(times["pytorch/examples loop"], times["vaelab"])]
    print(f"one epoch of 784-400-20 on {len(images)} MNIST images, batch 128, "
          f"{torch.get_num_threads()} torch threads, {args.repeats} repeats (median)")
    print(f"{'loop':24s} {'s/epoch':>8s}  all runs")
    for name, values in times.items():
        print(f"{name:24s} {statistics.median(values):8.2f}  " + " ".join(f"{v:.2f}" for v in values))
    print(f"speed-up of vaelab over the pytorch/examples loop: {statistics.median(ratios):.2f}x "
          f"(per repeat: {' '.join(f'{r:.2f}' for r in ratios)})")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "benchmark": "train_speed", "examples": len(images), "threads": torch.get_num_threads(),
        "torch": torch.__version__, "platform": platform.platform(), "seconds": times,
        "speedup_median": statistics.median(ratios),
    }, indent=2))


if __name__ == "__main__":
    main()
