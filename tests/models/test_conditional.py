"""The conditional VAE (Sohn et al. 2015): one-hot labels at the encoder's and decoder's inputs,
its log-likelihood is log p(x|y), its figures include a per-class sample grid."""

import json
import math

import numpy as np
import pytest
import torch

from vaelab.cli import main
from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.evaluation import example_noise, importance_log_likelihood
from vaelab.models import build_model
from vaelab.objectives import elbo_terms, log_weights
from vaelab.training import load_model


def cvae(network="mlp", **kw):
    torch.manual_seed(0)
    extra = {"conv_channels": [4], "hidden": [8]} if network == "conv" else {"hidden": [16]}
    return build_model(ModelConfig(latent_dim=2, network=network, conditional=True, **extra, **kw), (1, 4, 4),
                       num_classes=3)


@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_label_enters_encoder_and_decoder_as_one_hot(network):
    model = cvae(network).eval()
    x = torch.rand(2, 1, 4, 4)
    a, b = model.posterior(x, torch.tensor([0, 0])), model.posterior(x, torch.tensor([0, 1]))
    assert torch.equal(a.mean[0], b.mean[0]) and not torch.equal(a.mean[1], b.mean[1])
    z = torch.randn(5, 2, 2)  # (S, B, D): one label per example, broadcast over samples
    assert model.decode(z, torch.tensor([0, 2])).shape == (5, 2, 1, 4, 4)
    assert not torch.equal(model.decode(z, torch.tensor([0, 2])), model.decode(z, torch.tensor([1, 2])))
    with pytest.raises(ValueError, match="needs the labels y"):
        model.posterior(x)
    if network == "mlp":
        assert model.encoder.body[0].in_features == 16 + 3 and model.decoder.body[0].in_features == 2 + 3


def test_conditional_needs_classes_and_no_vamp_prior():
    with pytest.raises(ConfigError, match="at least 2 classes"):
        build_model(ModelConfig(conditional=True), (1, 4, 4), num_classes=1)
    from vaelab.config import Config

    with pytest.raises(ConfigError, match="pseudo-inputs have no labels"):
        Config.from_dict({"model": {"conditional": True, "prior": "vamp"}})


def test_importance_sampled_nll_is_log_p_x_given_y():
    model = cvae().eval()
    x, y = torch.rand(3, 1, 4, 4).round(), torch.tensor([2, 0, 1])
    k = 40
    ll = importance_log_likelihood(model, x, k, seed=7, labels=y)
    for n in range(3):  # the estimator by hand: log (1/K) sum_k p(x|z_k,y) p(z_k) / q(z_k|x,y)
        q = model.posterior(x[n:n + 1], y[n:n + 1])
        z = (q.base_dist.loc + q.base_dist.scale * example_noise(7, n, k, 2))[:, None]  # (K, 1, D)
        w = log_weights(model, x[n:n + 1], z, y=y[n:n + 1]).total()[:, 0]
        expected = torch.logsumexp(w.double(), 0) - math.log(k)
        assert ll.log_px[n].item() == pytest.approx(expected.item(), abs=1e-4)
    other = importance_log_likelihood(model, x, k, seed=7, labels=(y + 1) % 3)
    assert not torch.allclose(ll.log_px, other.log_px)  # the label matters
    terms = elbo_terms(model, x, 1, y=y)
    assert terms.recon.shape == (3,) and torch.isfinite(terms.neg_elbo).all()


@pytest.mark.figures
def test_cli_trains_evaluates_and_draws_per_class_samples(tiny_data, tmp_path, capsys):
    root, _ = tiny_data
    runs = tmp_path / "runs"
    args = ["--dataset", "tiny-mnist", "--data-dir", str(root), "--hidden", "16", "--latent-dim", "2",
            "--batch-size", "32", "--no-progress", "--quiet", "--conditional", "--output-dir", str(runs)]
    assert main(["train", *args, "--epochs", "1", "--name", "c"]) == 0
    figures = {p.name for p in (runs / "c" / "figures").glob("*.png")}
    assert {"class_samples.png", "samples.png", "reconstructions.png", "latent_scatter.png"} <= figures
    assert "latent_manifold.png" not in figures and "interpolations.png" not in figures
    model = load_model(runs / "c", "last")
    assert model.num_classes == 10
    assert main(["train", "--resume", str(runs / "c"), "--epochs", "2", "--quiet"]) == 0
    assert main(["classifier", "train", "--dataset", "tiny-mnist", "--data-dir", str(root), "--epochs", "1",
                 "--channels", "2", "2", "4", "4", "--hidden", "8"]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(runs / "c"), "--k", "5", "--fid-samples", "20", "--no-probe", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "log p(x|y)" in out and "sample label accuracy" in out
    samples = json.loads((runs / "c" / "evaluation.json").read_text())["samples"]
    assert 0 <= samples["label_accuracy"] <= 1 and sum(samples["class_histogram"]) == 20
    assert main(["sample", str(runs / "c"), "--n", "10", "--npy"]) == 0
    assert np.load(runs / "c" / "samples-prior.npy").shape == (10, 1, 28, 28)


def test_unlabelled_data_are_rejected_in_one_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "u.npz", x_train=rng.random((40, 4, 4)), x_test=rng.random((10, 4, 4)))
    assert main(["train", "--dataset", str(tmp_path / "u.npz"), "--conditional", "--batch-size", "10",
                 "--epochs", "1", "--output-dir", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--conditional needs labelled data" in err and err.count("\n") == 1
