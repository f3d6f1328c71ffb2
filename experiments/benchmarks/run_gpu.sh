#!/usr/bin/env bash
# Run `xentax bench --suite gpu` on a GPU machine, xentax uninstalled, and keep everything.
#
#   bash experiments/benchmarks/run_gpu.sh [OUT_DIR]     (default: $OUT, else results/gpu)
#
# Writes OUT_DIR/env.txt (nvidia-smi, versions), OUT_DIR/gpu.log (the printed tables),
# OUT_DIR/gpu.json and OUT_DIR/gpu.md (rewritten after every case, so a killed run keeps
# what it measured). The suite stops starting new cases after 420 s; `timeout` is a backstop.
# A dry run on CPU: PYTHON=.venv/bin/python BENCH_ARGS="--device cpu --quick" bash ...
# The losses' formulation on the GPU is "plain" (xentax.losses._engine.FORMULATIONS) until
# measured: run it once more with XENTAX_FORMULATION=fused into another OUT_DIR to compare.
set -u
PY="${PYTHON:-python3}"
BENCH_ARGS="${BENCH_ARGS:---device gpu}"
OUT_DIR="${1:-${OUT:-results/gpu}}"
mkdir -p "$OUT_DIR"
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
cd "$(dirname "$0")/../.."

{
  date -u
  git rev-parse HEAD 2>/dev/null || true
  nvidia-smi || echo "nvidia-smi: not available"
  "$PY" --version
  echo "XENTAX_FORMULATION=${XENTAX_FORMULATION:-(the backend's default)}"
  "$PY" -c "import jax, jaxlib, optax; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'optax', optax.__version__); print(jax.devices())"
} 2>&1 | tee "$OUT_DIR/env.txt"

PYTHONUNBUFFERED=1 PYTHONPATH=src timeout 500 \
  "$PY" -m xentax.cli bench --suite gpu $BENCH_ARGS --out "$OUT_DIR/gpu.json" 2>&1 \
  | tee "$OUT_DIR/gpu.log"
rc=${PIPESTATUS[0]}
echo "exit status $rc"
ls -l "$OUT_DIR"
exit "$rc"
