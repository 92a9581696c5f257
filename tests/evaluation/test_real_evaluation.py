"""Evaluation on real MNIST (skipped without VAELAB_DATA_DIR): short budgets, so the checks are
orderings and sanity ranges, not the published numbers (docs/evaluation.md has those)."""

import pytest
import torch

import vaelab
from vaelab.cli import main
from vaelab.config import ModelConfig
from vaelab.evaluation.fid import fid_classifier, generate_samples
from vaelab.models import build_model
from vaelab.models.classifier import load_classifier


@pytest.mark.slow
def test_real_mnist_nll_and_classifier_fid_orderings(real_data_dir, tmp_path):
    assert main(["classifier", "train", "--data-dir", str(real_data_dir), "--epochs", "1", "--train-examples",
                 "10000", "--channels", "8", "8", "16", "16"]) == 0
    classifier, info = load_classifier("mnist")
    assert info.test_accuracy > 0.8  # one short epoch; `vaelab classifier train` gets > 0.99
    assert main(["train", "--data-dir", str(real_data_dir), "--train-examples", "10000", "--eval-examples", "1000",
                 "--epochs", "3", "--latent-dim", "10", "--binarize", "dynamic", "--no-progress", "--quiet",
                 "--output-dir", str(tmp_path), "--name", "z10"]) == 0
    evaluation = vaelab.evaluate(tmp_path / "z10", k=200, examples=500, fid_samples=2000, probe_train_examples=2000,
                                 verbose=False)
    # an untrained model costs 784 log 2 = 543 nats; the IWAE estimate is below the ELBO
    assert 80 < evaluation["nll_iwae"] < evaluation["neg_elbo"] < 200
    assert evaluation["latent"]["active_units"] >= 3 and evaluation["probe"]["knn5_accuracy"] > 0.7
    samples = evaluation["samples"]
    assert samples["class_entropy_nats"] > 1.5 and samples["classifier_sha256"] == info.sha256
    # identical sets ~0; samples of an untrained decoder far worse than a trained one's
    test_images = vaelab.evaluation.run.load_dataset(
        vaelab.config.DataConfig(data_dir=str(real_data_dir))).test.images
    assert abs(fid_classifier(test_images[:2000], test_images[:2000], classifier)) < 1e-3
    torch.manual_seed(0)
    untrained = build_model(ModelConfig(latent_dim=10), (1, 28, 28))
    fid_untrained = fid_classifier(test_images, generate_samples(untrained, 2000), classifier)
    assert fid_untrained > 1.5 * samples["fid_classifier"], (fid_untrained, samples["fid_classifier"])
