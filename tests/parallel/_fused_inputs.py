"""Inputs of the fused loss's sharding tests: one head, its labels and every float option."""

import numpy as np


def fused_inputs(num_tokens: int, dim: int, vocab: int, seed: int = 0):
  """``(hidden, weight, labels, floats)`` in float64; labels 3 and 17 are -100 (ignored)."""
  rng = np.random.default_rng(seed)
  hidden = rng.normal(size=(num_tokens, dim))
  weight = rng.normal(size=(dim, vocab)) / 2
  labels = rng.integers(0, vocab, num_tokens)
  labels[[3, 17]] = -100
  floats = {
    "bias": rng.normal(size=vocab),
    "class_weights": rng.uniform(0.5, 2.0, vocab),
    "label_smoothing": np.float64(0.15),
    "z_loss": np.float64(1e-2),
    "softcap": np.float64(4.0),
    "sample_weight": rng.uniform(0.5, 2.0, num_tokens),
  }
  return hidden, weight, labels, floats
