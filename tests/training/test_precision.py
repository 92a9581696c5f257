"""--precision (autocast, the fp16 gradient scaler), --compile, TF32 and the CPU-only
subnormal flush."""

from __future__ import annotations

import pytest
import torch

import vaelab.runtime
from vaelab.config import Config
from vaelab.data import InMemoryBatches
from vaelab.models import build_model
from vaelab.runtime import configure_backends, flush_denormals
from vaelab.training import make_optimizer, read_checkpoint, train_epoch
from vaelab.training.runs import resume, train


def toy(tmp_path, name, **training):
    return {"name": name, "output_dir": str(tmp_path),
            "data": {"dataset": "toy2d", "toy2d_train_size": 200, "toy2d_test_size": 100},
            "model": {"hidden": [16], "latent_dim": 2},
            "training": {"epochs": 1, "batch_size": 50, "device": "cpu", "progress": False, "logger": "csv",
                         **training}}


def one_epoch(precision, scaler=None):
    config = Config.from_dict({"model": {"hidden": [32], "latent_dim": 2}, "training": {"precision": precision}})
    torch.manual_seed(0)
    model = build_model(config.model, (1, 4, 4))
    batches = InMemoryBatches((torch.rand(256, 1, 4, 4) > 0.5).float(), 32, shuffle=True,
                              generator=torch.Generator().manual_seed(0))
    return train_epoch(model, make_optimizer(model, config.training), batches, config.objective, config.training,
                       torch.device("cpu"), 1, scaler=scaler)


def test_bf16_autocast_trains_close_to_fp32():
    fp32, bf16 = one_epoch("fp32"), one_epoch("bf16")
    assert all(torch.isfinite(torch.tensor(bf16[k])) for k in ("recon", "kl", "neg_elbo"))
    assert bf16["neg_elbo"] != fp32["neg_elbo"]  # autocast really ran in bf16
    assert bf16["neg_elbo"] == pytest.approx(fp32["neg_elbo"], rel=0.02)


def test_fp16_trains_with_a_grad_scaler_whose_state_is_checkpointed_and_restored(tmp_path):
    out = one_epoch("fp16", torch.amp.GradScaler("cpu"))
    assert torch.isfinite(torch.tensor(out["neg_elbo"]))
    run = train(toy(tmp_path, "fp16", precision="fp16"), verbose=False)
    state = read_checkpoint(run.run_dir / "checkpoints" / "last.safetensors").grad_scaler_state
    assert state["scale"] > 0 and set(state) >= {"growth_factor", "_growth_tracker"}
    resumed = resume(run.run_dir, {"training.epochs": 2}, verbose=False)
    assert len(resumed.history) == 2
    fp32 = train(toy(tmp_path, "fp32"), verbose=False)
    assert read_checkpoint(fp32.run_dir / "checkpoints" / "last.safetensors").grad_scaler_state is None


def test_compile_compiles_the_encoder_and_decoder(tmp_path, monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **k: compiled.append(type(self).__name__))
    train(toy(tmp_path, "c", compile=True), verbose=False)
    assert len(compiled) == 2
    compiled.clear()
    train(toy(tmp_path, "n"), verbose=False)
    assert compiled == []


def test_tf32_is_a_cuda_switch():
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        configure_backends(torch.device("cpu"), False)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (matmul, cudnn)
        configure_backends(torch.device("cuda"), False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        configure_backends(torch.device("cuda"), True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
    assert Config.from_dict({}).training.tf32 is True


def test_the_subnormal_flush_is_cpu_only(monkeypatch):
    calls = []
    monkeypatch.setattr(vaelab.runtime, "set_flush_denormal_all_threads", lambda on: calls.append(on) or True)
    with flush_denormals(torch.device("cuda")):
        pass
    assert calls == []
    with flush_denormals(torch.device("cpu")):
        pass
    assert calls == [True, False]
