#!/usr/bin/env bash
# GPU check (under 5 minutes on one GPU): the default model (MNIST gray levels, 784-400-20, batch
# 128) for 10 epochs on CUDA in fp32 and bf16, each with and without --compile, IS-NLL with K = 1000,
# and a 2-rank DDP run (torchrun) when there are 2 GPUs; writes benchmarks/results/gpu_check.json
# (seconds per epoch, test -ELBO, IS-NLL, peak GPU memory). The work is benchmarks/gpu_check.py.
#
#     bash benchmarks/gpu_check.sh            # MNIST from $VAELAB_DATA_DIR, shared/data or the cache
#
# Without a CUDA device it says so and exits with status 2.
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
timeout 295 "$PYTHON" -m benchmarks.gpu_check "$@"
status=$?
set -e
if [ "$status" -eq 124 ]; then
  echo "gpu_check: stopped after 295 s (the check should take under 5 minutes on one GPU); is the GPU shared or throttled?" >&2
fi
exit "$status"
