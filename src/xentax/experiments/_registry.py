"""Experiments by name, their scales, and :func:`run`.

Design notes:
  An experiment is a function ``fn(root, scale) -> ExperimentResult`` in the module of its
  family, plus one line in :data:`EXPERIMENTS`. It writes one folder per training run
  (``config.json``, ``metrics.jsonl``, ``summary.json``, ``curves.png``) under
  ``out_dir/<name>/``, and :func:`run` adds ``out_dir/<name>/summary.json``, the
  :class:`ExperimentResult` as JSON. ``scale`` is ``"full"`` (the settings the bars refer
  to), ``"quick"`` (fewer epochs, smaller sets) or ``"smoke"`` (a few steps, for tests).
  ``report_section`` says which section of ``xentax reproduce`` shows an experiment.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path

from xentax import records
from xentax.experiments import (
  _calibration,
  _classification,
  _distillation,
  _imbalance,
  _language,
  _large_vocab,
  _many_classes,
  _optimizers,
  _recommender,
)
from xentax.experiments._common import SCALES
from xentax.experiments._records import ExperimentResult


@dataclasses.dataclass(frozen=True)
class Experiment:
  """A named experiment: ``runner(root, scale) -> ExperimentResult``."""

  name: str
  description: str
  runner: Callable[[Path, str], ExperimentResult]
  report_section: str = "training"


EXPERIMENTS: dict[str, Experiment] = {
  e.name: e
  for e in [
    Experiment(
      "binary", "logistic regression: breast cancer; cat / not cat", _classification.binary
    ),
    Experiment("multiclass", "softmax regression: digits, iris, wine", _classification.multiclass),
    Experiment("mlp_digits", "flax.nnx MLP on digits", _classification.mlp_digits),
    Experiment("cnn_digits", "small CNN on 8x8 digits", _classification.cnn_digits),
    Experiment("sgd_vs_adam", "SGD vs momentum vs Adam on digits", _optimizers.sgd_vs_adam),
    Experiment(
      "deck_vs_compiled",
      "the deck's per-example loop vs the compiled loop",
      _optimizers.deck_vs_compiled,
    ),
    Experiment(
      "class_imbalance",
      "plain CE vs class weights vs focal on 1:20 blobs, over 5 seeds",
      _imbalance.class_imbalance,
    ),
    Experiment("next_word", "next-word prediction vs the unigram baseline", _language.next_word),
    Experiment(
      "recommender",
      "MovieLens 100K: BCE, full, sampled and in-batch softmax, ranked over the catalogue",
      _recommender.recommender,
    ),
    Experiment(
      "large_vocab",
      "next-word model at V = 32768: fused vs full-logits loss",
      _large_vocab.large_vocab,
      report_section="large_vocabularies",
    ),
    Experiment(
      "many_classes",
      "Zipfian teacher at V = 2^14 and 2^17: full vs sampled vs adaptive softmax",
      _many_classes.many_classes,
      report_section="large_vocabularies",
    ),
    Experiment(
      "distillation",
      "MLP teacher distilled into softmax regression on digits, over seeds",
      _distillation.distillation,
      report_section="soft_targets",
    ),
    Experiment(
      "calibration",
      "ECE before/after temperature scaling: CE vs label smoothing vs focal",
      _calibration.calibration,
      report_section="soft_targets",
    ),
  ]
}


def check(name: str, scale: str = "full") -> None:
  """Raise ValueError for an unknown experiment or scale (before any work)."""
  if name not in EXPERIMENTS:
    raise ValueError(f"unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}")
  if scale not in SCALES:
    raise ValueError(f"unknown scale {scale!r}; choose from {', '.join(SCALES)}")


def run(
  name: str, out_dir: str | Path = "results/training", *, scale: str = "full"
) -> ExperimentResult:
  """Run experiment ``name`` at ``scale``, writing under ``out_dir/name``.

  Returns:
    Its :class:`ExperimentResult` (also written to ``out_dir/name/summary.json``).

  Raises:
    ValueError: unknown experiment or scale.
  """
  check(name, scale)
  root = Path(out_dir) / name
  root.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  result = EXPERIMENTS[name].runner(root, scale)
  result.seconds = time.perf_counter() - start
  records.write_json(root / "summary.json", result)
  return result
