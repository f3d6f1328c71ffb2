"""Forward speed of the losses whose input checks cost (issue 11 item 3), side by side.

``categorical_cross_entropy_with_logits`` against ``optax.softmax_cross_entropy(...).mean()``
(one-hot targets) and ``binary_cross_entropy`` (probabilities) against the naive
``-mean(y log p + (1 - y) log(1 - p))``, float32, forward (and, if asked, value-and-grad
with respect to the first argument). Prints the median of the
per-round ratios to the yardstick (interleaved rounds, one process) and their range.

Run from a worktree root::

  PYTHONPATH=$PWD/src python experiments/benchmarks/forward_check_speed.py \
      [256x4096,4096x32768,1024x131072] [rounds] [forward,value_and_grad]

``OLD_CATEGORICAL`` / ``OLD_BINARY`` (optional): paths to earlier versions of
``_categorical.py`` / ``_binary.py`` (``git show REV:src/xentax/losses/_binary.py > f``),
loaded under other names and timed in the same rounds ("before").
"""

import importlib.util
import os
import statistics
import sys

import jax
import jax.numpy as jnp
import optax

import xentax
from xentax.bench import _measure


def _load(env, name):
  path = os.environ.get(env)
  if not path:
    return None
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _losses():
  categorical = {
    "optax": lambda x, t: optax.softmax_cross_entropy(x, t).mean(),
    "xentax": lambda x, t: xentax.categorical_cross_entropy_with_logits(x, t),
  }
  binary = {
    "naive": lambda p, y: -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p)),
    "xentax": lambda p, y: xentax.binary_cross_entropy(p, y),
  }
  old = _load("OLD_CATEGORICAL", "old_categorical")
  if old is not None:
    categorical["before"] = lambda x, t: old.categorical_cross_entropy_with_logits(x, t)
  old_binary = _load("OLD_BINARY", "old_binary")
  if old_binary is not None:
    binary["before"] = lambda p, y: old_binary.binary_cross_entropy(p, y)
  return {"categorical_cross_entropy_with_logits": categorical, "binary_cross_entropy": binary}


def _inputs(name, shape):
  arg_sets = []
  for key in jax.random.split(jax.random.key(0), 2):
    k_x, k_y = jax.random.split(key)
    x = jax.random.normal(k_x, shape, jnp.float32) * 2
    if name == "binary_cross_entropy":
      arg_sets.append((jax.nn.sigmoid(x), (x > 0).astype(jnp.float32)))
    else:
      y = jax.random.randint(k_y, shape[:1], 0, shape[1])
      arg_sets.append((x, jax.nn.one_hot(y, shape[1], dtype=jnp.float32)))
  return arg_sets


def main():
  shapes = sys.argv[1] if len(sys.argv) > 1 else "256x4096,4096x32768,1024x131072"
  shapes = [tuple(int(n) for n in s.split("x")) for s in shapes.split(",")]
  rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 7
  modes = sys.argv[3].split(",") if len(sys.argv) > 3 else ["forward"]
  print(f"load average {os.getloadavg()[0]:.1f}; {rounds} interleaved rounds; float32")
  for name, impls in _losses().items():
    for shape, mode in [(shape, mode) for shape in shapes for mode in modes]:
      arg_sets = _inputs(name, shape)
      compiled = {
        impl: _measure.compile_ahead(
          fn if mode == "forward" else jax.value_and_grad(fn), *arg_sets[0]
        )[0]
        for impl, fn in impls.items()
      }
      timings = _measure.time_side_by_side(compiled, arg_sets, repeats=rounds, max_spread=None)
      base_name = next(iter(impls))
      base = timings[base_name]
      cells = [f"{base_name} {base.median_s * 1e3:.1f} ms"]
      for impl, timing in timings.items():
        if impl != base_name:
          ratios = timing.ratios_to(base)
          cells.append(
            f"{impl} {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})"
          )
      print(f"{name} {mode} {shape[0]}x{shape[1]}: " + ", ".join(cells), flush=True)


if __name__ == "__main__":
  main()
