"""Next-word prediction on standard-library docstrings, judged against the constant predictor
that knows only the label frequencies (the unigram model), drawn as a line on its curves.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from xentax import data as xdata
from xentax.experiments._common import train_run
from xentax.experiments._records import ExperimentResult
from xentax.training import TrainConfig


def unigram_cross_entropy(ds: xdata.Dataset) -> float:
  """Test cross-entropy of the add-one-smoothed training unigram distribution (nats)."""
  counts = np.bincount(ds.y_train, minlength=ds.num_classes).astype(np.float64) + 1.0
  log_probs = np.log(counts / counts.sum())
  return float(-log_probs[ds.y_test].mean())


def base_rate_cross_entropy(ds: xdata.Dataset) -> float:
  """Binary cross-entropy on the test set of the constant training base rate (nats)."""
  rate = float(ds.y_train.mean())
  y = ds.y_test.astype(np.float64)
  return float(-np.mean(y * math.log(rate) + (1 - y) * math.log(1 - rate)))


def next_word(root: Path, scale: str) -> ExperimentResult:
  """An embedding + MLP next-word model on stdlib docstrings vs the unigram baseline.

  Row ``extra``: ``unigram_test_loss``, ``train_examples``; ``info["corpus"]``: the
  corpus's size.
  """
  options = {"vocab_size": 2000, "context": 3}
  if scale != "full":
    options["max_docs"] = 1500
  ds = xdata.next_word(seed=0, **options)
  if scale == "smoke":
    ds = ds.subset(2000, 500)
  config = TrainConfig(
    model="next_word_mlp",
    dataset="next_word",
    epochs=2,
    batch_size=512,
    dataset_options=options,
    model_options={"hidden": 128},
  )
  baseline = unigram_cross_entropy(ds)
  row = train_run(
    root,
    "next_word_mlp",
    config,
    scale,
    dataset=ds,
    baselines={"unigram test CE": baseline},
    unigram_test_loss=baseline,
    train_examples=len(ds.y_train),
  )
  row.bar = "test CE below the unigram baseline's"
  row.bar_met = bool(row.test_loss < baseline)
  return ExperimentResult("next_word", scale, [row], info={"corpus": xdata.corpus_stats()})
