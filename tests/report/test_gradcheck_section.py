"""The report's gradient-verification section."""

import numpy as np

from xentax.gradcheck import _matrix
from xentax.report import SECTIONS, _gradcheck_section


def test_section_writes_table_and_a_v_shaped_figure(tmp_path):
  assert SECTIONS["gradient_verification"] is _gradcheck_section.section
  markdown = _gradcheck_section.section(
    tmp_path, quick=True, losses=["binary_focal_loss_with_logits"]
  )
  assert markdown.startswith("## Gradient verification")
  # quick: one dtype; two references per case, one per option gradient (gamma, alpha).
  loss = "binary_focal_loss_with_logits"
  n = 2 * sum(c[0] == loss for c in _matrix.cases()) + sum(
    c[0] == loss for c in _matrix.option_cases()
  )
  assert n == 16
  assert f"**{n} of {n} checks pass**" in markdown
  assert f"| `{loss}` | {n}/{n}," in markdown
  assert (tmp_path / "gradcheck_step_size.png").stat().st_size > 20_000

  # The figure's data: a V, with its bottom far below both ends.
  errors = _gradcheck_section.step_size_errors()
  steps = _gradcheck_section.STEPS
  for name, bottom in [("float64", 1e-9), ("float32", 1e-3)]:
    central = errors[name]["central"]
    best = int(np.argmin(central))
    assert central[best] < bottom
    assert central[0] > 100 * central[best] and central[-1] > 100 * central[best]
    # Central differences beat forward differences at their own best step.
    assert central[best] < np.min(errors[name]["forward"])
  assert steps[int(np.argmin(errors["float64"]["central"]))] < 1e-3
