"""The prototype Pallas sparse cross-entropy kernels on a GPU: compiled test, tiling sweep, rows.

  PYTHONPATH=src python3 experiments/benchmarks/gpu_pallas_sparse.py OUT.json [--quick]

1. Compiled test: value and gradient of ``sparse_categorical_cross_entropy_with_logits(...,
   implementation="pallas")`` under each tiling (mean / sum / none, ``ignore_index``, a class
   count that is not a multiple of the chunk) against a float64 NumPy reference; prints PASS
   or FAIL per case.
2. Reference: the device copy (``x * c``, read + write) of the logits' shape in each dtype.
3. Sweep: each tiling of the kernels, forward and value-and-grad (mean), timed interleaved with
   optax and the current xentax loss; GB/s counts one read of the logits (forward) or one read
   and one write (value-and-grad), the bandwidth bound of each mode.
The JSON is rewritten after every step, so a killed run keeps what it measured.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import optax

import xentax
from xentax.bench import _measure
from xentax.bench._gpu import sparse_inputs
from xentax.losses import _pallas_sparse as ps

QUICK = "--quick" in sys.argv
OUT = next((a for a in sys.argv[1:] if not a.startswith("--")), "pallas.json")
SHAPE = (64, 4096) if QUICK else (8192, 131072)
REPEATS = 3 if QUICK else 10
INTERPRET = jax.default_backend() != "gpu"


def _cfg(rows, cols, warps, **flags):
  return {"block_rows": rows, "block_cols": cols, "num_warps": warps, **flags}


LATE = {"reverse": True, "evict": True}
SPLIT = "--with-split" in sys.argv  # only after --split-smoke has finished on this device
TWO_PASS = {"segment": 0}
CONFIGS = {  # per mode: the tilings and flags swept (DEFAULT_CONFIG fills the rest)
  "forward": [_cfg(1, 4096, 8), _cfg(1, 4096, 4)],
  "value_and_grad": [
    _cfg(1, 4096, 8, reverse=False, evict=False, **TWO_PASS),
    _cfg(1, 4096, 4, **TWO_PASS),
  ]
  + (
    [_cfg(1, 4096, 4), _cfg(1, 4096, 2, segment=4096), _cfg(1, 4096, 4, segment=4096)]
    if SPLIT
    else []
  ),
}
TEST_CONFIGS = [{}, TWO_PASS, {"reverse": False, "evict": False, **TWO_PASS}]


def kernel_loss(x, y, reduction="mean", ignore_index=None):
  return xentax.sparse_categorical_cross_entropy_with_logits(
    x, y, reduction=reduction, ignore_index=ignore_index, implementation="pallas"
  )


SHAPES = {"bfloat16": [SHAPE, (SHAPE[0], 128256 * SHAPE[1] // 131072)], "float32": [SHAPE]}


def split_smoke():
  """One split-row gradient at the sweep's shape and one small case against NumPy."""
  x, y = sparse_inputs(*SHAPE, jnp.bfloat16, 0)
  ones = jnp.ones(y.shape, jnp.float32)
  coef = ps.Coefficients(ones / y.shape[0], 0 * ones, ones / y.shape[0], None, ones)
  lse, _, grad = jax.block_until_ready(jax.jit(ps.split_gradient)(x, y, coef))
  target = jnp.take_along_axis(x, y[:, None], axis=1)[:, 0].astype(jnp.float32)
  loss = lse - target
  ref_loss, ref_grad = jax.jit(
    jax.value_and_grad(lambda x: optax.softmax_cross_entropy_with_integer_labels(x, y).mean())
  )(x.astype(jnp.float32))
  err_l = float(jnp.abs(loss.mean() - ref_loss))
  err_g = float(jnp.abs(grad.astype(jnp.float32) - ref_grad).max())
  _say(f"split smoke {SHAPE}: loss error {err_l:.2e}, gradient error {err_g:.2e}")
  _say("SPLIT OK" if err_l < 1e-2 and err_g < 1e-5 else "SPLIT WRONG")


RECORDS: list[dict] = []


def _save():
  with open(OUT, "w") as f:
    json.dump({"device": _measure.device_info(), "records": RECORDS}, f, indent=1)


def _say(msg):
  print(msg, flush=True)


def reference(x, y, keep):
  x = np.asarray(x, np.float64)
  m = x.max(1, keepdims=True)
  lse = (m + np.log(np.exp(x - m).sum(1, keepdims=True)))[:, 0]
  loss = np.where(keep, lse - x[np.arange(len(y)), np.where(keep, y, 0)], 0.0)
  p = np.exp(x - lse[:, None])
  p[np.arange(len(y)), np.where(keep, y, 0)] -= 1
  return loss, p * keep[:, None]


def compiled_test():
  rng = np.random.default_rng(0)
  cases = [
    (64, 50257, "bfloat16", None),
    (128, 4096, "float32", None),
    (96, 1000, "float32", -100),
    (33, 32768, "float32", None),
  ]
  for (n, c, dtype, ignore), config in itertools.product(cases, TEST_CONFIGS):
    x = jnp.asarray(rng.normal(size=(n, c)) * 3, dtype)
    y = rng.integers(0, c, n).astype(np.int32)
    if ignore is not None:
      y[::5] = ignore
    keep = y != (ignore if ignore is not None else -1)
    loss64, grad64 = reference(np.asarray(x.astype(jnp.float32)), y, keep)
    tol = 2e-2 if dtype == "bfloat16" else 2e-5
    for red in ("mean", "sum", "none"):
      rec = {"kind": "test", "n": n, "c": c, "dtype": dtype, "ignore_index": ignore, "red": red}
      rec["config"] = config
      try:
        weights = np.arange(n) % 3 + 1.0 if red == "none" else 1.0

        def f(x, red=red, weights=weights, y=y, ignore=ignore):
          return jnp.sum(kernel_loss(x, jnp.asarray(y), red, ignore) * weights)

        with ps.tiling(config):
          value, grad = jax.jit(jax.value_and_grad(f))(x)
          forward = jax.jit(f)(x)
        denom = keep.sum() if red == "mean" else 1.0
        want_v = (loss64 * weights).sum() / denom
        want_g = grad64 * (np.broadcast_to(weights, (n,))[:, None] / denom)
        err_v = abs(float(value) - want_v) / max(1.0, abs(want_v))
        err_f = abs(float(forward) - want_v) / max(1.0, abs(want_v))
        err_g = float(np.abs(np.asarray(grad, np.float64) - want_g).max())
        ok = err_v < tol and err_f < tol and err_g < tol * max(1.0, np.abs(want_g).max())
        rec.update(err_value=err_v, err_forward=err_f, err_grad=err_g, passed=bool(ok))
      except Exception as err:
        traceback.print_exc()
        rec.update(passed=False, error=f"{type(err).__name__}: {err}"[:2000])
      RECORDS.append(rec)
      _say(
        f"test {n}x{c} {dtype} ignore={ignore} {red} {config}: "
        + ("PASS" if rec["passed"] else "FAIL")
        + f" { ({k: v for k, v in rec.items() if k.startswith('err')}) }"
      )
  _save()


def copy_rate(x):
  compiled, seconds = _measure.compile_ahead(lambda x: x * jnp.asarray(1.0000001, x.dtype), x)
  t = _measure.time_side_by_side({"copy": compiled}, [(x,), (x + 1,)], repeats=REPEATS)["copy"]
  return 2 * x.nbytes / t.median_s / 1e9


def _pallas(mode):
  """A new function each call: jit caches traces by function, and the tiling is read then."""

  def loss(x, y):
    return kernel_loss(x, y)

  return loss if mode == "forward" else jax.value_and_grad(loss)


def sweep(dtype, shape):
  args = [sparse_inputs(*shape, jnp.dtype(dtype), seed) for seed in (0, 1)]
  copy = copy_rate(args[0][0])
  RECORDS.append({"kind": "copy", "dtype": dtype, "shape": shape, "gbps": copy})
  _say(f"copy {dtype} {shape}: {copy:.0f} GB/s (read + write)")
  _save()
  baselines = {
    "optax": lambda x, y: optax.softmax_cross_entropy_with_integer_labels(x, y).mean(),
    "xentax (XLA)": xentax.sparse_categorical_cross_entropy_with_logits,
  }
  for mode in ("forward", "value_and_grad"):
    fns = {n: (f if mode == "forward" else jax.value_and_grad(f)) for n, f in baselines.items()}
    tilings = {}
    for config in CONFIGS[mode]:
      name = " ".join(f"{k}={v}" for k, v in config.items() if k != "block_rows" or v != 1)
      name = f"pallas {name.replace('block_', '').replace('num_', '')}"
      fns[name], tilings[name] = _pallas(mode), config
    compiled, seconds, memory = {}, {}, {}
    for name, fn in fns.items():
      try:
        with ps.tiling(tilings.get(name, {})):  # the kernels read it while tracing
          compiled[name], seconds[name] = _measure.compile_ahead(fn, *args[0])
        memory[name] = _measure.memory_bytes(compiled[name])
      except Exception as err:
        traceback.print_exc()
        RECORDS.append(
          {
            "kind": "sweep",
            "impl": name,
            "mode": mode,
            "dtype": dtype,
            "error": f"{type(err).__name__}: {err}"[:2000],
          }
        )
    timings = _measure.time_side_by_side(compiled, args, repeats=REPEATS, compile_seconds=seconds)
    moved = args[0][0].nbytes * (1 if mode == "forward" else 2)
    for name, t in timings.items():
      rec = {
        "kind": "sweep",
        "impl": name,
        "mode": mode,
        "dtype": dtype,
        "shape": shape,
        "median_ms": t.median_s * 1e3,
        "spread": t.spread,
        "compile_s": t.compile_s,
        "gbps": moved / t.median_s / 1e9,
        "pct_of_copy": 100 * moved / t.median_s / 1e9 / copy,
        "x_optax": t.median_s / timings["optax"].median_s,
        "ratios_to_optax": t.ratios_to(timings["optax"]),
        **memory[name],
      }
      RECORDS.append(rec)
      _say(
        f"{mode:15s} {dtype:9s} {shape[1]:6d} {name:32s} {rec['median_ms']:8.3f} ms"
        f"  {rec['gbps']:6.0f} GB/s"
        f"  {rec['pct_of_copy']:5.1f}% of copy  {rec['x_optax']:.3f}x optax"
        f"  temp {(rec.get('temp_bytes') or 0) / 2**20:.0f} MiB"
      )
    _save()


def main():
  if "--split-smoke" in sys.argv:
    return split_smoke()
  start = time.time()
  _say(f"backend {jax.default_backend()}, devices {jax.devices()}, interpret={INTERPRET}")
  compiled_test()
  if not SPLIT:
    ps.DEFAULT_CONFIG["segment"] = 0
  for dtype, shape in (
    [] if "--tests-only" in sys.argv else [(d, s) for d, shapes in SHAPES.items() for s in shapes]
  ):
    try:
      sweep(dtype, shape)
    except Exception:
      traceback.print_exc()
  _say(f"done in {time.time() - start:.0f} s")


if __name__ == "__main__":
  main()
