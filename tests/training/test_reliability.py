"""Faults and interruptions: exact resume after SIGKILL, SIGTERM/SIGINT, disk full, non-finite
losses and gradients, run-directory locks, tampered checkpoints. See docs/reliability.md."""

from __future__ import annotations

import csv
import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import vaelab.io
from tests.conftest import make_tiny_dataset
from vaelab.cli import main
from vaelab.config import Config
from vaelab.data import InMemoryBatches
from vaelab.errors import CheckpointError, TrainingError
from vaelab.models import build_model
from vaelab.training import make_optimizer, read_checkpoint, train_epoch

REPO = Path(__file__).resolve().parents[2]
TINY = ["--dataset", "tiny-mnist", "--hidden", "16", "--batch-size", "8", "--no-progress",
        "--binarize", "dynamic", "--latent-dim", "2", "--logger", "csv", "--no-draw-at-end"]


def metrics(run_dir: Path) -> list[dict[str, str]]:
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    for row in rows:
        row.pop("train_seconds")
    return rows


def child(data_root: Path, args: list[str]) -> subprocess.Popen:
    """`vaelab` in a child process, with the tiny dataset registered."""
    code = ("import sys; from pathlib import Path; from tests.conftest import make_tiny_dataset; "
            "make_tiny_dataset(Path(sys.argv[1])); from vaelab.cli import main; sys.exit(main(sys.argv[2:]))")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src") + os.pathsep + str(REPO)}
    return subprocess.Popen([sys.executable, "-c", code, str(data_root), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("model", [pytest.param([], id="one-layer"), pytest.param(
    ["--lower-latents", "4", "--upper-hidden", "8"], id="two-layers")])
def test_sigkill_at_a_random_point_then_resume_gives_identical_metrics(tmp_path, model):
    root = tmp_path / "data"
    make_tiny_dataset(root)
    common = [*TINY, *model, "--data-dir", str(root), "--output-dir", str(tmp_path), "--epochs", "6",
              "--checkpoint-every-steps", "2"]
    assert main(["train", *common, "--name", "straight"]) == 0
    proc = child(root, ["train", *common, "--name", "killed"])
    wait_for(tmp_path / "killed" / "checkpoints" / "last.safetensors", proc)
    time.sleep(random.Random().uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (tmp_path / "killed" / ".lock").exists()  # left behind by the killed process, not held
    assert main(["train", "--resume", str(tmp_path / "killed")]) == 0
    assert metrics(tmp_path / "killed") == metrics(tmp_path / "straight")
    assert len(metrics(tmp_path / "killed")) == 6


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_finishes_the_step_checkpoints_and_says_how_to_resume(tmp_path, sig):
    root = tmp_path / "data"
    make_tiny_dataset(root)
    common = [*TINY, "--data-dir", str(root), "--output-dir", str(tmp_path), "--epochs", "40"]
    proc = child(root, ["train", *common, "--name", "stopped"])
    wait_for(tmp_path / "stopped" / "metrics.csv", proc)
    time.sleep(0.2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"stopped by {sig.name}" in err and "continue with `vaelab train --resume" in err
    assert "Traceback" not in err
    checkpoint = read_checkpoint(tmp_path / "stopped" / "checkpoints" / "last.safetensors")
    assert checkpoint.training_state.epoch < 40
    assert (tmp_path / "stopped" / ".lock").read_text() == ""  # released: no owner recorded
    assert main(["train", "--resume", str(tmp_path / "stopped")]) == 0
    assert main(["train", *common, "--name", "straight"]) == 0
    assert metrics(tmp_path / "stopped") == metrics(tmp_path / "straight")


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(tiny_data, tmp_path, monkeypatch, capsys):
    root, _ = tiny_data
    args = ["train", *TINY, "--data-dir", str(root), "--output-dir", str(tmp_path), "--name", "full"]
    assert main([*args, "--epochs", "1"]) == 0
    last = tmp_path / "full" / "checkpoints" / "last.safetensors"
    before = last.read_bytes()
    real_fsync = os.fsync

    def fsync(fd):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp") and ".last.safetensors" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_fsync(fd)

    monkeypatch.setattr(vaelab.io.os, "fsync", fsync)
    assert main(["train", "--resume", str(tmp_path / "full"), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    assert f"vaelab: error: disk full while writing {last}; previous checkpoint kept at {last}" in err
    assert last.read_bytes() == before
    assert not list(last.parent.glob("*.tmp"))


def nonfinite_setup(tmp_path, **training):
    config = Config.from_dict({"model": {"hidden": [8], "latent_dim": 2}, "training": training})
    model = build_model(config.model, (1, 4, 4))
    batches = InMemoryBatches(torch.rand(32, 1, 4, 4), 8)
    return config, model, make_optimizer(model, config.training), batches


def test_nonfinite_gradient_names_the_parameter(tmp_path):
    config, model, opt, batches = nonfinite_setup(tmp_path)
    model.decoder.out.weight.register_hook(lambda g: g * float("nan"))
    with pytest.raises(TrainingError, match=r"epoch 1, step 1: the gradient of decoder.out.weight is not finite; "
                                            r"training stopped. Try a lower training.learning_rate, gradient clipping"):
        train_epoch(model, opt, batches, config.objective, config.training, torch.device("cpu"), 1)


def test_nonfinite_loss_names_the_term_and_skip_mode_has_a_limit(tmp_path, monkeypatch):
    from vaelab.objectives import Objective

    real = Objective.__call__
    calls = {"n": 0}

    def poisoned(self, model, x, beta=1.0, generator=None):
        calls["n"] += 1
        terms = real(self, model, x, beta, generator)
        return terms._replace(kl=terms.kl * float("inf")) if calls["n"] in (2, 3) else terms

    monkeypatch.setattr(Objective, "__call__", poisoned)
    config, model, opt, batches = nonfinite_setup(tmp_path)
    with pytest.raises(TrainingError, match=r"epoch 1, step 2: the KL term \(inf\) is not finite"):
        train_epoch(model, opt, batches, config.objective, config.training, torch.device("cpu"), 1)
    calls["n"] = 0
    config, model, opt, batches = nonfinite_setup(tmp_path, nonfinite="skip", max_skipped_steps=2)
    with pytest.warns(UserWarning, match="step skipped"):
        out = train_epoch(model, opt, batches, config.objective, config.training, torch.device("cpu"), 1)
    assert torch.isfinite(torch.tensor(out["neg_elbo"]))
    calls["n"] = 0
    config, model, opt, batches = nonfinite_setup(tmp_path, nonfinite="skip", max_skipped_steps=1)
    with pytest.warns(UserWarning), pytest.raises(TrainingError, match="after 1 skipped steps"):
        train_epoch(model, opt, batches, config.objective, config.training, torch.device("cpu"), 1)


def test_nonfinite_loss_in_a_run_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch, capsys):
    root, _ = tiny_data
    args = ["train", *TINY, "--data-dir", str(root), "--output-dir", str(tmp_path), "--name", "nan"]
    assert main([*args, "--epochs", "1"]) == 0
    from vaelab.objectives import Objective

    real = Objective.__call__
    monkeypatch.setattr(Objective, "__call__",
                        lambda *a, **k: real(*a, **k)._replace(recon=torch.full((a[2].shape[0],), float("nan"))))
    assert main(["train", "--resume", str(tmp_path / "nan"), "--epochs", "2"]) == 2
    err = capsys.readouterr().err
    last = tmp_path / "nan" / "checkpoints" / "last.safetensors"
    assert "epoch 2, step 1: the reconstruction NLL (nan) is not finite" in err
    assert f"The last good checkpoint is kept: {last}" in err
    assert read_checkpoint(last).training_state.epoch == 1


def test_tampered_checkpoints_are_rejected(tiny_data, tmp_path):
    root, _ = tiny_data
    assert main(["train", *TINY, "--data-dir", str(root), "--output-dir", str(tmp_path), "--name", "t",
                 "--epochs", "1"]) == 0
    good = (tmp_path / "t" / "checkpoints" / "last.safetensors").read_bytes()
    assert good[8:9] == b"{"
    for i, damaged in enumerate([good[: len(good) // 2], good[:8] + b"[" + good[9:],
                                 good.replace(b"vaelab-checkpoint-1", b"vaelab-checkpoint-9"),
                                 good.replace(b'\\"epoch\\"', b'\\"epoxh\\"', 1)]):
        assert damaged != good
        path = tmp_path / f"bad{i}.safetensors"
        path.write_bytes(damaged)
        with pytest.raises(CheckpointError):
            read_checkpoint(path)


def test_conv_run_resumes_exactly_with_channels_last_weights(tiny_data, tmp_path):
    # on the CPU conv weights are channels-last; the checkpoint stores them (and Adam's moments)
    # contiguous, and fused Adam walks weight and moments as the same flat memory: the resumed
    # run must still compute the same numbers as an uninterrupted one
    root, _ = tiny_data
    conv = [*TINY, "--network", "conv", "--conv-channels", "4", "8", "--data-dir", str(root),
            "--output-dir", str(tmp_path)]
    assert main(["train", *conv, "--epochs", "3", "--name", "straight"]) == 0
    assert main(["train", *conv, "--epochs", "1", "--name", "resumed"]) == 0
    assert main(["train", "--resume", str(tmp_path / "resumed"), "--epochs", "3"]) == 0
    assert metrics(tmp_path / "resumed") == metrics(tmp_path / "straight")
