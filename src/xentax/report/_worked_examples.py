"""Report section: the deck's worked examples, next to xentax's values, and the loss curve."""

from __future__ import annotations

import math
from pathlib import Path

import jax.numpy as jnp

import xentax
from xentax import plots


def worked_examples() -> list[dict]:
  """Each example of the deck: its stated value (or None) and xentax's value."""
  cat_probs = jnp.repeat(jnp.array([0.8, 0.3]), 50)
  cat_labels = jnp.repeat(jnp.array([1.0, 0.0]), 50)
  rows = [
    {
      "example": "One image, y = 1, p = 0.8 (binary_cross_entropy)",
      "deck": 0.2231,
      "by_hand": -math.log(0.8),
      "xentax": xentax.binary_cross_entropy(jnp.array(0.8), jnp.array(1.0)),
    },
    {
      "example": "Same, as the deck writes it: y = [0, 1], p = [0.2, 0.8] (categorical)",
      "deck": 0.2231,
      "by_hand": -(0 * math.log(0.2) + 1 * math.log(0.8)),
      "xentax": xentax.categorical_cross_entropy(jnp.array([0.2, 0.8]), jnp.array([0.0, 1.0])),
    },
    {
      "example": "Same, from the logit log(0.8 / 0.2) (binary_cross_entropy_with_logits)",
      "deck": 0.2231,
      "by_hand": -math.log(0.8),
      "xentax": xentax.binary_cross_entropy_with_logits(jnp.array(math.log(4.0)), jnp.array(1.0)),
    },
    {
      "example": "Same, sparse label 1 (sparse_categorical_cross_entropy)",
      "deck": 0.2231,
      "by_hand": -math.log(0.8),
      "xentax": xentax.sparse_categorical_cross_entropy(jnp.array([[0.2, 0.8]]), jnp.array([1])),
    },
    {
      "example": "100 images, 50 cats at p = 0.8, 50 non-cats at p = 0.3: dataset average",
      "deck": None,
      "by_hand": (-math.log(0.8) - math.log(0.7)) / 2,
      "xentax": xentax.binary_cross_entropy(cat_probs, cat_labels),
    },
  ]
  for row in rows:
    row["xentax"] = float(row["xentax"])
  return rows


def loss_curve_figure():
  """The deck's appendix: loss against predicted probability, for y = 1 and y = 0."""
  p = jnp.linspace(1e-3, 1 - 1e-3, 500)
  losses = {
    f"true label y = {int(label)}": xentax.binary_cross_entropy(
      p, jnp.full_like(p, label), reduction="none"
    ).tolist()
    for label in (1.0, 0.0)
  }
  return plots.loss_vs_probability(
    p.tolist(), losses, point=(0.8, -math.log(0.8), "deck: y = 1, p = 0.8, loss 0.2231")
  )


def section(out_dir: Path, scale: str = "full") -> str:
  """The deck's worked examples (instant at every scale)."""
  del scale
  rows = worked_examples()
  plots.save(loss_curve_figure(), out_dir / "loss_vs_probability.png")
  lines = [
    "## The deck's worked examples",
    "",
    "| example | deck | by hand | xentax | abs. diff. (by hand) |",
    "|---|---|---|---|---|",
  ]
  for row in rows:
    deck = "-" if row["deck"] is None else f"{row['deck']:.4f}"
    diff = abs(row["xentax"] - row["by_hand"])
    lines.append(
      f"| {row['example']} | {deck} | {row['by_hand']:.6f} | {row['xentax']:.6f} | {diff:.1e} |"
    )
  lines += [
    "",
    "The deck gives no number for the dataset average; the row shows a 50/50 set with the",
    "stated predictions.",
    "",
    "![loss against predicted probability](loss_vs_probability.png)",
    "",
  ]
  return "\n".join(lines)
