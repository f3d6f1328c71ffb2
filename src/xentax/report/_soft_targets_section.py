"""Report section: soft targets, distillation and calibration on digits.

It renders the ``distillation`` and ``calibration`` experiments' results (rows and
figures); the experiments do the training and measuring.
"""

from __future__ import annotations

from pathlib import Path

from xentax import experiments


def distillation_lines(result: experiments.ExperimentResult, figure_dir: str) -> list[str]:
  info = result.info
  seeds = result.rows[0].extra["seeds"]
  lines = [
    "### Distillation",
    "",
    f"An MLP teacher (one hidden layer of {info['hidden']}) on digits, distilled into softmax"
    f" regression with `xentax.distillation_loss` (T = {info['temperature']},"
    f" alpha = {info['alpha']}), against the same student from the same initialisation"
    f" trained on hard labels; {info['steps']} full-batch Adam steps each, {seeds} seeds"
    " (each its own split).",
    "",
    "| model | test accuracy (mean) | std over seeds | per seed |",
    "|---|---|---|---|",
  ]
  for row in result.rows:
    per_seed = ", ".join(f"{a:.3f}" for a in row.extra["accuracy"])
    lines.append(
      f"| {row.run} ({row.model}) | {row.test_accuracy:.4f} | {row.extra['accuracy_std']:.4f}"
      f" | {per_seed} |"
    )
  lines += [
    "",
    f"Distilled minus hard-label student, mean accuracy: {info['gain']:+.4f}.",
    "",
    f"![accuracy over seeds]({figure_dir}/{result.figures['accuracy']})",
    "",
  ]
  return lines


def calibration_lines(result: experiments.ExperimentResult, figure_dir: str) -> list[str]:
  info = result.info
  seeds = result.rows[0].extra["seeds"]
  lines = [
    "### Calibration",
    "",
    f"An MLP (hidden {info['hidden']}) on digits trained with each objective, {info['steps']}"
    " full-batch Adam steps. Test ECE (`xentax.metrics.expected_calibration_error`,"
    f" {info['num_bins']} equal-width bins) of the raw logits and after temperature scaling"
    " (`xentax.metrics.fit_temperature` on a validation split held out of the training set);"
    f" mean ± std over {seeds} seeds.",
    "",
    "| objective | test accuracy | test NLL | ECE raw | fitted T | ECE after scaling |",
    "|---|---|---|---|---|---|",
  ]
  for row in result.rows:
    e = row.extra
    lines.append(
      f"| {row.run} | {row.test_accuracy:.4f} | {row.test_loss:.4f}"
      f" | {e['ece_before_mean']:.4f} ± {e['ece_before_std']:.4f}"
      f" | {e['temperature_mean']:.2f} ± {e['temperature_std']:.2f}"
      f" | {e['ece_after_mean']:.4f} ± {e['ece_after_std']:.4f} |"
    )
  lines += [
    "",
    f"![reliability diagrams]({figure_dir}/{result.figures['reliability']})",
    "",
  ]
  return lines


def render(
  distillation: experiments.ExperimentResult,
  calibration: experiments.ExperimentResult,
  figure_dir: str = "training",
) -> str:
  return "\n".join(
    [
      "## Soft targets: distillation and calibration",
      "",
      *distillation_lines(distillation, figure_dir),
      *calibration_lines(calibration, figure_dir),
    ]
  )


def section(out_dir: Path, scale: str = "full") -> str:
  """The ``distillation`` and ``calibration`` experiments, rendered."""
  root = Path(out_dir) / "training"
  distillation = experiments.run("distillation", root, scale=scale)
  calibration = experiments.run("calibration", root, scale=scale)
  return render(distillation, calibration)
