"""The fused losses' lowered programs, hashed: run it on two trees and compare the lines.

Usage (from the repository root)::

  git worktree add /tmp/xentax-old 55a939a
  python experiments/benchmarks/fused_programs.py /tmp/xentax-old > /tmp/old.txt
  python experiments/benchmarks/fused_programs.py . > /tmp/new.txt
  diff /tmp/old.txt /tmp/new.txt && echo same

One line per program: ``fused_linear_cross_entropy`` with each schedule, without and with
options, forward and value-and-grad, and ``fused_linear_distillation``'s value-and-grad; the
hash of ``jax.jit(f).lower(...).as_text()`` on one device (no mesh).
"""

import hashlib
import sys

sys.path.insert(0, sys.argv[1] + "/src")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import xentax  # noqa: E402


def _hash(fn, *args) -> str:
  return hashlib.sha1(jax.jit(fn).lower(*args).as_text().encode()).hexdigest()[:12]


h, w, y = jnp.ones((64, 16)), jnp.ones((16, 300)), jnp.arange(64) % 300
options = {"label_smoothing": 0.1, "z_loss": 1e-3, "softcap": 5.0, "bias": jnp.ones(300)}
for schedule in ("tokens", "vocab"):
  for name, kw in (("plain", {}), ("options", options)):

    def loss(h, w, schedule=schedule, kw=kw):
      return xentax.fused_linear_cross_entropy(h, w, y, schedule=schedule, **kw)

    print(schedule, name, "fwd", _hash(loss, h, w))
    print(schedule, name, "vg", _hash(jax.value_and_grad(loss, argnums=(0, 1)), h, w))


def distill(a, b):
  return xentax.fused_linear_distillation(a, w, b, w, y, chunk_size=16)


print("distillation", "plain", "vg", _hash(jax.value_and_grad(distill), h, h))
