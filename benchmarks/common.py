"""Shared helpers of the benchmarks: real MNIST arrays, alternating timing, tables, JSON."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from vaelab.config import DataConfig
from vaelab.data import get_spec
from vaelab.data.datasets import read_splits

RESULTS = Path(os.environ.get("VAELAB_BENCHMARK_RESULTS") or Path(__file__).with_name("results"))
"""Where results go: ``benchmarks/results`` (``python -m benchmarks run --results-dir DIR``: DIR)."""


def mnist_train(data_dir=None, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Real MNIST training images ``(N, 28, 28)`` uint8 and labels ``(N,)`` (the first ``n``)."""
    train = read_splits(get_spec("mnist"), DataConfig(), data_dir).train
    return train.images[:n, 0], train.labels[:n]


def mnist_test(data_dir=None, n: int | None = None) -> np.ndarray:
    test = read_splits(get_spec("mnist"), DataConfig(), data_dir).test
    return test.images[:n, 0]


def alternate(contenders: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Time each contender once per round, in turn, for ``repeats`` rounds (so that a slow
    patch of the machine hits all of them): seconds per call, per contender."""
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def table(title: str, rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}


def write_json(name: str, payload: dict) -> Path:
    """``results/<name>.json``; smoke runs (``payload["quick"]``) go to ``results/quick/``
    so that they never overwrite a measurement."""
    folder = RESULTS / "quick" if payload.get("quick") else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    return path


def pythae_vae(vae):
    """pythae 0.1.2's ``VAE`` around the encoder and decoder modules of vaelab's ``vae`` (the same
    layers and weights; sigmoid outputs, its "bce" likelihood), or None when pythae is not
    installed (``pip install -e '.[bench]'``)."""
    try:
        from pythae.models import VAE as PythaeVAE, VAEConfig
        from pythae.models.base.base_utils import ModelOutput
        from pythae.models.nn import BaseDecoder, BaseEncoder
    except ImportError:
        return None

    class Encoder(BaseEncoder):
        def __init__(self):
            super().__init__()
            self.net = vae.encoder

        def forward(self, x):
            mean, log_var = self.net(x)
            return ModelOutput(embedding=mean, log_covariance=log_var)

    class Decoder(BaseDecoder):
        def __init__(self):
            super().__init__()
            self.net = vae.decoder

        def forward(self, z):
            return ModelOutput(reconstruction=torch.sigmoid(self.net(z)))

    config = VAEConfig(input_dim=tuple(vae.image_shape), latent_dim=vae.latent_dim, reconstruction_loss="bce")
    return PythaeVAE(config, encoder=Encoder(), decoder=Decoder())
