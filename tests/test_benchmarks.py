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
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "run", "--quick", "--results-dir", str(tmp_path)],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "one epoch of mlp 784-400-20" in proc.stdout and "GEMM floor" in proc.stdout
    result = json.loads((tmp_path / "quick" / "train_speed.json").read_text())  # not into the checkout
    assert result["quick"] and {r["model"] for r in result["results"]} >= {"mlp 784-400-20", "conv 16-32"}
    memory = json.loads((tmp_path / "quick" / "memory.json").read_text())
    assert memory["train_status"] == 0 and memory["evaluate_status"] == 0
    assert 0 < memory["import_torch_mib"] < memory["train_mib"]
    assert {"plain in-memory loop", "stripped eager loop"} <= set(result["results"][0]["seconds"])
    assert (tmp_path / "quick" / "eval_speed.json").is_file()  # every benchmark writes where it is told


def gpu_check(*args, timeout=240):
    """``bash benchmarks/gpu_check.sh ARGS``: the process and its JSON (``--output`` in ``args``)."""
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), *args], cwd=REPO,
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
                          timeout=timeout)
    output = Path(args[args.index("--output") + 1])
    return proc, json.loads(output.read_text())


def test_gpu_check_without_cuda_says_so_exits_2_and_writes_its_json(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: benchmarks/gpu_check.sh would run the whole check")
    proc, result = gpu_check("--output", str(tmp_path / "check.json"), "--stages", "environment,train-fp32")
    assert proc.returncode == 2
    assert proc.stderr.startswith("gpu_check: no CUDA device here (torch ") and proc.stderr.count("\n") == 1
    assert result["stages"]["environment"]["status"] == "failed"
    assert result["stages"]["environment"]["error"].startswith("RuntimeError: no CUDA device here")
    assert result["stages"]["train-fp32"] == {"status": "skipped", "reason": "the environment stage did not pass"}


def processes_naming(text: str) -> list[str]:
    """Command lines of live processes that contain ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state != "Z" and entry.name != str(os.getpid()):
            found.append(cmdline)
    return found


def test_the_gpu_check_smoke_run_runs_every_stage_on_the_cpu(tmp_path):
    before = (REPO / "benchmarks" / "results" / "quick" / "gpu_check.json").stat().st_mtime_ns \
        if (REPO / "benchmarks" / "results" / "quick" / "gpu_check.json").exists() else None
    proc, result = gpu_check("--device", "cpu", "--quick", "--output", str(tmp_path / "quick.json"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    stages = result["stages"]
    assert {name: r["status"] for name, r in stages.items()} == dict.fromkeys(stages, "run"), proc.stdout
    assert all(r["seconds"] <= r["limit_seconds"] for r in stages.values())
    assert {"torch", "numpy", "safetensors", "pyyaml"} <= set(stages["environment"]["result"]["dependencies"])
    for name in ("train-fp32", "train-bf16", "train-fp16", "conv", "recipe-burda-vae", "recipe-best-1h"):
        # one read per sync_every_steps (50) and at the end of each 2-step epoch: the end
        assert stages[name]["result"]["host_syncs_per_step"] <= 0.5, name
    assert stages["ddp"]["result"]["world_size"] == 2 and stages["ddp"]["result"]["backend"] == "gloo"
    assert all(1 <= stages[f"compile-{p}"]["result"]["graphs"] <= 4 for p in ("fp32", "bf16"))
    assert stages["resume"]["result"]["exact"] is True
    assert stages["evaluate"]["result"]["nll"] > 0 and stages["evaluate"]["result"]["k"] == 20
    after = (REPO / "benchmarks" / "results" / "quick" / "gpu_check.json").stat().st_mtime_ns \
        if (REPO / "benchmarks" / "results" / "quick" / "gpu_check.json").exists() else None
    assert after == before  # nothing written into the checkout
    assert processes_naming("vaelab-gpu-check-") == []


def test_a_failing_or_hanging_gpu_check_stage_is_recorded_and_leaves_no_process(tmp_path):
    proc, result = gpu_check("--device", "cpu", "--quick", "--output", str(tmp_path / "faults.json"),
                             "--stages", "environment,train-fp32,train-bf16,evaluate",
                             "--inject-fault", "train-fp32=hang", "--time-limit", "train-fp32=4",
                             "--inject-fault", "train-bf16=raise")
    assert proc.returncode == 1, proc.stderr[-3000:]
    stages = result["stages"]
    hung, raised = stages["train-fp32"], stages["train-bf16"]
    assert hung["status"] == "failed" and hung["error"].startswith("timed out after 4 s")
    assert raised["status"] == "failed" and raised["error"] == "RuntimeError: a fault injected into train-bf16"
    assert stages["evaluate"] == {"status": "skipped", "reason": "it uses the run of train-fp32, which did not finish"}
    assert stages["train-fp16"] == {"status": "skipped", "reason": "not among --stages"}
    # the hung stage had started a process in a session of its own (as torchrun's workers are)
    sleeper = int(hung["log_tail"][0].split()[-1])
    assert not Path(f"/proc/{sleeper}").exists() or (Path(f"/proc/{sleeper}/stat").read_text()
                                                     .rsplit(")", 1)[1].split()[0] == "Z")
    assert processes_naming("vaelab-gpu-check-") == []


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


@pytest.mark.parametrize("name", ["burda-vae", "iwae-k5-1h", "burda-vae-2l", "best-1h"])
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
    if name in ("burda-vae", "burda-vae-2l"):
        assert config.objective.bound == "elbo" and config.objective.n_samples == 1
    if name in ("burda-vae-2l", "best-1h"):  # Burda et al.'s two stochastic layers: z_1 = 100 under z_2 = 50
        assert (model.lower_latents, model.upper_hidden, model.inference) == ([100], [100, 100], "bottom_up")
        from benchmarks.burda import target_row

        assert target_row(config, f"{name}.yaml") == ("vae_2_layer_k1" if name == "burda-vae-2l" else "iwae_1_layer_k50")
