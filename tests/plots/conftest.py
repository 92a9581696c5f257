"""Fixtures for the figure tests: two tiny runs trained once per session, run directories
written without training, and synthetic datasets of other shapes (28x20 gray, 32x32 colour,
2-D points) that main does not ship yet."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import make_tiny_dataset
from vaelab.config import Config
from vaelab.data import Dataset, DatasetSpec, Split
from vaelab.models import build_model
from vaelab.training.checkpoint import TrainingState, encode_checkpoint

TINY = ["--dataset", "tiny-mnist", "--hidden", "16", "--batch-size", "32", "--no-progress", "--quiet"]


def png_size(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


def png_array(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of a PNG file."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def png_bytes_array(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory) -> dict[str, Path]:
    """Two runs of 2 epochs on the tiny synthetic dataset: ``z2`` (2-D latent, beta 1) and
    ``z3`` (3-D latent, beta 0.5), trained once for the whole session. Treat them as read-only."""
    from vaelab.cli import main

    root = tmp_path_factory.mktemp("plots-data")
    make_tiny_dataset(root)
    out = tmp_path_factory.mktemp("plots-runs")
    for name, extra in (("z2", ["--latent-dim", "2"]), ("z3", ["--latent-dim", "3", "--beta", "0.5"])):
        status = main(["train", *TINY, "--data-dir", str(root), "--epochs", "2", "--output-dir", str(out),
                       "--name", name, "--tensorboard-images-every", "2", *extra])
        assert status == 0
    return {"z2": out / "z2", "z3": out / "z3", "data": root}


def history_rows(epochs: int, eval_name: str = "test", start: float = 200.0) -> list[dict[str, float]]:
    """A plausible metrics history: losses falling, KL rising then falling (nats per example)."""
    rows = []
    for e in range(1, epochs + 1):
        row = {"epoch": e}
        for split, shift in (("train", 2.0), (eval_name, 0.0)):
            recon, kl = start / e + shift, 10 + 3 * e - 0.5 * e * e
            row.update({f"{split}_recon": recon, f"{split}_kl": kl, f"{split}_neg_elbo": recon + kl})
        row["train_seconds"] = 1.5
        rows.append(row)
    return rows


def write_run_dir(run_dir: Path, config: Config, history: list[dict[str, float]], model=None,
                  image_shape=(1, 28, 28), summary: bool = True) -> Path:
    """A run directory as ``vaelab train`` writes it, made without training: config.yaml,
    metrics.csv, summary.json and (with ``model``) checkpoints/last and best."""
    import json

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(config.to_yaml())
    if history:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
        (run_dir / "metrics.csv").write_text(buffer.getvalue())
    if summary and history:
        (run_dir / "summary.json").write_text(json.dumps({"epochs": len(history), "eval_split": "test"}))
    if model is not None:
        optimizer = torch.optim.Adam(model.parameters())
        state = TrainingState(epoch=len(history), best_epoch=len(history), best_value=1.0, history=history)
        payload = encode_checkpoint(model, optimizer, state, {**config.to_dict(), "_image_shape": list(image_shape)},
                                    torch.Generator().manual_seed(0))
        (run_dir / "checkpoints").mkdir(exist_ok=True)
        for which in ("last", "best"):
            (run_dir / "checkpoints" / f"{which}.safetensors").write_bytes(payload)
    return run_dir


def synthetic_dataset(name: str, shape: tuple[int, int, int], n_test: int = 60, n_classes: int = 10,
                      kind: str = "image", seed: int = 0) -> Dataset:
    """An in-memory dataset of random images in [0, 1] (or quadrant-labelled points in [-1, 1]^2
    stored as (N, 1, 1, 2) when ``kind == "points"``)."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "points":
        points = torch.rand((n_test, 2), generator=generator) * 2 - 1
        labels = (points[:, 0] >= 0).long() + 2 * (points[:, 1] >= 0).long()
        images = points.reshape(n_test, 1, 1, 2)
        classes = ("x<0, y<0", "x>0, y<0", "x<0, y>0", "x>0, y>0")
    else:
        images = torch.rand((n_test, *shape), generator=generator)
        labels = torch.arange(n_test) % n_classes
        classes = tuple(f"class {i}" for i in range(n_classes))
    spec = DatasetSpec(name=name, files={}, image_shape=shape, classes=classes, kind=kind)
    split = Split(images, labels)
    return Dataset(spec=spec, train=split, test=split)


def tiny_model(shape, latent_dim: int, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(Config().model.__class__(latent_dim=latent_dim, hidden=[8]), shape).eval()
