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
