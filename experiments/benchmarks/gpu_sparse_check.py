"""GPU check of the sparse CE changes (issue 11 findings a, b): time and temporaries.

Run from the repository root: ``PYTHONPATH=src python experiments/benchmarks/gpu_sparse_check.py``.
"""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import xentax
from xentax.losses import _common, _sparse

N, C = (8192, 131072) if jax.default_backend() == "gpu" else (256, 4096)
REP = 20


def bench(name, f, *args, nbytes):
  c = jax.jit(f).lower(*args).compile()
  jax.block_until_ready(c(*args))
  jax.block_until_ready(c(*args))
  ts = []
  for _ in range(REP):
    t = time.perf_counter()
    jax.block_until_ready(c(*args))
    ts.append(time.perf_counter() - t)
  ms = np.median(ts) * 1e3
  temp = c.memory_analysis().temp_size_in_bytes / 2**20
  print(f"{name:44s} {ms:8.3f} ms {nbytes / ms / 1e6:7.0f} GB/s temp {temp:7.0f} MiB", flush=True)
  return c


def shifted(x, y):
  x = x.astype(jnp.float32)
  t = jnp.take_along_axis(x, y[:, None], -1)
  return jnp.log(jnp.sum(jnp.exp(x - t), -1)) + t[:, 0]


def xentax_ce(x, y):
  return xentax.sparse_categorical_cross_entropy_with_logits(x, y)


def no_cond_stats(x, labels):  # diagnosis only: the common-case branch without lax.cond
  target = _common.upcast(jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0])
  return target + jnp.log(_sparse._sum_exp_shifted(x, target)), target


def optax_ce(x, y):
  return optax.softmax_cross_entropy_with_integer_labels(x, y).mean()


print(jax.devices()[0].device_kind, jax.__version__, flush=True)
key = jax.random.PRNGKey(0)
for dt in (jnp.bfloat16, jnp.float32):
  x = jax.random.normal(key, (N, C), dt) * 3
  y = jax.random.randint(key, (N,), 0, C)
  nb = x.size * x.dtype.itemsize
  print(f"--- {jnp.dtype(dt).name} [{N}, {C}] logits {nb / 2**20:.0f} MiB", flush=True)
  bench("copy x -> x+1 (r+w)", lambda x: x + 1, x, nbytes=2 * nb)
  bench("optax fwd", optax_ce, x, y, nbytes=nb)
  bench("bare shifted lse", shifted, x, y, nbytes=nb)
  bench("xentax fwd", xentax_ce, x, y, nbytes=nb)
  stats = _sparse._stats
  _sparse._stats = no_cond_stats
  bench("xentax fwd without the lax.cond", xentax_ce, x, y, nbytes=nb)
  _sparse._stats = stats
  bench("optax vg", jax.value_and_grad(optax_ce), x, y, nbytes=3 * nb)
  bench("xentax vg", jax.value_and_grad(xentax_ce), x, y, nbytes=3 * nb)
  if "--hlo" in sys.argv and dt == jnp.bfloat16:
    txt = jax.jit(xentax_ce).lower(x, y).compile().as_text()
    print("\n".join(line[:200] for line in txt[txt.index("ENTRY") :].splitlines()))
