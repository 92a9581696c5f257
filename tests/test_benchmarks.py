"""The benchmarks execute (`python -m benchmarks run --quick`); no timing is asserted."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_benchmarks_run_and_write_results(real_data_dir, tmp_path):
    env = {**os.environ, "VAELAB_DATA_DIR": str(real_data_dir), "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--quick"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "one epoch of mlp 784-400-20" in proc.stdout and "GEMM floor" in proc.stdout
    result = json.loads((REPO / "benchmarks" / "results" / "quick" / "train_speed.json").read_text())
    assert result["quick"] and {r["model"] for r in result["results"]} >= {"mlp 784-400-20", "conv 16-32"}
    memory = json.loads((REPO / "benchmarks" / "results" / "quick" / "memory.json").read_text())
    assert memory["train_status"] == 0 and memory["evaluate_status"] == 0
    assert 0 < memory["import_torch_mib"] < memory["train_mib"]
    assert {"plain in-memory loop", "stripped eager loop"} <= set(result["results"][0]["seconds"])


def test_gpu_check_without_cuda_says_so_and_exits_2():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: benchmarks/gpu_check.sh would run the whole check")
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh")], cwd=REPO,
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("gpu_check: no CUDA device here (torch ") and proc.stderr.count("\n") == 1


def test_burda_smoke_runs_a_recipe_end_to_end_on_tiny_data(tiny_data, tmp_path):
    from benchmarks.burda import run_recipe
    from vaelab.training.weights import load_weights

    root, _ = tiny_data
    recipe = tmp_path / "tiny-recipe.yaml"
    recipe.write_text(
        "data: {dataset: tiny-mnist, binarize: dynamic, validation_size: 16, data_dir: " + str(root) + "}\n"
        "model: {hidden: [16], latent_dim: 3, activation: tanh}\n"
        "training: {epochs: 50, batch_size: 8, max_minutes: 60, ema_decay: 0.9, logger: csv, progress: false}\n"
        "figures: {tensorboard_images_every: 0}\n")
    result = run_recipe(recipe, tmp_path / "out" / "tiny.json", smoke=True, output_dir=tmp_path / "runs",
                        threads=1, verbose=False)
    written = json.loads((tmp_path / "out" / "tiny.json").read_text())
    assert written == json.loads(json.dumps(result))
    assert written["smoke"] and written["epochs"] == 1 and written["checkpoint"] == "last"
    assert written["test_nll"] <= written["test_neg_elbo"] + 3 * written["test_nll_stderr"]
    assert 0 <= written["active_units"] <= 3 and written["k"] == 20 and written["threads"] == 1
    assert written["paper"]["vae_1_layer_k1"] == 86.76 and written["machine"]["cpu_count"] >= 1
    assert written["target_nll"] == 86.76 and written["minus_target"] == pytest.approx(written["test_nll"] - 86.76)
    assert load_weights(tmp_path / "out" / "tiny.safetensors").model.latent_dim == 3
    assert (tmp_path / "out" / "tiny-metrics.csv").read_text().startswith("epoch,")
    from benchmarks.burda import plot_curves

    assert plot_curves([tmp_path / "out" / "tiny.json"], tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("name", ["burda-vae", "best-1h"])
def test_the_benchmark_recipes_train_the_papers_model_within_the_hour(name):
    from vaelab.config import load_config

    config = load_config(REPO / "configs" / "benchmarks" / f"{name}.yaml")
    model = config.model
    assert (model.hidden, model.latent_dim, model.activation, model.likelihood) == ([200, 200], 50, "tanh",
                                                                                     "bernoulli")
    assert (config.data.dataset, config.data.binarize) == ("mnist", "dynamic")
    from benchmarks.burda import checkpoint_to_evaluate

    assert config.training.max_minutes == 60
    if config.data.validation_size == 0:  # no validation split: the last checkpoint, never one chosen on test
        assert checkpoint_to_evaluate(config) == "last"
    else:
        assert checkpoint_to_evaluate(config) == "best"
    if name == "burda-vae":
        assert config.objective.bound == "elbo" and config.objective.n_samples == 1


def test_gpu_check_runs_its_configurations_on_the_cpu_in_a_smoke_run(tiny_data, monkeypatch):
    from benchmarks import gpu_check

    root, _ = tiny_data
    monkeypatch.setattr(gpu_check, "CONFIGURATIONS", [("fp32", False), ("bf16", False)])  # no CPU compile
    assert gpu_check.main(["--device", "cpu", "--epochs", "1", "--k", "3", "--quick", "--dataset", "tiny-mnist",
                           "--data-dir", str(root), "--batch-size", "16"]) == 0
    result = json.loads((REPO / "benchmarks" / "results" / "quick" / "gpu_check.json").read_text())
    assert [(r["precision"], r["compile"]) for r in result["runs"]] == [("fp32", False), ("bf16", False)]
    assert all(r["test_neg_elbo"] > 0 and r["is_nll_k3"] > 0 for r in result["runs"])
    assert result["skipped"] == ["2-rank DDP: 0 GPU(s) here, it needs 2"]
