"""One run on two processes: torchrun with the gloo backend on the CPU
(vaelab.training.distributed). Each test starts torchrun, so they take seconds each."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from tests.conftest import REAL_DATA_DIR
from vaelab.training import read_checkpoint

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
pytestmark = [pytest.mark.distributed,
              pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                 reason="torch.distributed with gloo is needed to start ranks")]
TOY = ["--device", "cpu", "--dataset", "toy2d", "--toy2d-train-size", "400", "--toy2d-test-size", "100",
       "--hidden", "16", "--latent-dim", "2", "--batch-size", "40", "--no-progress", "--logger", "csv",
       "--no-draw-at-end", "--sync-every-steps", "4"]


def env():
    paths = [str(REPO / "src"), str(REPO), os.environ.get("PYTHONPATH", "")]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p), "OMP_NUM_THREADS": "1"}


def torchrun(*args, timeout=180, nproc=2):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), *args]
    return subprocess.run(command, env=env(), capture_output=True, text=True, timeout=timeout, cwd=REPO)


def rows(run_dir):
    with open(Path(run_dir) / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items() if k != "train_seconds"} for row in csv.DictReader(f)]


MNIST_SLICE = ["--device", "cpu", "--dataset", "mnist", "--train-examples", "2000", "--eval-examples", "500",
               "--binarize", "dynamic", "--hidden", "32", "--latent-dim", "4", "--batch-size", "100", "--no-progress",
               "--logger", "csv", "--no-draw-at-end", "--data-dir", str(REAL_DATA_DIR)]
MNIST_PRESENT = bool(REAL_DATA_DIR) and (Path(str(REAL_DATA_DIR)) / "mnist").is_dir()


@pytest.mark.parametrize("data", [pytest.param(TOY, id="toy2d"), pytest.param(
    [*TOY, "--lower-latents", "3", "--upper-hidden", "8", "--inference", "ladder"], id="toy2d-two-layers"), pytest.param(
    MNIST_SLICE, id="mnist-2000", marks=pytest.mark.skipif(not MNIST_PRESENT, reason="needs MNIST in $VAELAB_DATA_DIR"))])
def test_torchrun_trains_one_run_written_by_rank_0(tmp_path, data):
    done = torchrun("-m", "vaelab", "train", *data, "--epochs", "2", "--output-dir", str(tmp_path), "--name", "toy")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]
    assert done.stdout.count("epoch   2/2") == 1  # one console: rank 0's
    assert len(rows(tmp_path / "toy")) == 2
    if "--lower-latents" in data:  # a hierarchical VAE's KL per layer, summed over both ranks' examples
        row = rows(tmp_path / "toy")[-1]
        assert row["test_kl_1"] + row["test_kl_2"] == pytest.approx(row["test_kl"], rel=1e-6, abs=1e-6)
    environment = json.loads((tmp_path / "toy" / "environment.json").read_text())
    assert (environment["world_size"], environment["distributed_backend"]) == (2, "gloo")
    checkpoint = read_checkpoint(tmp_path / "toy" / "checkpoints" / "last.safetensors")
    assert {"rng.rank0.torch", "rng.rank1.torch"} <= set(checkpoint.rng_tensors)
    assert not torch.equal(checkpoint.rng_tensors["rng.rank0.torch"], checkpoint.rng_tensors["rng.rank1.torch"])


def test_two_ranks_equal_one_process_with_the_same_global_batch_and_noise(tmp_path):
    worker = str(HERE / "ddp_worker.py")
    done = torchrun(worker, str(tmp_path), "two", "2", "zero-noise")
    assert done.returncode == 0, done.stderr[-3000:]
    one = subprocess.run([sys.executable, worker, str(tmp_path), "one", "2", "zero-noise"], env=env(),
                         capture_output=True, text=True, timeout=180)
    assert one.returncode == 0, one.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / f"two-params-rank{r}.pt") for r in (0, 1))
    single = torch.load(tmp_path / "one-params-rank0.pt")
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name  # DDP keeps the ranks identical
        torch.testing.assert_close(rank0[name], single[name], rtol=1e-4, atol=1e-5)
    for a, b in zip(rows(tmp_path / "two"), rows(tmp_path / "one"), strict=True):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-6)


def test_each_rank_evaluates_its_exact_part_of_the_test_set_and_the_sums_add_to_one_process_s(tmp_path):
    worker = str(HERE / "ddp_worker.py")
    done = torchrun(worker, str(tmp_path), "two", "2", "zero-noise", "test-size=101")
    assert done.returncode == 0, done.stderr[-3000:]
    one = subprocess.run([sys.executable, worker, str(tmp_path), "one", "2", "zero-noise", "test-size=101"],
                         env=env(), capture_output=True, text=True, timeout=180)
    assert one.returncode == 0, one.stderr[-3000:]
    evaluated = [(tmp_path / f"two-evaluated-rank{r}.txt").read_text() for r in (0, 1)]
    assert evaluated == ["51 51", "50 50"]  # no example padded or counted twice
    assert (tmp_path / "one-evaluated-rank0.txt").read_text() == "101 101"
    for a, b in zip(rows(tmp_path / "two"), rows(tmp_path / "one"), strict=True):
        assert {k: v for k, v in a.items() if k.startswith("test_")} == pytest.approx(
            {k: v for k, v in b.items() if k.startswith("test_")}, rel=1e-6)


def test_resume_with_the_same_world_size_reproduces_the_metrics(tmp_path):
    args = ["-m", "vaelab", "train", *TOY, "--output-dir", str(tmp_path)]
    assert torchrun(*args, "--epochs", "2", "--name", "straight").returncode == 0
    assert torchrun(*args, "--epochs", "1", "--name", "resumed").returncode == 0
    done = torchrun("-m", "vaelab", "train", "--resume", str(tmp_path / "resumed"), "--epochs", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert rows(tmp_path / "resumed") == rows(tmp_path / "straight")


def test_a_rank_killed_mid_epoch_resumes_to_the_uninterrupted_metrics(tmp_path):
    worker = str(HERE / "ddp_worker.py")
    assert torchrun(worker, str(tmp_path), "straight", "2", "every=2").returncode == 0
    killed = torchrun(worker, str(tmp_path), "killed", "2", "every=2", "die-rank=1,step=17")  # epoch 2, step 7
    assert killed.returncode != 0
    assert read_checkpoint(tmp_path / "killed" / "checkpoints" / "last.safetensors").training_state.position.step == 6
    done = torchrun("-m", "vaelab", "train", "--resume", str(tmp_path / "killed"))
    assert done.returncode == 0, done.stderr[-3000:]
    for a, b in zip(rows(tmp_path / "killed"), rows(tmp_path / "straight"), strict=True):
        assert a == pytest.approx(b, rel=1e-9)  # the sums of the ranks add in another order after the resume


def test_sigterm_to_one_rank_stops_both_at_the_next_sync_with_a_checkpoint(tmp_path):
    done = torchrun(str(HERE / "ddp_worker.py"), str(tmp_path), "term", "2", "term-rank=1,step=6", timeout=120)
    assert done.returncode != 0
    assert "stopped by SIGTERM at epoch 1, step 8" in done.stderr  # rank 1's message; sync_every_steps 4
    assert "stopped by a signal to another rank at epoch 1, step 8" in done.stderr  # rank 0's
    assert read_checkpoint(tmp_path / "term" / "checkpoints" / "last.safetensors").training_state.position.step == 8


def test_a_nan_on_one_rank_stops_both(tmp_path):
    done = torchrun(str(HERE / "ddp_worker.py"), str(tmp_path), "nan", "2", "nan-rank=1,step=3", timeout=120)
    assert done.returncode != 0
    assert "epoch 1, step 3: the reconstruction NLL (nan) is not finite" in done.stderr
    assert not (tmp_path / "nan" / "summary.json").exists()
