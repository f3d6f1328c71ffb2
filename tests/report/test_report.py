"""The report: worked examples, and ``reproduce`` writing REPORT.md section by section."""

import math

import pytest

from xentax import cli
from xentax.report import _report, _worked_examples, reproduce

pytestmark = pytest.mark.slow  # builds the report


def test_worked_examples_match_the_deck_and_hand_values():
  rows = _worked_examples.worked_examples()
  for row in rows:
    assert row["xentax"] == pytest.approx(row["by_hand"], rel=1e-6)
    if row["deck"] is not None:
      assert row["xentax"] == pytest.approx(row["deck"], abs=5e-5)
  assert rows[-1]["by_hand"] == pytest.approx((-math.log(0.8) - math.log(0.7)) / 2)


def test_reproduce_writes_report_and_figure_and_prints_timings(tmp_path, capsys):
  assert cli.main(["reproduce", "--out", str(tmp_path), "--only", "worked_examples"]) == 0
  report = (tmp_path / "REPORT.md").read_text()
  assert "0.2231" in report and "loss_vs_probability.png" in report
  assert "| worked_examples |" in report and "| total |" in report
  assert (tmp_path / "loss_vs_probability.png").stat().st_size > 10_000
  out = capsys.readouterr().out
  assert "[1/1] worked_examples ..." in out and "[1/1] worked_examples done in" in out


def test_a_crash_leaves_the_sections_done_so_far(tmp_path, monkeypatch):
  def boom(out_dir, scale):
    raise KeyboardInterrupt

  monkeypatch.setitem(_report.SECTIONS, "training", boom)
  with pytest.raises(KeyboardInterrupt):
    reproduce(tmp_path, only=["worked_examples", "training"])
  report = (tmp_path / "REPORT.md").read_text()
  assert "## The deck's worked examples" in report
  assert "**Section `training` interrupted; the sections above are complete.**" in report


def test_ctrl_c_in_reproduce_exits_130(tmp_path, monkeypatch, capsys):
  def boom(out_dir, scale):
    raise KeyboardInterrupt

  monkeypatch.setitem(_report.SECTIONS, "worked_examples", boom)
  assert cli.main(["reproduce", "--out", str(tmp_path), "--only", "worked_examples"]) == 130
  assert "REPORT.md holds the sections completed" in capsys.readouterr().err


def test_unknown_section_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="unknown report section"):
    reproduce(tmp_path, only=["nope"])
