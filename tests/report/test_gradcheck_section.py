"""The report's gradient-verification section renders gradcheck records and the study."""

from xentax.report import SECTIONS, _gradcheck_section


def test_section_writes_table_and_figure(tmp_path):
  assert SECTIONS["gradient_verification"] is _gradcheck_section.section
  markdown = _gradcheck_section.section(tmp_path, "quick", losses=["binary_focal_loss_with_logits"])
  assert markdown.startswith("## Gradient verification")
  assert "**14 of 14 checks pass**" in markdown
  assert "| `binary_focal_loss_with_logits` | 14/14," in markdown
  assert "| float64 | analytic | 7/7 |" in markdown
  assert (tmp_path / "gradcheck_step_size.png").stat().st_size > 20_000
