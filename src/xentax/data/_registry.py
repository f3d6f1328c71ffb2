"""Datasets by name, for the command line and experiment configs."""

from __future__ import annotations

import functools
from collections.abc import Callable

from xentax.data._dataset import Dataset
from xentax.data._recommender import implicit_feedback
from xentax.data._tabular import blobs, breast_cancer, cat_not_cat, digits, iris, wine
from xentax.data._text import next_word, synthetic_next_word

DATASETS: dict[str, Callable[..., Dataset]] = {
  "digits": digits,
  "iris": iris,
  "wine": wine,
  "breast_cancer": breast_cancer,
  "cat_not_cat": cat_not_cat,
  "blobs": blobs,
  "blobs_imbalanced": functools.partial(blobs, num_classes=2, imbalance_ratio=20.0),
  "next_word": next_word,
  "synthetic_next_word": synthetic_next_word,
  "implicit_feedback": implicit_feedback,
}

# The task of each dataset (its ``Dataset.task``), known without loading it.
DATASET_TASKS: dict[str, str] = {
  "digits": "multiclass",
  "iris": "multiclass",
  "wine": "multiclass",
  "breast_cancer": "binary",
  "cat_not_cat": "binary",
  "blobs": "binary",
  "blobs_imbalanced": "binary",
  "next_word": "next_word",
  "synthetic_next_word": "next_word",
  "implicit_feedback": "implicit_feedback",
}


def load(name: str, *, seed: int = 0, **options) -> Dataset:
  """Load dataset ``name`` (a key of :data:`DATASETS`) with its split seed and options.

  Raises:
    ValueError: unknown name.
  """
  if name not in DATASETS:
    raise ValueError(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
  return DATASETS[name](seed=seed, **options)
