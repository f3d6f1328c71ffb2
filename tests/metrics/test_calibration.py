"""ECE / MCE / bins against an explicit NumPy binning; properties with hypothesis."""

import hypothesis.extra.numpy as hnp
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import _reference as ref
from xentax import metrics

rng = np.random.default_rng(7)
Z = rng.normal(size=(301, 4)) * 2.5
Y = rng.integers(0, 4, 301)


@pytest.mark.parametrize("binning", ["width", "mass"])
@pytest.mark.parametrize("num_bins", [1, 10, 15])
def test_ece_and_mce_match_reference(binning, num_bins):
  ece_want, mce_want = ref.calibration_errors(Z, Y, num_bins=num_bins, binning=binning)
  kw = dict(num_bins=num_bins, binning=binning)
  np.testing.assert_allclose(metrics.expected_calibration_error(Z, Y, **kw), ece_want, rtol=1e-10)
  np.testing.assert_allclose(metrics.maximum_calibration_error(Z, Y, **kw), mce_want, rtol=1e-10)


def test_hand_computed():
  z = np.log(np.array([[0.9, 0.1], [0.9, 0.1]]))
  # One bin (0.8, 0.93]: accuracy 1/2, confidence 0.9.
  np.testing.assert_allclose(metrics.expected_calibration_error(z, np.array([0, 1])), 0.4)
  perfect = np.log(np.array([[0.5, 0.5], [0.5, 0.5]]))
  np.testing.assert_allclose(metrics.expected_calibration_error(perfect, np.array([0, 1])), 0.0)


def test_width_bins_are_closed_on_the_right():
  """Bin b is (b/B, (b+1)/B]: a confidence on an edge falls in the bin below it."""
  z = np.array([[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, -np.inf, -np.inf], [0.0, -np.inf, -np.inf, 0.0]])
  bins = metrics.calibration_bins(z, np.array([0, 0, 3]), num_bins=4)  # confidences 1/4, 1/2, 1/2
  np.testing.assert_array_equal(bins.count, [1, 2, 0, 0])
  np.testing.assert_allclose(bins.confidence, [0.25, 0.5, 0.0, 0.0])
  np.testing.assert_allclose(bins.accuracy, [1.0, 0.5, 0.0, 0.0])
  one = metrics.calibration_bins(np.array([[0.0, -np.inf]]), np.array([0]), num_bins=4)
  np.testing.assert_array_equal(one.count, [0, 0, 0, 1])  # confidence 1 in the last bin


def test_mass_bins_are_equal_count():
  bins = metrics.calibration_bins(Z, Y, num_bins=10, binning="mass")
  counts = np.asarray(bins.count)
  assert counts.sum() == 301 and counts.max() - counts.min() <= 1
  assert np.all(np.asarray(bins.lower) <= np.asarray(bins.confidence))
  assert np.all(np.asarray(bins.confidence) <= np.asarray(bins.upper))


def test_where_and_ignore_index_drop_examples_under_jit():
  y = Y.copy()
  y[:100] = -1
  where = np.arange(301) < 250

  @jax.jit
  def f(y, where):
    return metrics.expected_calibration_error(Z, y, ignore_index=-1, where=where, binning="mass")

  want, _ = ref.calibration_errors(Z[100:250], Y[100:250], binning="mass")
  np.testing.assert_allclose(f(y, where), want, rtol=1e-10)
  none = metrics.expected_calibration_error(Z, np.full(301, -1), ignore_index=-1)
  assert none == 0


def test_bad_inputs():
  with pytest.raises(ValueError, match="binning='quantile'"):
    metrics.expected_calibration_error(Z, Y, binning="quantile")
  with pytest.raises(ValueError, match="num_bins=0"):
    metrics.maximum_calibration_error(Z, Y, num_bins=0)
  with pytest.raises(ValueError, match="labels have shape"):
    metrics.calibration_bins(Z, Y[:5])


logits = hnp.arrays(np.float64, (20, 3), elements=st.floats(-30, 30, allow_nan=False))
labels = hnp.arrays(np.int64, (20,), elements=st.integers(0, 2))


@pytest.mark.slow  # hypothesis: 12 examples, most of this module's time
@settings(max_examples=12, deadline=None)
@given(logits, labels, st.sampled_from(["width", "mass"]), st.integers(1, 20))
def test_properties(z, y, binning, num_bins):
  ece = float(metrics.expected_calibration_error(z, y, num_bins=num_bins, binning=binning))
  mce = float(metrics.maximum_calibration_error(z, y, num_bins=num_bins, binning=binning))
  assert 0 <= ece <= mce + 1e-12 <= 1 + 1e-12
  want, _ = ref.calibration_errors(z, y, num_bins=num_bins, binning=binning)
  np.testing.assert_allclose(ece, want, rtol=1e-9, atol=1e-12)
