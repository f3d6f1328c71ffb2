"""Calibration: ECE before and after temperature scaling, for CE, label smoothing and focal.

Design notes:
  An MLP (one hidden layer of 128) is trained on digits with each objective from the same
  initialisation; the last 20% of the training split is held out as a validation set, on
  which :func:`xentax.metrics.fit_temperature` fits ``T``. The expected calibration error
  (15 equal-width bins, top-label confidence) is measured on the test split with the raw
  logits and with ``logits / T``. Numbers are means over seeds; the reliability diagrams
  are seed 0's.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

import xentax
from xentax import data as xdata
from xentax import metrics, plots
from xentax.experiments._records import ExperimentResult, RunRecord
from xentax.experiments._soft_targets import SEEDS, STEPS, accuracy, fit, init_params, logits_of

HIDDEN, NUM_BINS = 128, 15
OBJECTIVES = {
  "cross_entropy": lambda z, y, t: xentax.sparse_categorical_cross_entropy_with_logits(z, y),
  "label_smoothing_0.1": lambda z, y, t: xentax.sparse_categorical_cross_entropy_with_logits(
    z, y, label_smoothing=0.1
  ),
  "focal_gamma_2": lambda z, y, t: xentax.sparse_categorical_focal_loss_with_logits(
    z, y, gamma=2.0
  ),
}


def _bins(logits, y) -> dict:
  bins = metrics.calibration_bins(logits, y, num_bins=NUM_BINS)
  out = {k: np.asarray(v, np.float64).tolist() for k, v in bins._asdict().items()}
  out["ece"] = float(metrics.expected_calibration_error(logits, y, num_bins=NUM_BINS))
  return out


def _one_seed(seed: int, steps: int) -> dict[str, dict]:
  ds = xdata.digits(seed=seed)
  n_fit = int(0.8 * len(ds.y_train))
  x_fit, y_fit = ds.x_train[:n_fit], ds.y_train[:n_fit]
  x_val, y_val = ds.x_train[n_fit:], ds.y_train[n_fit:]
  params0 = init_params(jax.random.key(seed), (ds.x_train.shape[1], HIDDEN, 10))
  out = {}
  for name, loss in OBJECTIVES.items():
    params, _ = fit(params0, x_fit, y_fit, loss, steps=steps)
    temperature = float(metrics.fit_temperature(logits_of(params, x_val), y_val))
    test = logits_of(params, ds.x_test)
    out[name] = {
      "accuracy": accuracy(test, ds.y_test),
      "nll": float(xentax.sparse_categorical_cross_entropy_with_logits(test, ds.y_test)),
      "temperature": temperature,
      "before": _bins(test, ds.y_test),
      "after": _bins(test / temperature, ds.y_test),
    }
  return out


def calibration(root: Path, scale: str) -> ExperimentResult:
  """Each objective's test ECE before and after temperature scaling, over seeds.

  One row per objective: ``test_accuracy`` and ``test_loss`` (NLL of the raw logits) are
  means over seeds; ``extra`` has ``ece_before``, ``ece_after`` and ``temperature`` (per
  seed) and their means (``*_mean``) and standard deviations (``*_std``). Figure
  ``reliability``: seed 0's reliability diagrams, before (top) and after (bottom).
  """
  steps, seeds = STEPS[scale], range(SEEDS[scale])
  per_seed = [_one_seed(seed, steps) for seed in seeds]
  rows = []
  for name in OBJECTIVES:
    runs = [s[name] for s in per_seed]
    extra: dict[str, object] = {"seeds": len(runs)}
    for key, values in (
      ("ece_before", [r["before"]["ece"] for r in runs]),
      ("ece_after", [r["after"]["ece"] for r in runs]),
      ("temperature", [r["temperature"] for r in runs]),
    ):
      extra[key] = values
      extra[f"{key}_mean"] = float(np.mean(values))
      extra[f"{key}_std"] = float(np.std(values))
    rows.append(
      RunRecord(
        run=name,
        model="mlp",
        dataset="digits",
        loss=name,
        optimizer="adam",
        epochs=steps,
        test_accuracy=float(np.mean([r["accuracy"] for r in runs])),
        test_loss=float(np.mean([r["nll"] for r in runs])),
        extra=extra,
      )
    )
  panels = {}
  for name, r in per_seed[0].items():
    panels[f"{name}, raw"] = r["before"]
    panels[f"{name}, T = {r['temperature']:.2f}"] = r["after"]
  figure = plots.reliability_panels(
    panels, columns=2, title="digits MLP: test reliability before / after temperature scaling"
  )
  plots.save(figure, root / "reliability.png")
  info = {"steps": steps, "num_bins": NUM_BINS, "hidden": HIDDEN}
  return ExperimentResult(
    "calibration", scale, rows, info=info, figures={"reliability": f"{root.name}/reliability.png"}
  )
