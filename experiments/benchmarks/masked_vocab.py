"""A masked vocabulary: each loss on logits with ``-inf`` columns against the same loss unmasked.

Usage (from the repository root)::

  python experiments/benchmarks/masked_vocab.py [NxC] [rounds]

A share (10%) of each row's non-target columns is set to ``-inf`` (a padded vocabulary,
constrained decoding); those classes carry no target mass. For every loss, forward and
value-and-grad, the masked and unmasked calls are timed interleaved in the same rounds
(``xentax.bench._measure.time_side_by_side``); the table gives the median of the
per-round ratios masked / unmasked and the spread of each timing. The record is written
to ``masked-vocab-<N>x<C>.json`` next to this script.
"""

import json
import pathlib
import statistics
import sys

import jax
import jax.numpy as jnp

import xentax
from xentax.bench import _measure

MASKED_SHARE = 0.1

LOSSES = {
  "sparse_categorical_cross_entropy_with_logits": lambda x, y, t, s: (
    xentax.sparse_categorical_cross_entropy_with_logits(x, y)
  ),
  "categorical_cross_entropy_with_logits (one-hot)": lambda x, y, t, s: (
    xentax.categorical_cross_entropy_with_logits(x, t)
  ),
  "categorical_focal_loss_with_logits (one-hot)": lambda x, y, t, s: (
    xentax.categorical_focal_loss_with_logits(x, t)
  ),
  "sparse_categorical_focal_loss_with_logits": lambda x, y, t, s: (
    xentax.sparse_categorical_focal_loss_with_logits(x, y)
  ),
  # The teacher's masked columns are the student's: zero mass on both sides.
  "kl_divergence_with_logits": lambda x, y, t, s: xentax.kl_divergence_with_logits(x, s),
  "jensen_shannon_divergence_with_logits": lambda x, y, t, s: (
    xentax.jensen_shannon_divergence_with_logits(x, s)
  ),
}


def inputs(batch, classes, masked):
  k_x, k_y, k_m, k_t = jax.random.split(jax.random.key(0), 4)
  x = jax.random.normal(k_x, (batch, classes)) * 2
  y = jax.random.randint(k_y, (batch,), 0, classes)
  teacher = jax.random.normal(k_t, (batch, classes)) * 2
  if masked:
    mask = jax.random.uniform(k_m, (batch, classes)) < MASKED_SHARE
    mask = mask & (jnp.arange(classes) != y[:, None])
    x = jnp.where(mask, -jnp.inf, x)
    teacher = jnp.where(mask, -jnp.inf, teacher)
  return x, y, jax.nn.one_hot(y, classes), teacher


def main(shape="4096x32768", rounds="9"):
  batch, classes = map(int, shape.split("x"))
  rounds = int(rounds)
  args = {"unmasked": inputs(batch, classes, False), "masked": inputs(batch, classes, True)}
  rows = []
  for name, loss in LOSSES.items():
    for mode in ("forward", "value_and_grad"):
      fn = loss if mode == "forward" else jax.value_and_grad(loss)
      compiled = {k: _measure.compile_ahead(fn, *a)[0] for k, a in args.items()}
      masked_out = compiled["masked"](*args["masked"])
      masked_value = masked_out if mode == "forward" else masked_out[0]
      timings = _measure.time_side_by_side(
        compiled, {k: [a] for k, a in args.items()}, repeats=rounds
      )
      ratios = [
        m / u for m, u in zip(timings["masked"].samples, timings["unmasked"].samples, strict=True)
      ]
      row = {
        "loss": name,
        "mode": mode,
        "batch": batch,
        "classes": classes,
        "masked_share": MASKED_SHARE,
        "ratio_masked_over_unmasked": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "unmasked_ms": timings["unmasked"].median_s * 1e3,
        "masked_ms": timings["masked"].median_s * 1e3,
        "spread_unmasked": timings["unmasked"].spread,
        "spread_masked": timings["masked"].spread,
        "masked_value_finite": bool(jnp.isfinite(masked_value)),
        "rounds": rounds,
        **_measure.device_info(),
      }
      rows.append(row)
      print(
        f"{name:50s} {mode:15s} masked/unmasked {row['ratio_masked_over_unmasked']:.2f}"
        f" [{row['ratio_min']:.2f}-{row['ratio_max']:.2f}]"
        f"  {row['unmasked_ms']:.1f} / {row['masked_ms']:.1f} ms",
        flush=True,
      )
      out = pathlib.Path(__file__).with_name(f"masked-vocab-{batch}x{classes}.json")
      out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
  main(*sys.argv[1:])
