#!/usr/bin/env bash
# GPU check: vaelab's GPU path stage by stage (dependencies and GPUs; the default model in fp32,
# bf16 and fp16 with host syncs per step; IS-NLL throughput; exact resume of a conv VAE; the conv
# VAE; the burda-vae and best-1h recipes; 2-rank DDP with 2 GPUs; --compile), each stage in its
# own process under its own time limit, under 8 minutes on one H100. The work is
# benchmarks/gpu_check.py; it writes benchmarks/results/gpu_check.json (--output PATH elsewhere)
# after every stage, each marked run, skipped (with the reason) or failed (with the error).
#
#     bash benchmarks/gpu_check.sh                          # MNIST from $VAELAB_DATA_DIR or shared/data
#     bash benchmarks/gpu_check.sh --device cpu --quick     # smoke run on tiny synthetic data
#
# Exit status: 0 every stage that could run passed; 1 some stage failed; 2 the environment
# stage failed (no CUDA device, a missing dependency): the JSON says which.
set -uo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT" || exit 2
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

# where the JSON goes, to write it here if Python cannot
output="" quick="" budget=450 prev=""
for arg in "$@"; do
  case "$prev" in --output) output="$arg" ;; --budget) budget="${arg%.*}" ;; esac
  case "$arg" in --output=*) output="${arg#--output=}" ;; --budget=*) budget="${arg#--budget=}"; budget="${budget%.*}" ;;
                 --quick) quick=1 ;; esac
  prev="$arg"
done
[ -n "$output" ] || output="benchmarks/results/${quick:+quick/}gpu_check.json"
started=$(date +%s)

# the stages keep to their own limits; this one catches a check that hangs between them
timeout --kill-after=20 $((budget + 120)) "$PYTHON" -m benchmarks.gpu_check "$@"
status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
  echo "gpu_check: stopped after $((budget + 120)) s; the JSON holds the stages that finished" >&2
fi
written=0
if [ -f "$output" ] && [ "$(stat -c %Y "$output" 2>/dev/null || echo 0)" -ge "$started" ]; then written=1; fi
if [ "$written" -eq 0 ]; then
  mkdir -p "$(dirname "$output")"
  reason="$PYTHON -m benchmarks.gpu_check exited with status $status before writing its JSON (is torch installed? run \`make install\` or set PYTHON)"
  printf '{"what": "vaelab GPU check", "status": "failed", "error": "%s", "stages": {}}\n' \
    "$(printf '%s' "$reason" | sed 's/\\/\\\\/g; s/"/\\"/g')" > "$output"
  echo "gpu_check: $reason; wrote $output" >&2
  [ "$status" -eq 0 ] && status=2
fi
exit "$status"
