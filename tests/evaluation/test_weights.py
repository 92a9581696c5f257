"""Weights-only files: `vaelab export-weights` writes a run's (averaged) weights as small
float32 safetensors with its config, and `vaelab evaluate FILE` gives the numbers of
evaluating the run itself."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

import vaelab
from vaelab.cli import main
from vaelab.errors import CheckpointError
from vaelab.training import load_model
from vaelab.training.weights import load_weights

TINY = ["--dataset", "tiny-mnist", "--hidden", "16", "--batch-size", "8", "--no-progress", "--quiet",
        "--logger", "csv", "--latent-dim", "3", "--binarize", "dynamic"]
SETTINGS = ["--k", "20", "--fid", "none", "--no-probe", "--checkpoint", "last"]


@pytest.fixture
def ema_run(tiny_data, tmp_path):
    root, _ = tiny_data
    assert main(["train", *TINY, "--data-dir", str(root), "--epochs", "2", "--ema-decay", "0.9",
                 "--output-dir", str(tmp_path / "runs"), "--name", "r"]) == 0
    return tmp_path / "runs" / "r"


def test_exported_weights_evaluate_to_the_runs_numbers(ema_run, tmp_path, capsys):
    weights = tmp_path / "export" / "tiny.safetensors"
    assert main(["export-weights", str(ema_run), "-o", str(weights)]) == 0
    assert weights.with_suffix(".yaml").is_file() and "wrote" in capsys.readouterr().out
    with safe_open(str(weights), framework="pt") as f:
        keys, metadata = list(f.keys()), f.metadata()
        assert all(f.get_tensor(k).dtype == torch.float32 for k in keys)
    assert not any(k.startswith(("optimizer", "rng", "ema", "model.")) for k in keys)  # weights only
    assert (metadata["checkpoint"], metadata["ema"], metadata["epoch"]) == ("last", "true", "2")
    # the averaged weights, which the run's own evaluation uses
    loaded = load_weights(weights).model
    for name, value in load_model(ema_run, "last").state_dict().items():
        assert torch.equal(value, loaded.state_dict()[name])

    assert main(["evaluate", str(ema_run), *SETTINGS]) == 0
    assert main(["evaluate", str(weights), *SETTINGS]) == 0  # the config stored in the file
    out = tmp_path / "with-config.json"
    assert main(["evaluate", str(weights), "--config", str(weights.with_suffix(".yaml")), "-o", str(out),
                 *SETTINGS]) == 0
    run_result = json.loads((ema_run / "evaluation.json").read_text())
    for result in (json.loads((weights.parent / "tiny.evaluation.json").read_text()), json.loads(out.read_text())):
        assert result["checkpoint"] == "weights" and result["weights_source"]["ema"] == "true"
        for key in ("neg_elbo", "recon", "kl", "nll_iwae", "nll_iwae_stderr", "examples", "binarize"):
            assert result[key] == run_result[key], key
        assert result["latent"] == run_result["latent"]


def test_python_api_and_errors(ema_run, tmp_path, capsys):
    from vaelab.training.weights import export_weights

    weights = export_weights(ema_run, tmp_path / "w.safetensors", "best")
    evaluation = vaelab.evaluate(weights, k=5, fid="none", probe=False, examples=8, verbose=False)
    assert evaluation.path == tmp_path / "w.evaluation.json" and evaluation["examples"] == 8
    with pytest.raises(CheckpointError, match="does not exist"):
        load_weights(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_weights(bad)
    assert main(["evaluate", str(ema_run), "--config", "x.yaml"]) == 2
    assert "apply to a weights file" in capsys.readouterr().err
