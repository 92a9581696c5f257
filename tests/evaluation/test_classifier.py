"""The dataset classifier: training on tiny data, the checksummed cache, loading errors."""

import json
import math

import pytest
import torch

from vaelab.cli import main
from vaelab.data import cache_dir
from vaelab.errors import CheckpointError, ConfigError
from vaelab.evaluation.classifier import class_histogram, train_classifier
from vaelab.models.classifier import Classifier, classifier_paths, load_classifier

TINY_CLASSIFIER = ["--dataset", "tiny-mnist", "--epochs", "1", "--channels", "2", "2", "4", "4", "--hidden", "8"]


@pytest.fixture
def tiny_classifier(tiny_data):
    root, _ = tiny_data
    assert main(["classifier", "train", *TINY_CLASSIFIER, "--data-dir", str(root)]) == 0
    return root


def test_train_caches_weights_with_checksum_and_config(tiny_classifier, capsys):
    weights, sidecar = classifier_paths("tiny-mnist")
    assert weights.parent == cache_dir() / "classifiers"
    record = json.loads(sidecar.read_text())
    import hashlib

    assert record["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert record["config"]["channels"] == [2, 2, 4, 4] and record["config"]["epochs"] == 1
    assert 0 <= record["test_accuracy"] <= 1 and set(record["data_sha256"]) >= {"train_images", "test_labels"}
    net, info = load_classifier("tiny-mnist")
    assert not net.training and not any(p.requires_grad for p in net.parameters())
    assert net(torch.rand(3, 1, 28, 28)).shape == (3, 10) and net.features(torch.rand(3, 1, 28, 28)).shape == (3, 8)
    assert info.sha256 == record["sha256"]
    # a second call reuses the cache instead of training again
    capsys.readouterr()
    assert main(["classifier", "train", *TINY_CLASSIFIER, "--data-dir", str(tiny_classifier)]) == 0
    assert "already cached" in capsys.readouterr().out


def test_corrupt_or_missing_classifier_is_a_clear_error(tiny_classifier):
    weights, _ = classifier_paths("tiny-mnist")
    weights.write_bytes(weights.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match=r"checksum mismatch .*`vaelab classifier train --dataset tiny-mnist --force`"):
        load_classifier("tiny-mnist")
    with pytest.raises(CheckpointError, match=r"no fashion-mnist classifier in .*; train one with "
                                              r"`vaelab classifier train --dataset fashion-mnist`"):
        load_classifier("fashion-mnist")


def test_feature_maps_by_name():
    net = Classifier(channels=(2, 3, 4, 5), hidden=6)
    maps = net.feature_maps(torch.rand(2, 1, 28, 28), ["relu2", "relu4"])
    assert maps["relu2"].shape == (2, 3, 28, 28) and maps["relu4"].shape == (2, 5, 14, 14)
    torch.testing.assert_close(net.feature_maps(torch.ones(1, 1, 28, 28), ["features"])["features"],
                               net.features(torch.ones(1, 1, 28, 28)))
    with pytest.raises(ConfigError, match=r"unknown classifier layer 'relux' \(did you mean relu4\?\); valid layers: relu1"):
        net.feature_maps(torch.rand(1, 1, 28, 28), ["relux"])


def test_class_histogram_entropy():
    uniform = torch.eye(10).repeat(5, 1)
    counts, entropy = class_histogram(uniform)
    assert counts == [5] * 10 and entropy == pytest.approx(math.log(10))
    counts, entropy = class_histogram(torch.eye(10)[[3] * 7])
    assert counts[3] == 7 and sum(counts) == 7 and entropy == 0


def test_python_api_returns_the_cached_network(tiny_data):
    root, _ = tiny_data
    net, info = train_classifier({"dataset": "tiny-mnist", "epochs": 1, "channels": [2, 2, 4, 4], "hidden": 8,
                                  "data_dir": str(root)}, verbose=False)
    again, same = train_classifier({"dataset": "tiny-mnist", "data_dir": str(root)}, verbose=False)
    assert same.sha256 == info.sha256
