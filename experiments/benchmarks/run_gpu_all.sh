#!/usr/bin/env bash
# One device call: the Pallas prototype (compiled test, tiling sweep), the gpu suite, and the
# PyTorch reference kernels (Liger-Kernel, Cut Cross-Entropy), each bounded by `timeout`.
#
#   bash experiments/benchmarks/run_gpu_all.sh [OUT_DIR]      (default: $OUT, else results/gpu)
#
# Liger-Kernel and Cut Cross-Entropy come as wheels in .whl/ (pip download --no-deps); without
# them the reference step records its import error and the rest still runs.
set -u
OUT_DIR="${1:-${OUT:-results/gpu}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
cd "$(dirname "$0")/../.."
PY="${PYTHON:-python3}"

PYTHONUNBUFFERED=1 PYTHONPATH=src timeout 200 \
  "$PY" experiments/benchmarks/gpu_pallas_sparse.py "$OUT_DIR/pallas.json" > "$OUT_DIR/pallas.log" 2>&1
echo "pallas: exit status $?"; tail -n 30 "$OUT_DIR/pallas.log"

timeout 130 bash experiments/benchmarks/run_gpu.sh "$OUT_DIR" > /dev/null 2>&1
echo "suite: exit status $?"; tail -n 25 "$OUT_DIR/gpu.log"

if ls .whl/*.whl > /dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
fi
PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site timeout 100 \
  "$PY" experiments/benchmarks/gpu_torch_refs.py "$OUT_DIR/torch.json" > "$OUT_DIR/torch.log" 2>&1
echo "torch refs: exit status $?"; tail -n 14 "$OUT_DIR/torch.log"
ls -l "$OUT_DIR"
