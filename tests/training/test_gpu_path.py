"""The GPU path checked on the CPU: the order in which a torchrun rank takes its GPU and opens
its process group, one-line errors for a GPU's out-of-memory and a GPU number the machine does
not have, the memory check with the dataset on the GPU, the first error of a failed step kept,
the epoch's clock read after the device finished, the CUDA random state restored per GPU."""

from __future__ import annotations

import fcntl
import tempfile
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import vaelab.runtime
from vaelab.cli import main
from vaelab.config import Config
from vaelab.data import InMemoryBatches
from vaelab.errors import ConfigError
from vaelab.models import build_model
from vaelab.objectives import Objective
from vaelab.runtime import out_of_memory_message, resolve_device
from vaelab.training import distributed, make_optimizer, train_epoch
from vaelab.training.checkpoint import capture_rng, restore_rng
from vaelab.training.optim import check_model_fits_memory
from vaelab.training.stepsync import DeviceSums

TOY = ["--device", "cpu", "--dataset", "toy2d", "--toy2d-train-size", "200", "--toy2d-test-size", "50",
       "--hidden", "8", "--latent-dim", "2", "--batch-size", "50", "--no-progress", "--logger", "csv"]
OOM = ("CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 79.19 GiB of which 1.50 GiB "
       "is free. Including non-PyTorch memory, this process has 77.68 GiB memory in use. Of the allocated memory "
       "75.10 GiB is allocated by PyTorch, and 1.2 GiB is reserved by PyTorch but unallocated. If reserved but "
       "unallocated memory is large try setting PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True to avoid "
       "fragmentation.  See documentation for Memory Management  (https://pytorch.org/docs/stable/notes/cuda.html)")


def test_torchrun_on_cuda_sets_the_rank_s_gpu_before_the_group_opens_and_the_first_broadcast(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.append(("set_device", str(device))))
    initialised = []
    monkeypatch.setattr(dist, "is_initialized", lambda: bool(initialised))

    def init_process_group(backend, **kwargs):
        calls.append(("init_process_group", backend, str(kwargs.get("device_id"))))
        initialised.append(True)

    monkeypatch.setattr(dist, "init_process_group", init_process_group)
    monkeypatch.setattr(dist, "new_group", lambda **kwargs: calls.append(("new_group", kwargs["backend"])) or "gloo")
    monkeypatch.setattr(dist, "get_rank", lambda *a: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda *a: 2)
    monkeypatch.setattr(dist, "get_backend", lambda *a: "nccl")
    monkeypatch.setattr(distributed.atexit, "register", lambda fn: None)

    class Stop(Exception):
        pass

    def broadcast_object_list(objects, src=0):
        calls.append(("broadcast_object_list",))
        raise Stop  # far enough: the run's name is the first object the ranks exchange

    monkeypatch.setattr(dist, "broadcast_object_list", broadcast_object_list)
    from vaelab import train

    with pytest.raises(Stop):
        train({"output_dir": str(tmp_path), "data": {"dataset": "toy2d"}, "training": {"device": "cuda"}},
              verbose=False)
    assert calls == [("set_device", "cuda:1"), ("init_process_group", "nccl", "cuda:1"), ("new_group", "gloo"),
                     ("broadcast_object_list",)]


def test_a_local_rank_beyond_the_gpus_is_one_line(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    with pytest.raises(ConfigError, match=r"local rank 3, but this machine has 2 GPU\(s\); start at most 2 processes"):
        distributed.setup(torch.device("cuda"))


def test_a_gpu_number_the_machine_does_not_have_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError) as info:
        resolve_device("cuda:2")
    assert str(info.value) == ("training.device is 'cuda:2' but this machine has 2 CUDA device(s), cuda:0 to cuda:1; "
                               "use one of them, or training.device=cuda")


def test_cuda_out_of_memory_in_a_step_is_one_line(tmp_path, monkeypatch, capsys):
    def out_of_memory(self, model, x, beta=1.0, generator=None, y=None):
        raise torch.OutOfMemoryError(OOM)

    monkeypatch.setattr(Objective, "__call__", out_of_memory)
    synced = []
    monkeypatch.setattr(DeviceSums, "sync", lambda self, position: synced.append(1))
    status = main(["train", *TOY, "--epochs", "1", "--output-dir", str(tmp_path), "--name", "oom"])
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1, err
    assert err.startswith("vaelab: error: out of GPU memory: 2.00 GiB asked for on GPU 0, 1.50 GiB free of 79.19 GiB; "
                          "use a smaller model, batch (--batch-size)")
    assert synced == []  # no read of a device that just failed


def test_the_out_of_memory_line_without_torch_s_figures_keeps_its_first_line():
    assert out_of_memory_message(torch.OutOfMemoryError("out of memory on device\nmore")).startswith(
        "out of GPU memory (out of memory on device); use a smaller model")


def test_a_failed_step_whose_check_fails_too_raises_the_first_error(monkeypatch):
    real, calls = Objective.__call__, {"n": 0}

    def failing(self, model, x, beta=1.0, generator=None, y=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(self, model, x, beta, generator, y)

    def failed_device(self, position):
        raise RuntimeError("CUDA error: unspecified launch failure (a later read of the failed device)")

    monkeypatch.setattr(Objective, "__call__", failing)
    monkeypatch.setattr(DeviceSums, "sync", failed_device)
    config = Config.from_dict({"model": {"hidden": [8], "latent_dim": 2}, "training": {"sync_every_steps": 100}})
    model = build_model(config.model, (1, 4, 4))
    batches = InMemoryBatches(torch.rand(64, 1, 4, 4), 8, shuffle=True, generator=torch.Generator().manual_seed(0))
    with pytest.raises(RuntimeError, match="an illegal memory access"):
        train_epoch(model, make_optimizer(model, config.training), batches, config.objective, config.training,
                    torch.device("cpu"), 1)


def test_the_epoch_s_seconds_include_the_wait_for_the_device_at_its_end(monkeypatch):
    real = DeviceSums.sync

    def slow_device(self, position):  # the host waits here for the device's queued work
        time.sleep(0.3)
        return real(self, position)

    monkeypatch.setattr(DeviceSums, "sync", slow_device)
    config = Config.from_dict({"model": {"hidden": [8], "latent_dim": 2}, "training": {"sync_every_steps": 100}})
    model = build_model(config.model, (1, 4, 4))
    batches = InMemoryBatches(torch.rand(16, 1, 4, 4), 8, shuffle=True, generator=torch.Generator().manual_seed(0))
    out = train_epoch(model, make_optimizer(model, config.training), batches, config.objective, config.training,
                      torch.device("cpu"), 1)
    assert out["seconds"] >= 0.3


def test_the_memory_check_counts_the_dataset_on_the_gpu_and_reserves_under_the_gpu_s_lock(monkeypatch):
    config = Config.from_dict({"model": {"hidden": [64], "latent_dim": 2}})
    cuda = torch.device("cuda", 0)
    lock = Path(tempfile.gettempdir()) / "vaelab-gpu-cuda-0.lock"  # named by the GPU's UUID on a real GPU
    reserved = []

    def reserve(device, nbytes):
        with open(lock, "a") as other:  # another process cannot take the GPU's lock meanwhile
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        reserved.append((device, nbytes))

    monkeypatch.setattr(vaelab.runtime, "reserve_device_memory", reserve)
    monkeypatch.setattr(vaelab.runtime, "available_memory", lambda device: None)  # unknown: nothing refused
    model_only = check_model_fits_memory(config.model, config.training, (1, 28, 28), cuda)
    data = 10 ** 9
    monkeypatch.setattr(vaelab.runtime, "available_memory", lambda device: model_only + data // 2)
    with pytest.raises(ConfigError, match=r"\(float32\), the dataset \(1.00 GB\), more than the"):
        check_model_fits_memory(config.model, config.training, (1, 28, 28), cuda, data_bytes=data)
    assert check_model_fits_memory(config.model, config.training, (1, 28, 28), cuda, data_bytes=data // 4) \
        == model_only + data // 4
    assert reserved == [(cuda, model_only), (cuda, model_only + data // 4)]


class _CudaGenerator:
    """Stands in for a CUDA data generator: its device is the run's GPU."""

    def __init__(self, index: int):
        self.device = torch.device("cuda", index)
        self.state = torch.zeros(16, dtype=torch.uint8)

    def get_state(self):
        return self.state

    def set_state(self, state):
        self.state = state


def test_the_cuda_random_state_is_that_of_the_run_s_gpu_whatever_gpus_the_machines_have(monkeypatch):
    states = {0: torch.full((8,), 0, dtype=torch.uint8), 3: torch.full((8,), 3, dtype=torch.uint8)}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: states[torch.device(device).index].clone())
    set_calls = []
    monkeypatch.setattr(torch.cuda, "set_rng_state",
                        lambda state, device: set_calls.append((int(state[0]), str(device))))
    tensors, meta = capture_rng(torch.Generator(), _CudaGenerator(3))  # trained on cuda:3 of a 4-GPU machine
    assert torch.equal(tensors["rng.cuda"], states[3]) and not any(k.startswith("rng.cuda.") for k in tensors)
    restore_rng(tensors, meta, torch.Generator(), _CudaGenerator(0))  # resumed on a 1-GPU machine
    assert set_calls == [(3, "cuda:0")]
    # a checkpoint of the earlier format, one state per GPU of its machine: the run's GPU number's
    old = {k: v for k, v in tensors.items() if k != "rng.cuda"}
    old.update({"rng.cuda.0": states[0], "rng.cuda.1": states[0]})
    set_calls.clear()
    restore_rng(old, meta, torch.Generator(), _CudaGenerator(1))
    assert set_calls == [(0, "cuda:1")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        restore_rng(old, meta, torch.Generator(), _CudaGenerator(5))
    assert [str(w.message).count("\n") for w in caught] == [0]
    assert "CUDA random states of 2 GPU(s), none for cuda:5" in str(caught[0].message)
    set_calls.clear()
    restore_rng(tensors, meta, torch.Generator(), None)  # resumed on the CPU: no CUDA state to set
    assert set_calls == []
