"""A compiled smoke run of the Pallas kernels, first on a device (about 10 s).

  PYTHONPATH=src python3 experiments/benchmarks/gpu_smoke.py

``sparse_categorical_cross_entropy_with_logits`` with ``implementation="pallas"`` against
``"xla"`` on ``[64, 4096]`` bfloat16 logits, plain and with every option, and
``fused_linear_cross_entropy`` likewise, value and gradients; prints one line per case and
``SMOKE OK`` or ``SMOKE FAILED`` (exit status 1).
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import xentax

LOSS = xentax.sparse_categorical_cross_entropy_with_logits
OPTIONS = {"label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 20.0, "ignore_index": -100}


def main() -> int:
  start = time.time()
  print(f"backend {jax.default_backend()}, devices {jax.devices()}", flush=True)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(64, 4096)) * 3, jnp.bfloat16)
  y = jnp.asarray(rng.integers(0, 4096, 64), jnp.int32).at[::7].set(-100)
  ok = True
  for name, options in (("plain", {"ignore_index": -100}), ("every option", OPTIONS)):
    results = {}
    for impl in ("xla", "pallas"):
      fn = jax.jit(
        jax.value_and_grad(lambda x, impl=impl, o=options: LOSS(x, y, implementation=impl, **o))
      )
      results[impl] = jax.block_until_ready(fn(x))
    err_v = abs(float(results["pallas"][0]) - float(results["xla"][0]))
    diff = results["pallas"][1].astype(jnp.float32) - results["xla"][1].astype(jnp.float32)
    err_g = float(jnp.abs(diff).max())
    passed = err_v < 1e-3 and err_g < 1e-4
    ok &= passed
    print(
      f"{name}: value error {err_v:.2e}, gradient error {err_g:.2e}: {'ok' if passed else 'WRONG'}"
    )
  ok &= fused_case()
  print(f"SMOKE {'OK' if ok else 'FAILED'} in {time.time() - start:.1f} s", flush=True)
  return 0 if ok else 1


def fused_case() -> bool:
  """``fused_linear_cross_entropy`` at 256 x 128 x 1000 bfloat16, kernel against XLA."""
  rng = np.random.default_rng(1)
  h = jnp.asarray(rng.normal(size=(256, 128)), jnp.bfloat16)
  w = jnp.asarray(rng.normal(size=(128, 1000)) / 8, jnp.bfloat16)
  y = jnp.asarray(rng.integers(0, 1000, 256), jnp.int32)
  results = {}
  for impl in ("xla", "pallas"):
    loss = lambda h, w, impl=impl: xentax.fused_linear_cross_entropy(  # noqa: E731
      h, w, y, label_smoothing=0.1, implementation=impl
    )
    results[impl] = jax.block_until_ready(jax.jit(jax.value_and_grad(loss, (0, 1)))(h, w))
  err_v = abs(float(results["pallas"][0]) - float(results["xla"][0]))
  err_g = max(
    float(jnp.abs(a.astype(jnp.float32) - b.astype(jnp.float32)).max())
    for a, b in zip(results["pallas"][1], results["xla"][1], strict=True)
  )
  passed = err_v < 1e-2 and err_g < 1e-2
  print(
    f"fused: value error {err_v:.2e}, gradient error {err_g:.2e}: {'ok' if passed else 'WRONG'}"
  )
  return passed


if __name__ == "__main__":
  sys.exit(main())
