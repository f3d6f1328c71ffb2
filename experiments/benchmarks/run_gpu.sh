#!/usr/bin/env bash
# The prepared device run, in three steps, xentax uninstalled (PYTHONPATH=src), within 8 min:
#   1. gpu_smoke.py: the Pallas kernels compiled against XLA on a small case (about 10 s);
#   2. the kernel tests compiled (tests/losses/test_pallas_*.py under pytest when pytest
#      and hypothesis import, else gpu_pallas_sparse.py's own compiled test);
#   3. `xentax bench --suite gpu`: optax, XLA and the kernels side by side.
#
#   bash experiments/benchmarks/run_gpu.sh [OUT_DIR]     (default: $OUT, else results/gpu)
#
# Writes OUT_DIR/env.txt (nvidia-smi, versions), smoke.log, kernel-tests.log, gpu.log (the
# printed tables), gpu.json and gpu.md (rewritten after every case, so a killed run keeps
# what it measured). The suite stops starting new cases after 270 s; `timeout` is a backstop.
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
  echo "XENTAX_FORMULATION=${XENTAX_FORMULATION:-(the backend default)}"
  "$PY" -c "import jax, jaxlib, optax; print('jax', jax.__version__, 'jaxlib', jaxlib.__version__, 'optax', optax.__version__); print(jax.devices())"
} 2>&1 | tee "$OUT_DIR/env.txt"

PYTHONUNBUFFERED=1 PYTHONPATH=src timeout 60 \
  "$PY" experiments/benchmarks/gpu_smoke.py 2>&1 | tee "$OUT_DIR/smoke.log"

if "$PY" -c "import pytest, hypothesis" > /dev/null 2>&1; then
  PYTHONUNBUFFERED=1 PYTHONPATH=src:. timeout 120 "$PY" -m pytest -q -p no:cacheprovider \
    -o addopts="" -k "not options_and_tilings and not shapes_options_and_blocks" \
    tests/losses/test_pallas_sparse.py tests/losses/test_pallas_fused.py 2>&1 | tee "$OUT_DIR/kernel-tests.log"
else
  echo "pytest or hypothesis does not import: gpu_pallas_sparse.py --tests-only instead" \
    | tee "$OUT_DIR/kernel-tests.log"
  PYTHONUNBUFFERED=1 PYTHONPATH=src timeout 120 "$PY" experiments/benchmarks/gpu_pallas_sparse.py \
    "$OUT_DIR/kernel-tests.json" --tests-only 2>&1 | tee -a "$OUT_DIR/kernel-tests.log"
fi

PYTHONUNBUFFERED=1 PYTHONPATH=src timeout 300 \
  "$PY" -m xentax.cli bench --suite gpu $BENCH_ARGS --out "$OUT_DIR/gpu.json" 2>&1 \
  | tee "$OUT_DIR/gpu.log"
rc=${PIPESTATUS[0]}
echo "exit status $rc"
ls -l "$OUT_DIR"
exit "$rc"
