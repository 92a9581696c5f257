"""The perceptual reconstruction term and the objective built on it."""

import csv

import pytest
import torch

from vaelab.cli import main
from vaelab.config import ModelConfig, ObjectiveConfig
from vaelab.errors import CheckpointError, ConfigError
from vaelab.models import build_model
from vaelab.models.classifier import Classifier
from vaelab.objectives import Objective, PerceptualDistance, build_objective, elbo_terms


def distance(layers=("relu2", "relu4")):
    torch.manual_seed(0)
    return PerceptualDistance(Classifier(channels=(2, 3, 4, 5), hidden=6, dropout=0.5), list(layers))


def test_distance_is_half_the_summed_squared_feature_difference():
    d = distance()
    x, x_hat = torch.rand(3, 1, 28, 28), torch.rand(2, 3, 1, 28, 28, requires_grad=True)
    out = d(x, x_hat)
    assert out.shape == (2, 3)
    a = d.classifier.feature_maps(x, ["relu2", "relu4"])
    b = d.classifier.feature_maps(x_hat[1].detach(), ["relu2", "relu4"])
    expected = sum(0.5 * (a[n] - b[n]).square().flatten(1).sum(1) for n in ("relu2", "relu4"))
    torch.testing.assert_close(out[1], expected)
    assert torch.all(d(x, x.unsqueeze(0)) == 0)
    out.sum().backward()
    assert x_hat.grad.abs().sum() > 0
    assert all(p.grad is None for p in d.classifier.parameters())
    d.train()
    assert not d.classifier.training  # dropout stays off


def test_perceptual_objective_reports_the_plain_likelihood_beside_it():
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=2, hidden=[8]), (1, 28, 28))
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.2))
    config = ObjectiveConfig(reconstruction="perceptual+likelihood", perceptual_weight=0.5, beta=2.0)
    terms = Objective(config, distance())(model, x, 2.0, torch.Generator().manual_seed(3))
    reference = elbo_terms(model, x, 1, torch.Generator().manual_seed(3))
    torch.testing.assert_close(terms.recon, reference.recon)  # nats of the Bernoulli likelihood
    torch.testing.assert_close(terms.kl, reference.kl)
    expected = (0.5 * terms.extra["perceptual"] + reference.recon).mean() + 2.0 * reference.kl.mean()
    torch.testing.assert_close(terms.loss, expected)
    alone = Objective(ObjectiveConfig(reconstruction="perceptual"), distance())(model, x, 1.0, torch.Generator().manual_seed(3))
    torch.testing.assert_close(alone.loss, (alone.extra["perceptual"] + alone.kl).mean())


def test_missing_classifier_or_layer_is_a_clear_error():
    with pytest.raises(CheckpointError, match="train one with `vaelab classifier train --dataset mnist`"):
        build_objective(ObjectiveConfig(reconstruction="perceptual"), "mnist")
    with pytest.raises(ConfigError, match="unknown classifier layer 'rleu2'"):
        build_objective(ObjectiveConfig(reconstruction="perceptual", perceptual_layers=["rleu2"]), "mnist")
    with pytest.raises(ValueError, match="needs a PerceptualDistance"):
        Objective(ObjectiveConfig(reconstruction="perceptual"))


def test_training_with_a_perceptual_term(tiny_data, tmp_path, capsys):
    root, _ = tiny_data
    common = ["--dataset", "tiny-mnist", "--data-dir", str(root), "--hidden", "16", "--batch-size", "32",
              "--no-progress", "--quiet", "--epochs", "1", "--output-dir", str(tmp_path)]
    assert main(["train", *common, "--reconstruction", "perceptual", "--name", "p"]) == 2
    assert "train one with `vaelab classifier train --dataset tiny-mnist`" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()
    assert main(["classifier", "train", "--dataset", "tiny-mnist", "--data-dir", str(root), "--epochs", "1",
                 "--channels", "2", "2", "4", "4", "--hidden", "8"]) == 0
    assert main(["train", *common, "--reconstruction", "perceptual+likelihood", "--perceptual-weight", "0.1",
                 "--name", "p"]) == 0
    row = next(csv.DictReader((tmp_path / "p" / "metrics.csv").open()))
    assert float(row["train_perceptual"]) > 0
    assert float(row["test_neg_elbo"]) == pytest.approx(float(row["test_recon"]) + float(row["test_kl"]))
