"""Report section: the deck's worked examples, next to xentax's values, and the loss curve."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402

import xentax  # noqa: E402


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


def plot_loss_curve(path: Path) -> None:
  """The deck's appendix: loss against predicted probability, for y = 1 and y = 0."""
  p = jnp.linspace(1e-3, 1 - 1e-3, 500)
  fig, ax = plt.subplots(figsize=(6, 4))
  for label, style in [(1.0, "-"), (0.0, "--")]:
    loss = xentax.binary_cross_entropy(p, jnp.full_like(p, label), reduction="none")
    ax.plot(p, loss, style, label=f"true label y = {int(label)}")
  ax.plot([0.8], [-math.log(0.8)], "o", color="black")
  ax.annotate(
    "deck: y = 1, p = 0.8, loss 0.2231",
    (0.8, -math.log(0.8)),
    (0.35, 2.5),
    arrowprops={"arrowstyle": "->"},
  )
  ax.set_xlabel("predicted probability p of the positive class")
  ax.set_ylabel("binary cross-entropy")
  ax.set_ylim(0, 7)
  ax.set_title("Steeper near the boundaries, minimum at the true label")
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def section(out_dir: Path, quick: bool = False) -> str:
  del quick  # this section is instant
  rows = worked_examples()
  plot_loss_curve(out_dir / "loss_vs_probability.png")
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
