"""One training epoch of vaelab against references, side by side in one process, on real MNIST.

Contenders, each timed alternately (``--repeats`` rounds, median reported):

- **vaelab**: :func:`vaelab.training.train_epoch` over in-memory tensors (what `vaelab train`
  runs per epoch).
- **pytorch/examples loop**: written like pytorch/examples/vae/main.py: a per-sample Dataset
  doing what torchvision's MNIST with ``ToTensor`` does (uint8 -> PIL image -> float tensor), a
  shuffling DataLoader, sigmoid outputs with ``F.binary_cross_entropy(reduction='sum')``,
  ``loss.item()`` every step.
- **plain in-memory loop**: the same loop, model, loss and optimiser, with batches taken by
  indexing one in-memory tensor (what the examples loop costs without its data pipeline).
- **stripped eager loop**: the least an eager PyTorch step can do for this model, as a bound on
  what vaelab's per-step work costs: in-memory batches by ``index_select``, the encoder and
  decoder modules called directly, BCE on logits, the closed-form KL, fused Adam, subnormal
  floats flushed like vaelab; no checks, no running sums, no ``.item()``.
- **pythae** (optional: ``pip install -e '.[bench]'``): pythae 0.1.2's ``VAE`` with custom
  encoder/decoder classes of the same layers, its ``BaseTrainer.train_step`` (one epoch).
- **GEMM floor** (MLPs): the same matrix products, forward and backward, on random data of the
  same shapes, with nothing else (no activations, loss, sampling, optimiser or data).

Each runs with the CPU settings its authors use: vaelab's ``train_epoch`` flushes subnormal
floats to zero in every compute thread (:func:`vaelab.runtime.flush_denormals`); the references
keep torch's defaults, as pytorch/examples and pythae do.

Models: the pytorch/examples MLP 784-400-20 (batch 128), the IWAE paper's MLP 784-200-200-50
with tanh (Burda et al. 2016, batch 100), and a small conv VAE (16-32 channels, batch 128).

    python -m benchmarks.train_speed [--repeats 3] [--quick] [--data-dir DIR] [--models NAME ...]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from benchmarks.common import alternate, median, mnist_train, pythae_vae, table, write_json
from vaelab.config import Config
from vaelab.data import InMemoryBatches
from vaelab.models import build_model
from vaelab.runtime import flush_denormals, place_model
from vaelab.training import make_optimizer, train_epoch

MODELS = {
    "mlp 784-400-20": ({"model": {"hidden": [400], "latent_dim": 20}}, 128),
    "iwae mlp 784-200-200-50": ({"model": {"hidden": [200, 200], "latent_dim": 50, "activation": "tanh"}}, 100),
    "conv 16-32": ({"model": {"network": "conv", "conv_channels": [16, 32], "hidden": [256], "latent_dim": 20}}, 128),
}


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
    """pytorch/examples/vae/main.py's model, generalised to the benchmark's model: the same
    encoder/decoder modules as vaelab's (so the FLOPs are equal), sigmoid output, its loss."""

    def __init__(self, vae):
        super().__init__()
        self.encoder, self.decoder = vae.encoder, vae.decoder

    def forward(self, x):
        mu, logvar = self.encoder(x)
        z = mu + torch.randn_like(logvar) * torch.exp(0.5 * logvar)
        return torch.sigmoid(self.decoder(z)), mu, logvar


def examples_loss(recon_x, x, mu, logvar):
    bce = F.binary_cross_entropy(recon_x, x, reduction="sum")
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return bce + kld


def examples_epoch(model, optimizer, loader, n_examples: int | None = None) -> float:
    """One epoch of pytorch/examples' ``train`` over ``loader`` (pairs of images and labels)."""
    model.train()
    train_loss = 0.0
    for data, _ in loader:
        optimizer.zero_grad()
        recon_batch, mu, logvar = model(data)
        loss = examples_loss(recon_batch, data, mu, logvar)
        loss.backward()
        train_loss += loss.item()
        optimizer.step()
    return train_loss / (n_examples or len(loader.dataset))


def in_memory_epoch(model, optimizer, x: torch.Tensor, batch: int) -> float:
    """The examples loop with its data pipeline replaced by indexing one in-memory tensor with a
    random permutation (what a careful user writes first; vaelab's batching does the same)."""
    batches = ((x[index], None) for index in torch.randperm(len(x)).split(batch))
    return examples_epoch(model, optimizer, batches, len(x))


def stripped_epoch(model, optimizer, x: torch.Tensor, batch: int) -> None:
    """The least an eager step can do for a Gaussian-encoder, Bernoulli-decoder VAE (no checks,
    no metrics, no syncs), with vaelab's CPU settings: the bound vaelab's step is measured against."""
    encoder, decoder = model.encoder, model.decoder
    with flush_denormals():
        for index in torch.randperm(len(x)).split(batch):
            xb = x.index_select(0, index)
            mu, logvar = encoder(xb)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            recon = F.binary_cross_entropy_with_logits(decoder(z).view_as(xb), xb, reduction="sum")
            kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
            loss = (recon + kl) / xb.shape[0]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def linear_shapes(model) -> list[tuple[int, int]]:
    """(in, out) of every linear layer in forward order (the two posterior heads as one)."""
    enc = [(m.in_features, m.out_features) for m in model.encoder.body if isinstance(m, nn.Linear)]
    heads = model.encoder.heads
    dec = [(m.in_features, m.out_features) for m in model.decoder.body if isinstance(m, nn.Linear)]
    return [*enc, (heads.mean.in_features, 2 * heads.mean.out_features), *dec,
            (model.decoder.out.in_features, model.decoder.out.out_features)]


def gemm_floor(shapes: list[tuple[int, int]], batch: int, n_examples: int) -> float:
    """Seconds for one epoch's matrix products alone: per layer the forward ``a @ W`` and the
    backward ``a^T @ g`` (weight gradient) and ``g @ W^T`` (input gradient, not for the first
    layer, whose input is data), on random tensors of the real shapes."""
    steps = math.ceil(n_examples / batch)
    tensors = [(torch.randn(batch, i), torch.randn(i, o), torch.randn(batch, o)) for i, o in shapes]
    start = time.perf_counter()
    for _ in range(steps):
        for k, (a, w, g) in enumerate(tensors):
            a @ w
            a.t() @ g
            if k:
                g @ w.t()
    return time.perf_counter() - start


def pythae_trainer(vae, images: np.ndarray, batch: int, workdir: str):
    """pythae's VAE and BaseTrainer around the same encoder/decoder layers, or None if pythae is
    not installed."""
    model = pythae_vae(vae)
    if model is None:
        return None
    import logging

    from pythae.data.datasets import BaseDataset
    from pythae.trainers import BaseTrainer, BaseTrainerConfig

    trainer_config = BaseTrainerConfig(output_dir=workdir, num_epochs=1, learning_rate=1e-3,
                                       per_device_train_batch_size=batch, no_cuda=True)
    x = torch.from_numpy(images.astype(np.float32) / 255).unsqueeze(1)
    data = BaseDataset(x, torch.zeros(len(x)))  # pythae's in-memory dataset (per-sample __getitem__)
    logging.getLogger("pythae").setLevel(logging.WARNING)
    trainer = BaseTrainer(model, train_dataset=data, training_config=trainer_config)
    trainer.prepare_training()
    return trainer


def bench_model(name: str, images: np.ndarray, labels: np.ndarray, repeats: int, with_pythae: bool) -> dict:
    values, batch = MODELS[name]
    config = Config.from_dict(values)
    device = torch.device("cpu")

    torch.manual_seed(1)
    ours = place_model(build_model(config.model, (1, 28, 28)), device)  # as `vaelab train` places it
    optimizer = make_optimizer(ours, config.training)
    x = torch.from_numpy(images.astype(np.float32) / 255).unsqueeze(1)
    batches = InMemoryBatches(x, batch, shuffle=True, generator=torch.Generator().manual_seed(1))

    torch.manual_seed(1)
    reference = ExamplesVAE(build_model(config.model, (1, 28, 28)))
    reference_opt = torch.optim.Adam(reference.parameters(), lr=1e-3)
    loader = DataLoader(ExamplesStyleMNIST(images, labels), batch_size=batch, shuffle=True)
    torch.manual_seed(1)
    in_memory = ExamplesVAE(build_model(config.model, (1, 28, 28)))
    in_memory_opt = torch.optim.Adam(in_memory.parameters(), lr=1e-3)

    torch.manual_seed(1)
    stripped = place_model(build_model(config.model, (1, 28, 28)), device)
    stripped_opt = make_optimizer(stripped, config.training)

    contenders = {
        "vaelab": lambda: train_epoch(ours, optimizer, batches, config.objective, config.training, device, 1),
        "pytorch/examples loop": lambda: examples_epoch(reference, reference_opt, loader),
        "plain in-memory loop": lambda: in_memory_epoch(in_memory, in_memory_opt, x, batch),
        "stripped eager loop": lambda: stripped_epoch(stripped, stripped_opt, x, batch),
    }
    workdir = tempfile.mkdtemp()
    if with_pythae:
        torch.manual_seed(1)
        trainer = pythae_trainer(build_model(config.model, (1, 28, 28)), images, batch, workdir)
        if trainer is not None:
            contenders["pythae 0.1.2"] = lambda: trainer.train_step(1)
    if config.model.network == "mlp":
        shapes = linear_shapes(ours)
        contenders["GEMM floor"] = lambda: gemm_floor(shapes, batch, len(images))
    # each contender as its authors run it: vaelab's train_epoch flushes subnormal floats itself;
    # pytorch/examples and pythae keep torch's defaults
    times = alternate(contenders, repeats)
    ours_s = median(times["vaelab"])
    return {"model": name, "batch": batch, "examples": len(images),
            "seconds": {k: median(v) for k, v in times.items()}, "all": times,
            "ratio_to_vaelab": {k: median(v) / ours_s for k, v in times.items()}}


def run(quick: bool = False, repeats: int = 3, data_dir=None, models=None) -> list[dict]:
    n = 2000 if quick else None
    images, labels = mnist_train(data_dir, n)
    results = []
    for name in models or MODELS:
        result = bench_model(name, images, labels, 1 if quick else repeats, with_pythae=name.startswith("mlp"))
        results.append(result)
        rows = [[k, f"{v:.2f}", f"{result['ratio_to_vaelab'][k]:.2f}x",
                 " ".join(f"{t:.2f}" for t in result["all"][k])] for k, v in result["seconds"].items()]
        print(table(f"\none epoch of {name}, batch {result['batch']}, {result['examples']} MNIST images "
                    f"({torch.get_num_threads()} threads, median of {len(result['all']['vaelab'])})",
                    rows, ["loop", "s/epoch", "vs vaelab", "runs"]))
    write_json("train_speed" if models is None else "train_speed_" + "_".join(m.split()[0] for m in models),
               {"quick": quick, "results": results})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 images, one round: a smoke run")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=None, help="default: all")
    args = parser.parse_args()
    run(args.quick, args.repeats, args.data_dir, args.models)


if __name__ == "__main__":
    main()
