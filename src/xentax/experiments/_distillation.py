"""Distillation: an MLP teacher on digits distilled into softmax regression, over seeds.

Design notes:
  Each seed draws its own train/test split and initialisations. The teacher (an MLP with
  one hidden layer of 128) is trained on hard labels; the student (softmax regression) is
  trained twice from the same initialisation: on hard labels (cross-entropy) and with
  :func:`xentax.distillation_loss` against the frozen teacher's logits (``T = 4``,
  ``alpha = 0.9``). Rows report the mean test accuracy over seeds with its standard
  deviation; the per-seed numbers are in ``extra``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

import xentax
from xentax import data as xdata
from xentax import plots
from xentax.experiments._records import ExperimentResult, RunRecord
from xentax.experiments._soft_targets import SEEDS, STEPS, accuracy, fit, init_params, logits_of

TEMPERATURE, ALPHA, HIDDEN = 4.0, 0.9, 128


def _hard(logits, y, teacher):
  return xentax.sparse_categorical_cross_entropy_with_logits(logits, y)


def _distill(logits, y, teacher):
  return xentax.distillation_loss(logits, teacher, y, temperature=TEMPERATURE, alpha=ALPHA)


def _one_seed(seed: int, steps: int) -> dict[str, float]:
  ds = xdata.digits(seed=seed)
  k_teacher, k_student = jax.random.split(jax.random.key(seed))
  dims = ds.x_train.shape[1]
  teacher, _ = fit(
    init_params(k_teacher, (dims, HIDDEN, 10)), ds.x_train, ds.y_train, _hard, steps=steps
  )
  teacher_train = logits_of(teacher, ds.x_train)
  student0 = init_params(k_student, (dims, 10))
  out = {"teacher": accuracy(logits_of(teacher, ds.x_test), ds.y_test)}
  for name, loss in (("student_hard_labels", _hard), ("student_distilled", _distill)):
    student, _ = fit(
      student0, ds.x_train, ds.y_train, loss, steps=steps, teacher_logits=teacher_train
    )
    out[name] = accuracy(logits_of(student, ds.x_test), ds.y_test)
  return out


def distillation(root: Path, scale: str) -> ExperimentResult:
  """Teacher, hard-label student and distilled student, over ``SEEDS[scale]`` seeds.

  One row per model: ``test_accuracy`` is the mean over seeds (``test_loss`` is not
  measured: NaN); ``extra`` has ``accuracy`` (per seed), ``accuracy_std`` and ``seeds``.
  ``info`` has ``temperature``, ``alpha``, ``steps`` and ``gain`` (distilled minus hard
  mean accuracy). Figure ``accuracy``: test accuracy per model, mean and each seed.
  """
  steps, seeds = STEPS[scale], range(SEEDS[scale])
  per_seed = [_one_seed(seed, steps) for seed in seeds]
  models = {
    "teacher": "mlp",
    "student_hard_labels": "softmax_regression",
    "student_distilled": "softmax_regression",
  }
  rows = []
  for name, model in models.items():
    acc = [run[name] for run in per_seed]
    rows.append(
      RunRecord(
        run=name,
        model=model,
        dataset="digits",
        loss="distillation" if name == "student_distilled" else "cross_entropy",
        optimizer="adam",
        epochs=steps,
        test_accuracy=float(np.mean(acc)),
        test_loss=float("nan"),
        extra={"accuracy": acc, "accuracy_std": float(np.std(acc)), "seeds": len(acc)},
      )
    )
  figure = plots.accuracy_over_seeds(
    {row.run: row.extra["accuracy"] for row in rows},
    title=f"digits: MLP teacher distilled into softmax regression ({len(per_seed)} seeds)",
  )
  plots.save(figure, root / "accuracy.png")
  gain = rows[2].test_accuracy - rows[1].test_accuracy
  info = {
    "temperature": TEMPERATURE,
    "alpha": ALPHA,
    "steps": steps,
    "gain": gain,
    "hidden": HIDDEN,
  }
  return ExperimentResult(
    "distillation", scale, rows, info=info, figures={"accuracy": f"{root.name}/accuracy.png"}
  )
