"""The IWAE training bound and the objective that picks ELBO or IWAE."""

import csv
import math

import pytest
import torch

from vaelab.cli import main
from vaelab.config import Config, ModelConfig, ObjectiveConfig
from vaelab.errors import ConfigError
from vaelab.models import build_model
from vaelab.objectives import Objective, elbo_terms, iwae_terms, log_mean_exp

SHAPE = (1, 4, 4)


def tiny():
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=2, hidden=[8]), SHAPE)
    with torch.no_grad():
        model.decoder.out.weight.mul_(3.0)
    x = torch.bernoulli(torch.full((3, *SHAPE), 0.3), generator=torch.Generator().manual_seed(1))
    return model, x


def test_k1_bound_is_the_elbo_in_expectation_and_larger_k_is_tighter():
    model, x = tiny()
    with torch.no_grad():
        draws = iwae_terms(model, x.repeat(3000, 1, 1, 1), k=1, generator=torch.Generator().manual_seed(1)
                           ).neg_bound.view(3000, 3)  # 3000 independent one-sample bounds per image
        exact = elbo_terms(model, x, n_samples=20_000, generator=torch.Generator().manual_seed(0))
        stderr = draws.std(0) / math.sqrt(draws.shape[0])
        assert torch.all((draws.mean(0) - exact.neg_elbo).abs() < 5 * stderr + 0.01)
        k8 = iwae_terms(model, x.repeat(300, 1, 1, 1), k=8, generator=torch.Generator().manual_seed(2)
                        ).neg_bound.view(300, 3)
        assert torch.all(k8.mean(0) < exact.neg_elbo - 0.05)  # a tighter bound on -log p(x)


def test_beta_weighs_the_log_ratio_and_k1_gives_the_beta_elbo_in_expectation():
    model, x = tiny()
    with torch.no_grad():
        draws = iwae_terms(model, x.repeat(3000, 1, 1, 1), 1, beta=0.25, generator=torch.Generator().manual_seed(1)
                           ).neg_bound.view(3000, 3)
        exact = elbo_terms(model, x, n_samples=20_000, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(draws.mean(0), exact.recon + 0.25 * exact.kl, atol=0.15, rtol=0)


def test_iwae_loss_has_gradients_for_encoder_and_decoder():
    model, x = tiny()
    terms = iwae_terms(model, x, k=5)
    terms.loss().backward()
    assert model.encoder.heads.mean.weight.grad.abs().sum() > 0
    assert model.decoder.out.weight.grad.abs().sum() > 0
    assert terms.neg_bound.shape == terms.recon.shape == terms.kl.shape == (3,)
    with pytest.raises(ValueError, match="k >= 1"):
        iwae_terms(model, x, k=0)


def test_log_mean_exp_matches_the_naive_formula():
    values = torch.randn(6, 4)
    torch.testing.assert_close(log_mean_exp(values, 0), values.exp().mean(0).log())


def test_objective_reports_plain_terms_and_the_bound():
    model, x = tiny()
    objective = Objective(ObjectiveConfig(bound="iwae", iwae_k=4))
    terms = objective(model, x, beta=1.0, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(terms.loss, terms.extra["neg_iwae"].mean())
    same = iwae_terms(model, x, 4, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(terms.extra["neg_iwae"], same.neg_bound)
    torch.testing.assert_close(terms.recon, same.recon)
    # the ELBO objective is exactly the β-ELBO of elbo_terms for the same noise
    elbo = Objective(ObjectiveConfig(beta=0.5))(model, x, 0.5, torch.Generator().manual_seed(0))
    reference = elbo_terms(model, x, 1, torch.Generator().manual_seed(0))
    torch.testing.assert_close(elbo.loss, reference.loss(0.5))
    assert elbo.extra == {}


@pytest.mark.parametrize("objective, message", [
    ({"bound": "iwae", "free_bits": 0.5}, "free_bits applies to the ELBO"),
    ({"bound": "iwae", "n_samples": 3}, "set objective.iwae_k"),
    ({"bound": "iwae", "reconstruction": "perceptual"}, "bound iwae needs reconstruction: likelihood"),
    ({"bound": "iwea"}, "did you mean iwae?"),
    ({"iwae_k": 0}, "objective.iwae_k must be >= 1"),
])
def test_config_rejects_inconsistent_objectives(objective, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"objective": objective})


def test_training_with_the_iwae_bound_logs_it(tiny_data, tmp_path):
    root, _ = tiny_data
    status = main(["train", "--dataset", "tiny-mnist", "--data-dir", str(root), "--hidden", "16", "--batch-size",
                   "32", "--no-progress", "--quiet", "--epochs", "1", "--binarize", "dynamic", "--bound", "iwae",
                   "--iwae-k", "5", "--output-dir", str(tmp_path), "--name", "iwae"])
    assert status == 0
    rows = list(csv.DictReader((tmp_path / "iwae" / "metrics.csv").open()))
    assert "train_neg_iwae" in rows[0]
    for row in rows:  # the K=5 bound is below the ELBO estimate of the same batches
        assert float(row["train_neg_iwae"]) < float(row["train_neg_elbo"])
