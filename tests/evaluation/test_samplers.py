"""Samplers after training: the prior and the ex-post GMM (Ghosh et al. 2020), `vaelab sample`
and `vaelab evaluate --sampler gmm`."""

import json

import numpy as np
import pytest
import torch

from vaelab.cli import main
from vaelab.config import ModelConfig
from vaelab.evaluation.samplers import GMMSampler, draw_latents
from vaelab.models import build_model

TINY = ["--dataset", "tiny-mnist", "--hidden", "16", "--batch-size", "32", "--no-progress", "--quiet"]


def test_gmm_sampler_recovers_a_two_component_mixture_and_follows_its_seed():
    rng = np.random.default_rng(0)
    latents = np.concatenate([rng.normal(-4, 0.5, (3000, 2)), rng.normal(4, 0.5, (1000, 2))])
    sampler = GMMSampler(components=2, seed=0).fit(latents)
    means = sorted(sampler.mixture.means_[:, 0])
    assert means == pytest.approx([-4, 4], abs=0.05)
    z = sampler.sample(8000)
    assert z.shape == (8000, 2) and z.dtype == torch.float32
    assert (z[:, 0] > 0).float().mean().item() == pytest.approx(0.25, abs=0.02)  # the fitted weight
    assert torch.equal(z, sampler.sample(8000)) and not torch.equal(z, sampler.sample(8000, seed=1))
    assert not torch.equal(z[:4000].sort(0).values, z[:4000])  # drawn in random order, not by component
    with pytest.raises(ValueError, match="at least 2 latents"):
        GMMSampler(components=2).fit(latents[:1])


def test_prior_sampler_is_the_model_prior_with_its_seed():
    model = build_model(ModelConfig(latent_dim=3, hidden=[8], prior="mog", mog_components=4), (1, 4, 4))
    z = draw_latents(model, "prior", 10, seed=3)
    assert torch.equal(z, model.sample_latents(10, torch.Generator().manual_seed(3)))
    with pytest.raises(ValueError, match="needs the training images"):
        draw_latents(model, "gmm", 10)


def test_sample_command_writes_png_and_npy_for_both_samplers(tiny_data, tmp_path, capsys):
    root, _ = tiny_data
    runs = tmp_path / "runs"
    assert main(["train", *TINY, "--data-dir", str(root), "--epochs", "1", "--latent-dim", "3",
                 "--output-dir", str(runs), "--name", "r"]) == 0
    run_dir = runs / "r"
    assert main(["sample", str(run_dir), "--n", "9", "--npy"]) == 0
    assert (run_dir / "samples-prior.png").read_bytes()[:4] == b"\x89PNG"
    images = np.load(run_dir / "samples-prior.npy")
    assert images.shape == (9, 1, 28, 28) and images.dtype == np.float32 and 0 <= images.min() <= images.max() <= 1
    out = tmp_path / "g.png"
    assert main(["sample", str(run_dir), "--sampler", "gmm", "--gmm-components", "3", "--n", "16", "-o", str(out),
                 "--npy", "--data-dir", str(root)]) == 0
    assert out.is_file() and np.load(tmp_path / "g.npy").shape == (16, 1, 28, 28)
    capsys.readouterr()
    assert main(["sample", str(tmp_path), "--n", "4"]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_evaluate_reports_the_gmm_fid_beside_the_prior(tiny_data, tmp_path, capsys):
    root, _ = tiny_data
    runs = tmp_path / "runs"
    assert main(["train", *TINY, "--data-dir", str(root), "--epochs", "1", "--latent-dim", "3",
                 "--output-dir", str(runs), "--name", "r"]) == 0
    assert main(["classifier", "train", "--dataset", "tiny-mnist", "--data-dir", str(root), "--epochs", "1",
                 "--channels", "2", "2", "4", "4", "--hidden", "8"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(runs / "r"), "--k", "5", "--fid-samples", "64", "--no-probe", "--sampler", "gmm",
                 "--gmm-components", "2"]) == 0
    assert "fid_classifier, gmm sampler" in capsys.readouterr().out
    samples = json.loads((runs / "r" / "evaluation.json").read_text())["samples"]
    assert samples["fid_classifier"] >= 0 and samples["gmm"]["fid_classifier"] >= 0
    assert samples["gmm"]["components"] == 2 and sum(samples["gmm"]["class_histogram"]) == 64
