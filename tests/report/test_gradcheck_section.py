"""The report's gradient-verification section renders gradcheck records and the study."""

import pytest

from xentax.gradcheck import _matrix
from xentax.report import SECTIONS, _gradcheck_section

pytestmark = pytest.mark.slow  # builds a report section (the gradcheck matrix)


def test_section_writes_table_and_figure(tmp_path):
  assert SECTIONS["gradient_verification"] is _gradcheck_section.section
  markdown = _gradcheck_section.section(tmp_path, "quick", losses=["binary_focal_loss_with_logits"])
  assert markdown.startswith("## Gradient verification")
  # quick: one dtype; two references per case (none; each of 5 options alone; all of them
  # under "mean" and "none"), one per option gradient (gamma, alpha, label_smoothing,
  # sample_weight).
  loss = "binary_focal_loss_with_logits"
  n = 2 * sum(c[0] == loss for c in _matrix.cases()) + sum(
    c[0] == loss for c in _matrix.option_cases()
  )
  assert n == 20
  assert f"**{n} of {n} checks pass**" in markdown
  assert f"| `{loss}` | {n}/{n}," in markdown
  assert (tmp_path / "gradcheck_step_size.png").stat().st_size > 20_000
