"""The soft-targets report section renders distillation and calibration records."""

import pytest

from xentax import experiments
from xentax.report import _report, _soft_targets_section

pytestmark = pytest.mark.slow  # builds a report section


def _row(run, acc, **extra):
  return experiments.RunRecord(
    run=run,
    model="mlp",
    dataset="digits",
    loss=run,
    optimizer="adam",
    epochs=10,
    test_accuracy=acc,
    test_loss=0.25,
    extra=extra,
  )


def test_render_tabulates_both_experiments_from_their_records():
  distillation = experiments.ExperimentResult(
    "distillation",
    "smoke",
    [
      _row("teacher", 0.97, accuracy=[0.96, 0.98], accuracy_std=0.01, seeds=2),
      _row("student_hard_labels", 0.9, accuracy=[0.89, 0.91], accuracy_std=0.01, seeds=2),
      _row("student_distilled", 0.93, accuracy=[0.92, 0.94], accuracy_std=0.01, seeds=2),
    ],
    info={"temperature": 4.0, "alpha": 0.9, "steps": 10, "gain": 0.03, "hidden": 128},
    figures={"accuracy": "distillation/accuracy.png"},
  )
  ece = dict(
    ece_before_mean=0.1234, ece_before_std=0.01, ece_after_mean=0.0211, ece_after_std=0.002,
    temperature_mean=0.6, temperature_std=0.05, seeds=2,
  )  # fmt: skip
  calibration = experiments.ExperimentResult(
    "calibration",
    "smoke",
    [_row("cross_entropy", 0.96, **ece), _row("focal_gamma_2", 0.95, **ece)],
    info={"steps": 10, "num_bins": 15, "hidden": 128},
    figures={"reliability": "calibration/reliability.png"},
  )
  text = _soft_targets_section.render(distillation, calibration)
  assert "## Soft targets" in text
  assert "| student_distilled (mlp) | 0.9300 | 0.0100 | 0.920, 0.940 |" in text
  assert "+0.0300" in text
  assert (
    "| cross_entropy | 0.9600 | 0.2500 | 0.1234 ± 0.0100 | 0.60 ± 0.05 | 0.0211 ± 0.0020 |" in text
  )
  assert "(training/distillation/accuracy.png)" in text
  assert "(training/calibration/reliability.png)" in text


def test_soft_targets_is_a_reproduce_section():
  assert "soft_targets" in _report.SECTIONS
  assert _report.check_sections(["soft_targets"]) == ["soft_targets"]
