"""The report and the command line."""

import math
import subprocess
import sys

import pytest

import xentax
from xentax import cli
from xentax.report import _worked_examples


def test_worked_examples_match_the_deck_and_hand_values():
  rows = _worked_examples.worked_examples()
  for row in rows:
    assert row["xentax"] == pytest.approx(row["by_hand"], rel=1e-6)
    if row["deck"] is not None:
      assert row["xentax"] == pytest.approx(row["deck"], abs=5e-5)
  assert rows[-1]["by_hand"] == pytest.approx((-math.log(0.8) - math.log(0.7)) / 2)


def test_reproduce_writes_report_and_figure(tmp_path):
  assert cli.main(["reproduce", "--out", str(tmp_path), "--only", "worked_examples"]) == 0
  report = (tmp_path / "REPORT.md").read_text()
  assert "0.2231" in report and "loss_vs_probability.png" in report
  assert (tmp_path / "loss_vs_probability.png").stat().st_size > 10_000


def test_unknown_section_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="unknown report section"):
    cli.main(["reproduce", "--out", str(tmp_path), "--only", "nope"])


def test_console_script_version():
  out = subprocess.run(
    [sys.executable, "-m", "xentax.cli", "--version"], capture_output=True, text=True, check=True
  )
  assert out.stdout.strip() == f"xentax {xentax.__version__}"
