"""--precision (autocast, the fp16 gradient scaler), --compile, TF32 and the CPU-only
subnormal flush."""

from __future__ import annotations

import pytest
import torch

import vaelab.runtime
from vaelab import resume, train
from vaelab.config import Config
from vaelab.data import InMemoryBatches
from vaelab.models import build_model
from vaelab.models.vae import reparameterize
from vaelab.objectives.elbo import kl_estimate
from vaelab.runtime import configure_backends, flush_denormals
from vaelab.training import make_optimizer, read_checkpoint, train_epoch


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


def test_compile_really_compiles_the_training_steps_into_a_bounded_number_of_graphs(tmp_path, monkeypatch):
    import vaelab
    import vaelab.training.runs as runs
    from torch._dynamo.utils import counters

    monkeypatch.setattr(runs, "COMPILE_BACKEND", "eager")  # torch.compile's graph capture, run eagerly
    torch._dynamo.reset()
    counters.clear()
    # 210 examples in batches of 50: a smaller last batch; evaluation and the end-of-run figures
    # call the networks under inference_mode and no_grad (which compiled 8 graphs before)
    config = toy(tmp_path, "compiled", compile=True, epochs=2)
    config["data"]["toy2d_train_size"] = 210
    compiled = vaelab.train(config, verbose=False)
    graphs = counters["stats"]["unique_graphs"]
    assert 2 <= graphs <= 4, dict(counters["stats"])  # encoder and decoder: the full and the last batch
    torch._dynamo.reset()
    eager = vaelab.train({**config, "name": "eager", "training": {**config["training"], "compile": False}},
                         verbose=False)
    for a, b in zip(compiled.history, eager.history, strict=True):
        assert {k: v for k, v in a.items() if k != "train_seconds"} == pytest.approx(
            {k: v for k, v in b.items() if k != "train_seconds"}, rel=1e-6)


def test_the_networks_hand_float32_to_the_distributions_under_autocast():
    config = Config.from_dict({"model": {"hidden": [32], "latent_dim": 2, "likelihood": "gaussian",
                                         "learn_scale": "pixel"}})
    model = build_model(config.model, (1, 4, 4))
    x = torch.rand(8, 1, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.encoder(x).mean.dtype == torch.bfloat16  # the networks compute in bf16
        q = model.posterior(x)
        z = reparameterize(q, 3)
        params = model.decode(z)
        log_px = model.likelihood.log_prob(x, params)
        kl, _ = kl_estimate(q, model.prior_distribution(), z)
    for name, value in {"loc": q.base_dist.loc, "scale": q.base_dist.scale, "z": z, "params": params,
                        "log_px": log_px, "kl": kl}.items():
        assert value.dtype == torch.float32, name


def test_tf32_is_a_cuda_switch():
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    deterministic, benchmark = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    try:
        configure_backends(torch.device("cpu"), False)
        assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == (matmul, cudnn)
        configure_backends(torch.device("cuda"), False)
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        configure_backends(torch.device("cuda"), True)
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        # conv VAEs resume exactly: deterministic cuDNN algorithms, no autotuning
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = deterministic, benchmark
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
