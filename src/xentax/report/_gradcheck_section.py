"""Report section: the gradient-check matrix, and finite-difference error against step size.

It renders :func:`xentax.gradcheck.check_matrix` records (summarised per dtype and
reference, then per loss; ``xentax gradcheck`` prints the full table) and the
:func:`xentax.experiments.step_size_errors` study, which shows why the finite-difference
tolerances are what they are.
"""

from __future__ import annotations

from pathlib import Path

from xentax import experiments, gradcheck, plots


def summary_rows(checks: list[gradcheck.GradCheckRecord]) -> list[dict]:
  """Per dtype and reference: checks, passed, worst errors, the worst case, the rtol."""
  out = []
  for dtype in dict.fromkeys(c.dtype for c in checks):
    for reference in dict.fromkeys(c.reference for c in checks):
      group = [c for c in checks if c.dtype == dtype and c.reference == reference]
      if not group:
        continue
      worst = max(group, key=lambda c: c.max_rel_error)
      options = ", ".join(f"{k}={v}" for k, v in worst.options.items())
      out.append(
        {
          "dtype": dtype,
          "reference": reference,
          "checks": len(group),
          "passed": sum(c.passed for c in group),
          "max_abs_error": max(c.max_abs_error for c in group),
          "max_rel_error": worst.max_rel_error,
          "worst_case": f"{worst.loss}({options})",
          "rtol": worst.rtol,
        }
      )
  return out


def render(
  checks: list[gradcheck.GradCheckRecord], study: experiments.StepSizeStudy, figure: str
) -> str:
  """The section's Markdown from the checks and the step-size study."""
  dtypes = list(dict.fromkeys(c.dtype for c in checks))
  failed = sum(not c.passed for c in checks)
  lines = [
    "## Gradient verification",
    "",
    f"`jax.grad` of every loss, for each of its options and reductions, against the closed "
    f"form of `xentax.gradcheck.logits_grad` and against float64 central differences, in "
    f"{', '.join(dtypes)}: **{len(checks) - failed} of {len(checks)} checks pass**. "
    "A check passes when every entry satisfies `|actual - expected| <= atol + rtol |expected|`;"
    " the references are computed in float64 at the same (rounded) inputs. The deck's models"
    " (softmax regression `X^T (softmax(XW + b) - Y) / n`, logistic regression) are checked the"
    " same way. `xentax gradcheck` prints the full table, one row per option set.",
    "",
    "| dtype | reference | passed | max abs. error | max rel. error | worst case | rtol |",
    "|---|---|---|---|---|---|---|",
  ]
  for row in summary_rows(checks):
    lines.append(
      f"| {row['dtype']} | {row['reference']} | {row['passed']}/{row['checks']} "
      f"| {row['max_abs_error']:.1e} | {row['max_rel_error']:.1e} | `{row['worst_case']}` "
      f"| {row['rtol']:.0e} |"
    )
  lines += [
    "",
    "Per loss (all option sets and both references), checks passed and the largest relative error:",
    "",
    "| loss | " + " | ".join(dtypes) + " |",
    "|---|" + "---|" * len(dtypes),
  ]
  for loss in dict.fromkeys(c.loss for c in checks):
    cells = []
    for dtype in dtypes:
      group = [c for c in checks if c.loss == loss and c.dtype == dtype]
      if not group:
        cells.append("-")
        continue
      worst = max(c.max_rel_error for c in group)
      cells.append(f"{sum(c.passed for c in group)}/{len(group)}, {worst:.1e}")
    lines.append(f"| `{loss}` | " + " | ".join(cells) + " |")
  h64, e64 = study.best("float64")
  h32, e32 = study.best("float32")
  lines += [
    "",
    "The relative error is taken entry by entry, so its maximum comes from the smallest"
    " entries; those pass through `atol`. bfloat16 gradients carry one rounding to 8"
    " significant bits (unit roundoff 3.9e-3), float32 a few float32 ulps.",
    "",
    f"![finite-difference error against step size]({figure})",
    "",
    "Error of finite differences of the sparse cross-entropy gradient against its closed form."
    f" Central differences are best near h = {h64:.0e} in float64 (error {e64:.0e}) and near"
    f" h = {h32:.0e} in float32 (error {e32:.0e}, {e32 / e64:.0e} times worse): left of the"
    " bottom round-off grows as 1/h, right of it truncation grows as h^2 (h for forward"
    " differences). So xentax takes differences in float64 only, and compares float32 and"
    f" bfloat16 gradients with those float64 references. Its step, h = {study.chosen_step:g},"
    " sits left of the float64 bottom on purpose: truncation scales with the third"
    " derivative, which is large for the probability-input losses (1/p^3), while round-off"
    " is bounded by the known |f| and added to `atol`"
    " (`xentax.gradcheck.finite_difference_noise`).",
    "",
  ]
  return "\n".join(lines)


def section(out_dir: Path, scale: str = "full", losses: list[str] | None = None) -> str:
  """Run the matrix (float64 only unless ``scale == "full"``) and the step-size study."""
  dtypes = gradcheck.DTYPES if scale == "full" else ("float64",)
  checks = gradcheck.check_matrix(dtypes, losses=losses, progress=True)
  study = experiments.step_size_errors()
  figure = plots.step_size_errors(
    study.steps,
    study.errors,
    chosen_step=study.chosen_step,
    title="Truncation (right) against round-off (left); dotted: $u^{1/3}$",
  )
  plots.save(figure, out_dir / "gradcheck_step_size.png")
  return render(checks, study, "gradcheck_step_size.png")
