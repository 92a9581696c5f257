#!/usr/bin/env bash
# GPU check (under 5 minutes on one GPU): trains the default model (MNIST gray levels, 784-400-20,
# Adam 1e-3, batch 128) for 10 epochs on CUDA in fp32, evaluates the importance-sampled NLL with
# K = 1000 on the 10,000 test images (Burda et al. 2016), and writes benchmarks/results/gpu_check.json:
# seconds per training epoch (each epoch and the mean), test -ELBO, IS-NLL, and the peak GPU memory
# of training and of the evaluation (torch's allocator: allocated and reserved, MiB).
#
#     bash benchmarks/gpu_check.sh            # MNIST from $VAELAB_DATA_DIR, shared/data or the cache
#
# Without a CUDA device it says so and exits with status 2. The bf16, --compile and 2-rank DDP
# rows of issue 16 need options vaelab does not have yet (--precision, --compile, torchrun);
# add them here when they exist.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
if [ -n "${PYTHON:-}" ]; then :
elif [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python
else PYTHON=python3
fi
export PYTHONPATH="$ROOT/src:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${VAELAB_DATA_DIR:-}" ]; then
  for dir in shared/data ../shared/data; do
    if [ -d "$dir/mnist" ]; then export VAELAB_DATA_DIR="$(cd "$dir" && pwd)"; break; fi
  done
fi

if ! TORCH="$("$PYTHON" -c 'import torch; print(torch.__version__)' 2>/dev/null)"; then
  echo "gpu_check: $PYTHON cannot import torch; run \`make install\` or set PYTHON to the interpreter vaelab is installed in" >&2
  exit 2
fi
if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  echo "gpu_check: no CUDA device here (torch $TORCH: torch.cuda.is_available() is False); run it on a machine with an NVIDIA GPU and a CUDA build of torch" >&2
  exit 2
fi

set +e
timeout 290 "$PYTHON" - <<'EOF'
import sys
import tempfile
import time

import torch

from benchmarks.common import write_json
from vaelab.errors import VaelabError
from vaelab.evaluation.run import evaluate
from vaelab.training import train

MIB = 2 ** 20
start = time.perf_counter()
device = torch.device("cuda")
try:
    with tempfile.TemporaryDirectory(prefix="vaelab-gpu-check-") as out:
        torch.cuda.reset_peak_memory_stats(device)
        run = train({"name": "gpu-check", "output_dir": out,
                     "training": {"device": "cuda", "epochs": 10, "progress": False}}, verbose=False)
        train_memory = {"allocated_mib": torch.cuda.max_memory_allocated(device) / MIB,
                        "reserved_mib": torch.cuda.max_memory_reserved(device) / MIB}
        torch.cuda.reset_peak_memory_stats(device)
        ev = evaluate(run.run_dir, {"k": 1000, "probe": False, "fid": "none", "device": "cuda"}, verbose=False)
        eval_memory = {"allocated_mib": torch.cuda.max_memory_allocated(device) / MIB,
                       "reserved_mib": torch.cuda.max_memory_reserved(device) / MIB}
except VaelabError as exc:
    print(f"gpu_check: {exc}", file=sys.stderr)
    sys.exit(2)

payload = {
    "what": "default model (MNIST gray levels, 784-400-20, batch 128), 10 epochs on CUDA in fp32; IS-NLL K=1000 "
            "on the 10,000 test images; losses in nats per example",
    "gpu": torch.cuda.get_device_name(device), "cuda": torch.version.cuda,
    "precision": "fp32", "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
    "epochs": run.summary["epochs"],
    "seconds_per_epoch": run.summary["seconds_per_epoch"],
    "epoch_seconds": [row["train_seconds"] for row in run.history],
    "test_neg_elbo": run.summary["final"]["neg_elbo"],
    "is_nll_k1000": ev["nll_iwae"], "is_nll_k1000_stderr": ev["nll_iwae_stderr"],
    "is_nll_seconds": ev["seconds"]["log_likelihood"],
    "gpu_memory_peak": {"train": train_memory, "evaluate": eval_memory},
    "wall_seconds": time.perf_counter() - start,
}
path = write_json("gpu_check", payload)
print(f"{payload['gpu']}: {payload['seconds_per_epoch']:.2f} s/epoch (fp32), test -ELBO "
      f"{payload['test_neg_elbo']:.2f}, IS-NLL(K=1000) {payload['is_nll_k1000']:.2f} nats in "
      f"{payload['is_nll_seconds']:.1f} s, peak GPU memory {train_memory['allocated_mib']:.0f} MiB (train) / "
      f"{eval_memory['allocated_mib']:.0f} MiB (evaluate); wrote {path}")
EOF
status=$?
set -e
if [ "$status" -eq 124 ]; then
  echo "gpu_check: stopped after 290 s (the check should take under 5 minutes on one GPU); is the GPU shared or throttled?" >&2
fi
exit "$status"
