"""GPU check (issue 16; ``bash benchmarks/gpu_check.sh`` runs it, under 5 minutes on one GPU).

Trains the default model (MNIST gray levels, 784-400-20, Adam 1e-3, batch 128) for 10 epochs on
CUDA in fp32 (TF32 on, the default) and bf16 autocast, each with and without ``--compile``;
evaluates the importance-sampled NLL with K = 1000 on the 10,000 test images (Burda et al. 2016)
for the two eager runs (evaluation is fp32 whatever the training precision); and with two or
more GPUs trains the same run on 2 ranks with torchrun (DDP, nccl, global batch 128). Writes
``benchmarks/results/gpu_check.json`` after each configuration: seconds per training epoch (each
epoch and the mean; the first epoch of a compiled run includes the compilation), test -ELBO,
IS-NLL and the peak GPU memory (torch's allocator, MiB).

    python -m benchmarks.gpu_check [--device cuda] [--epochs 10] [--k 1000]
    python -m benchmarks.gpu_check --device cpu --epochs 1 --k 5 --train-examples 512 --quick  # smoke test
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.common import write_json

MIB = 2 ** 20
CONFIGURATIONS = [("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True)]
"""(precision, compile) of the single-GPU runs, in the order they run."""


def _peak_memory(device: torch.device) -> dict[str, float] | None:
    if device.type != "cuda":
        return None
    return {"allocated_mib": torch.cuda.max_memory_allocated(device) / MIB,
            "reserved_mib": torch.cuda.max_memory_reserved(device) / MIB}


def _reset_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def run_config(out: str, precision: str, compile_: bool, device: torch.device, epochs: int, k: int | None,
               data: dict, batch_size: int = 128) -> dict:
    """Train one configuration (and evaluate its IS-NLL when ``k``): its row of the JSON."""
    from vaelab.evaluation.run import evaluate
    from vaelab.training import train

    name = f"{precision}{'-compile' if compile_ else ''}"
    _reset_memory(device)
    run = train({"name": name, "output_dir": out, "data": data,
                 "training": {"device": str(device), "epochs": epochs, "batch_size": batch_size, "progress": False,
                              "logger": "csv",
                              "precision": precision, "compile": compile_}}, verbose=False)
    row = {"precision": precision, "compile": compile_,
           "seconds_per_epoch": run.summary["seconds_per_epoch"],
           "seconds_per_epoch_after_first": (sum(r["train_seconds"] for r in run.history[1:]) / (len(run.history) - 1)
                                             if len(run.history) > 1 else None),
           "epoch_seconds": [r["train_seconds"] for r in run.history],
           "test_neg_elbo": run.summary["final"]["neg_elbo"],
           "gpu_memory_peak_train": _peak_memory(device)}
    if k:
        _reset_memory(device)
        ev = evaluate(run.run_dir, {"k": k, "probe": False, "fid": "none", "device": str(device)}, verbose=False)
        row.update({f"is_nll_k{k}": ev["nll_iwae"], f"is_nll_k{k}_stderr": ev["nll_iwae_stderr"],
                    "is_nll_seconds": ev["seconds"]["log_likelihood"],
                    "gpu_memory_peak_evaluate": _peak_memory(device)})
    return row


def run_ddp(out: str, epochs: int, data: dict, timeout: float) -> dict:
    """The default run on 2 GPUs with torchrun (global batch 128): its row of the JSON."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "vaelab",
               "train", "--device", "cuda", "--epochs", str(epochs), "--no-progress", "--logger", "csv",
               "--output-dir", out, "--name", "ddp2", "--quiet"]
    for key, value in data.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        return {"world_size": 2, "error": done.stderr[-2000:]}
    summary = json.loads((Path(out) / "ddp2" / "summary.json").read_text())
    return {"world_size": 2, "backend": "nccl", "precision": "fp32", "seconds_per_epoch": summary["seconds_per_epoch"],
            "test_neg_elbo": summary["final"]["neg_elbo"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--k", type=int, default=1000, help="IS-NLL samples (0: skip)")
    parser.add_argument("--dataset", default=None, help="default: mnist")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--train-examples", type=int, default=None)
    parser.add_argument("--eval-examples", type=int, default=None)
    parser.add_argument("--budget", type=float, default=280.0, help="seconds; later configurations are skipped")
    parser.add_argument("--quick", action="store_true", help="a smoke run: results/quick/gpu_check.json")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    data = {k: v for k, v in {"dataset": args.dataset, "data_dir": args.data_dir, "train_examples": args.train_examples,
                              "eval_examples": args.eval_examples}.items() if v}
    start = time.perf_counter()
    payload = {
        "what": f"default model (MNIST gray levels, 784-400-20, batch 128), {args.epochs} epochs on {device.type}; "
                f"IS-NLL K={args.k} on the test images; losses in nats per example; TF32 on (the default)",
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "cuda": torch.version.cuda, "torch": torch.__version__, "quick": args.quick, "runs": [], "skipped": [],
    }
    from vaelab.errors import VaelabError

    try:
        path = _check(args, device, data, payload, start)
    except VaelabError as exc:
        print(f"gpu_check: {exc}", file=sys.stderr)
        return 2
    for row in payload["runs"]:
        nll = f", IS-NLL {row[f'is_nll_k{args.k}']:.2f}" if f"is_nll_k{args.k}" in row else ""
        mode = "compile" if row["compile"] else "eager  "
        print(f"{row['precision']:>5} {mode}: {row['seconds_per_epoch']:.2f} s/epoch, "
              f"test -ELBO {row['test_neg_elbo']:.2f}{nll}")
    if "ddp" in payload:
        print(f"2-rank DDP: {payload['ddp']}")
    print(f"wrote {path} ({payload['wall_seconds']:.0f} s)")
    return 0


def _check(args, device: torch.device, data: dict, payload: dict, start: float) -> Path:
    """Run the configurations (and DDP) into ``payload``, writing the JSON after each."""
    with tempfile.TemporaryDirectory(prefix="vaelab-gpu-check-") as out:
        for precision, compile_ in CONFIGURATIONS:
            if time.perf_counter() - start > args.budget:
                payload["skipped"].append(f"{precision}{' compile' if compile_ else ''}: out of time")
                continue
            payload["runs"].append(run_config(out, precision, compile_, device, args.epochs,
                                              None if compile_ else args.k, data, args.batch_size))
            payload["wall_seconds"] = time.perf_counter() - start
            write_json("gpu_check", payload)
        if device.type == "cuda" and torch.cuda.device_count() >= 2:
            left = args.budget - (time.perf_counter() - start)
            if left > 30:
                payload["ddp"] = run_ddp(out, args.epochs, data, timeout=left)
            else:
                payload["skipped"].append("2-rank DDP: out of time")
        else:
            payload["skipped"].append(f"2-rank DDP: {torch.cuda.device_count()} GPU(s) here, it needs 2")
    payload["wall_seconds"] = time.perf_counter() - start
    return write_json("gpu_check", payload)


if __name__ == "__main__":
    sys.exit(main())
