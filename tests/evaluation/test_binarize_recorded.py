"""A dataset whose name implies a binarisation (binarized-mnist: dynamic) is recorded as such in
the run's config and in evaluation.json, so every consumer reads the mode actually used."""

import dataclasses
import json

import yaml

from tests.conftest import make_tiny_dataset
from vaelab.cli import main
from vaelab.data import register_dataset


def test_an_implied_binarisation_is_recorded_in_the_config_and_the_evaluation(tmp_path):
    root = tmp_path / "data"
    spec = make_tiny_dataset(root)
    register_dataset(dataclasses.replace(spec, name="tiny-binarized", binarize="dynamic", folders=("tiny-mnist",)))
    assert main(["train", "--dataset", "tiny-binarized", "--data-dir", str(root), "--hidden", "16", "--latent-dim",
                 "2", "--batch-size", "32", "--epochs", "1", "--no-progress", "--output-dir", str(tmp_path),
                 "--name", "b", "--quiet"]) == 0
    run = tmp_path / "b"
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["binarize"] == "dynamic"
    assert main(["evaluate", str(run), "--k", "2", "--examples", "8", "--no-probe", "--fid", "none", "--quiet"]) == 0
    results = json.loads((run / "evaluation.json").read_text())
    assert results["binarize"] == "dynamic"
    assert "gray-level" not in json.dumps(results)
