"""Side-by-side timing of the binary losses (issue 11 item 3): xentax now vs before vs optax.

Run from a worktree root: ``PYTHONPATH=$PWD/src python experiments/benchmarks/binary_speed.py
256x4096,4096x32768 [names] [rounds]``. ``OLD`` (optional) is a path to the previous
``_binary.py``, loaded under another name, so both versions are timed in one process.
Prints the median of per-round ratios to the first implementation named (interleaved rounds).
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

FNS = {
  "optax_bce": lambda x, y: optax.sigmoid_binary_cross_entropy(x, y).mean(),
  "bce": lambda x, y: xentax.binary_cross_entropy_with_logits(x, y),
  "bce_all": lambda x, y: xentax.binary_cross_entropy_with_logits(
    x,
    y,
    pos_weight=jnp.linspace(0.5, 2.0, x.shape[-1]),
    weights=jnp.linspace(0.5, 2.0, x.shape[0])[:, None],
    label_smoothing=0.1,
    where=jnp.arange(x.shape[0])[:, None] % 8 != 7,
    sample_weight=jnp.linspace(0.5, 2.0, x.shape[-1]),
  ),
  "optax_focal": lambda x, y: optax.sigmoid_focal_loss(x, y, alpha=0.25).mean(),
  "focal": lambda x, y: xentax.binary_focal_loss_with_logits(x, y, alpha=0.25),
  "focal_all": lambda x, y: xentax.binary_focal_loss_with_logits(
    x,
    y,
    alpha=0.25,
    label_smoothing=0.1,
    where=jnp.arange(x.shape[0])[:, None] % 8 != 7,
    sample_weight=jnp.linspace(0.5, 2.0, x.shape[-1]),
  ),
  "naive_probs": lambda p, y: -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p)),
  "probs": lambda p, y: xentax.binary_cross_entropy(p, y),
  "probs_all": lambda p, y: xentax.binary_cross_entropy(
    p,
    y,
    weights=jnp.linspace(0.5, 2.0, p.shape[0])[:, None],
    label_smoothing=0.1,
    where=jnp.arange(p.shape[0])[:, None] % 8 != 7,
    sample_weight=jnp.linspace(0.5, 2.0, p.shape[-1]),
  ),
}
if os.environ.get("OLD"):
  spec = importlib.util.spec_from_file_location("old_binary", os.environ["OLD"])
  old = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(old)
  FNS["old_bce"] = lambda x, y: old.binary_cross_entropy_with_logits(x, y)
  FNS["old_focal"] = lambda x, y: old.binary_focal_loss_with_logits(x, y, alpha=0.25)
  FNS["old_probs"] = lambda p, y: old.binary_cross_entropy(p, y)


def main():
  shapes = [tuple(map(int, s.split("x"))) for s in sys.argv[1].split(",")]
  names = sys.argv[2].split(",")
  rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 5
  probs = any("probs" in n for n in names)
  for shape in shapes:
    args = []
    for k in jax.random.split(jax.random.key(0), 2):
      x = jax.random.normal(k, shape) * 2
      args.append((jax.nn.sigmoid(x) if probs else x, (x > 0).astype(jnp.float32)))
    for mode in ("forward", "value_and_grad"):
      compiled = {}
      for n in names:
        f = FNS[n] if mode == "forward" else jax.value_and_grad(FNS[n])
        compiled[n] = jax.jit(f).lower(*args[0]).compile()
      t = _measure.time_side_by_side(compiled, args, repeats=rounds, max_spread=None)
      base = t[names[0]]
      cells = []
      for n in names:
        r = t[n].ratios_to(base)
        cells.append(f"{n} {statistics.median(r):.2f} [{min(r):.2f}-{max(r):.2f}]")
      print(f"{shape} {mode:<14} " + "  ".join(cells), flush=True)
    del args, compiled


if __name__ == "__main__":
  main()
