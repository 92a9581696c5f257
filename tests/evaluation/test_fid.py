"""Fréchet distances: torchmetrics with our classifier's features, against a scipy reference."""

import numpy as np
import pytest
import scipy.linalg
import torch

from vaelab.config import ModelConfig
from vaelab.errors import ConfigError
from vaelab.evaluation.fid import ClassifierFeatures, fid_classifier, fid_inception, generate_samples
from vaelab.models import build_model
from vaelab.models.classifier import Classifier


def classifier():
    torch.manual_seed(0)
    return Classifier(channels=(4, 4, 8, 8), hidden=16).eval()


def reference_fid(a: np.ndarray, b: np.ndarray) -> float:
    """Heusel et al. 2017, eq. 6, independently of torchmetrics: Tr((S_a S_b)^(1/2)) as
    Tr((S_a^(1/2) S_b S_a^(1/2))^(1/2)), symmetric square roots by scipy's eigh."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = scipy.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    tr_root = np.sqrt(np.clip(scipy.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_root)


def test_matches_a_scipy_reference_on_the_same_features():
    net = classifier()
    gen = torch.Generator().manual_seed(1)
    real, fake = torch.rand(400, 1, 28, 28, generator=gen), torch.rand(300, 1, 28, 28, generator=gen) ** 3
    ours = fid_classifier(real, fake, net, batch_size=128)
    with torch.no_grad():
        expected = reference_fid(net.features(real).double().numpy(), net.features(fake).double().numpy())
    assert ours == pytest.approx(expected, rel=1e-3)
    assert ours > 0


def test_identical_sets_give_zero_and_shape_errors_are_clear():
    net = classifier()
    images = torch.rand(200, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    assert abs(fid_classifier(images, images, net)) < 1e-6
    with pytest.raises(ConfigError, match="at least 2 generated images"):
        fid_classifier(images, images[:1], net)
    with pytest.raises(ConfigError, match=r"generated images are \(1, 32, 32\) but the classifier takes \(1, 28, 28\)"):
        fid_classifier(images, torch.rand(5, 1, 32, 32), net)


def test_feature_extractor_contract():
    features = ClassifierFeatures(classifier())
    assert features.num_features == 16
    features.train()
    assert not features.training and features(torch.rand(3, 1, 28, 28)).shape == (3, 16)


def test_samples_are_decoder_means_of_prior_draws():
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=2, hidden=[8]), (1, 28, 28))
    a = generate_samples(model, 5, seed=3, batch_size=2)
    assert a.shape == (5, 1, 28, 28) and a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, generate_samples(model, 5, seed=3))
    eps = torch.randn((5, 2), generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(a, model.decode_mean(eps).detach())


def test_inception_without_weights_says_how_to_enable_it(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("VAELAB_INCEPTION_WEIGHTS", raising=False)
    images = torch.rand(4, 1, 28, 28)
    with pytest.raises(ConfigError) as info:
        fid_inception(images, images)
    message = str(info.value)
    assert "weights-inception-2015-12-05-6726825d.pth" in message and str(tmp_path / "hub") in message
    assert "inception_weights=PATH" in message and "fid=classifier" in message  # Python spelling
