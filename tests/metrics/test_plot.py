"""The reliability diagram is a bare matplotlib Figure drawn from the calibration bins."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xentax import metrics

pytestmark = pytest.mark.slow  # draws figures, one in a fresh process

matplotlib = pytest.importorskip("matplotlib")


def test_returns_a_figure_with_the_bins(tmp_path):
  from matplotlib.figure import Figure

  rng = np.random.default_rng(9)
  z, y = rng.normal(size=(200, 3)) * 3, rng.integers(0, 3, 200)
  fig = metrics.reliability_diagram(z, y, num_bins=10, title="test")
  assert isinstance(fig, Figure)
  diagram, hist = fig.axes
  assert diagram.get_title() == "test"
  bins = metrics.calibration_bins(z, y, num_bins=10)
  accuracy_bars = diagram.containers[0]
  heights = sorted(bar.get_height() for bar in accuracy_bars)
  np.testing.assert_allclose(heights, sorted(np.asarray(bins.accuracy)[bins.count > 0]))
  counts = [bar.get_height() for bar in hist.containers[0]]
  assert sum(counts) == 200
  ece = float(metrics.expected_calibration_error(z, y, num_bins=10))
  assert f"{ece:.3f}" in diagram.get_legend().get_texts()[1].get_text()
  fig.savefig(tmp_path / "reliability.png")
  assert (tmp_path / "reliability.png").stat().st_size > 0


def test_mass_binning_without_pyplot():
  """In a fresh interpreter: drawing the diagram imports no pyplot (no backend is chosen)."""
  code = (
    "import sys, numpy as np; from xentax import metrics; "
    "r = np.random.default_rng(10); "
    "fig = metrics.reliability_diagram(r.normal(size=(50, 4)), r.integers(0, 4, 50), "
    "binning='mass'); "
    "assert len(fig.axes) == 2; "
    "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot was imported'"
  )
  src = str(Path(metrics.__file__).parents[2])
  env = {**os.environ, "PYTHONPATH": src}
  result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
  assert result.returncode == 0, result.stderr
