"""What exact select-free handling of a masked vocabulary costs XLA:CPU's fused loop.

Usage (from the repository root)::

  python experiments/benchmarks/masked_flag_cost.py [NxC] [rounds]

The dense cross-entropy's fast forward, written out standalone (row max, exp-sum, the
targets' row ``min`` and ``max`` as the range check, ``sum_c q_c (lse - z_c)``), against two
variants timed in the same interleaved rounds on one-hot targets with no ``-inf``:

* ``floor``: ``z`` floored at ``finfo.min / 2`` in the loss sum, so a ``-inf`` logit without
  target mass adds 0. Inexact alone: target mass ``q`` on a ``-inf`` logit adds about
  ``q * 1.7e38``, a finite number where the loss is ``+inf``.
* ``floor + flag``: the range check's ``min`` also reads ``exp(z - m) * 2^127 - t``, negative
  exactly where target mass meets a vanished probability, which sends the row to the
  guarded formula: exact, three more operations per entry.
* ``floor + sign flag``: the range check's ``min`` reads ``t (z' - (m - 80))`` instead of
  ``t``, ``z'`` the floored logit: negative for a negative target or for target mass on a
  floored logit (or one 80 below the row max, which the guarded formula then handles):
  exact, two more operations per entry than ``floor``, and no ``exp`` in the check.
* ``floor + first flag``: the range check's ``min`` reads ``min(t, t (z' + 2^127 - 2^103))``,
  ``z'`` floored at ``-2^127``: negative for a negative target or for target mass on a floored
  logit. Unlike the sign flag it does not depend on the row max, so it can share the max pass:
  exact, three more operations per entry.
* ``floor + sum flag``: the loss sum adds ``t max(-(2^127 - 2^103) - z', 0) 2^127``, ``+inf``
  exactly where target mass (any ``t > 0``, however small) meets a floored logit: exact, in
  the pass that already reads ``t`` and ``z``, four more operations per entry.
* ``head shift``: no max pass; the exp-sum shifted by the max of the first 128 columns (an
  overflow would take the guarded formula). Whether the max pass is the cost.

On the CPU each variant is also compiled without XLA:CPU's YNNPACK fusion (the compiler
option ``xla_cpu_experimental_ynn_fusion_type`` empty), to tell the fused loop's cost per
operation from the formula's: variants ``"... (no YNN)"``, ratios to the default ``fast``.

The medians of per-round ratios to the fast forward are written to
``masked-flag-cost-<N>x<C>.json`` next to this script.
"""

import json
import pathlib
import statistics
import sys

import jax
import jax.numpy as jnp
from jax import lax

from xentax.bench import _measure


def forward(variant):
  lowest = float(jnp.finfo(jnp.float32).min)
  # -2^127 and the float above it: `gap + z'` is -2^103 on the floor and >= 0 above it.
  floor, gap = -(2.0**127), 2.0**127 - 2.0**103

  def loss(z, t):
    m = lax.stop_gradient(jnp.max(z, -1))
    e = jnp.exp(z - m[:, None])
    lse = m + jnp.log(jnp.sum(e, -1))
    low = jnp.min(jnp.minimum(t, e * 2.0**127 - t) if variant == "floor + flag" else t, -1)
    floored = jnp.maximum(z, lowest / 2)
    if variant == "floor + sign flag":
      low = jnp.min(t * (floored - (m - 80.0)[:, None]), -1)
    if variant in ("floor + first flag", "floor + sum flag"):
      floored = jnp.maximum(z, floor)
    if variant == "floor + first flag":
      low = jnp.min(jnp.minimum(t, t * (floored + gap)), -1)
    if variant == "head shift":
      m = lax.stop_gradient(jnp.max(z[:, :128], -1))
      lse = m + jnp.log(jnp.sum(jnp.exp(z - m[:, None]), -1))
    root = jnp.sqrt(jnp.minimum(low, 1 - jnp.max(t, -1)))
    z = z if variant in ("fast", "head shift") else floored
    terms = t * ((lse + root - root)[:, None] - z)
    if variant == "floor + sum flag":
      terms = terms + (t * jnp.maximum(-gap - floored, 0.0)) * 2.0**127
    return jnp.mean(jnp.sum(terms, -1))

  return jax.jit(loss)


def main(shape="4096x32768", rounds="9"):
  n, c = (int(v) for v in shape.split("x"))
  args = []
  for seed in (0, 1):
    k_z, k_y = jax.random.split(jax.random.key(seed))
    labels = jax.random.randint(k_y, (n,), 0, c)
    args.append((jax.random.normal(k_z, (n, c)) * 3, jax.nn.one_hot(labels, c)))
  variants = (
    "fast",
    "floor",
    "floor + flag",
    "floor + sign flag",
    "floor + first flag",
    "floor + sum flag",
    "head shift",
  )
  compiled = {v: forward(v).lower(*args[0]).compile() for v in variants}
  if jax.default_backend() == "cpu":
    no_ynn = {"xla_cpu_experimental_ynn_fusion_type": ""}
    for v in ("fast", "floor + first flag", "floor + sum flag"):
      compiled[f"{v} (no YNN)"] = forward(v).lower(*args[0]).compile(compiler_options=no_ynn)
  variants = tuple(compiled)
  # Exactness: target mass 1e-30 on a -inf logit must not give a finite loss.
  z, t = args[0]
  masked = jnp.where((t == 0) & (jnp.arange(c) % 10 == 1), -jnp.inf, z)
  tiny = t.at[0, 1].set(1e-30)
  finite = {v: bool(jnp.isfinite(compiled[v](masked, tiny))) for v in variants}
  timing = _measure.time_side_by_side(compiled, args, repeats=int(rounds))
  rows = [
    {
      "variant": v,
      "over_fast": statistics.median(timing[v].ratios_to(timing["fast"])),
      "spread": timing[v].spread,
      "finite_with_mass_on_minus_inf": finite[v],
    }
    for v in variants
  ]
  for row in rows:
    print(json.dumps(row))
  record = dict(shape=[n, c], rounds=int(rounds), device=_measure.device_info(), rows=rows)
  out = pathlib.Path(__file__).with_name(f"masked-flag-cost-{n}x{c}.json")
  out.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
  main(*sys.argv[1:])
