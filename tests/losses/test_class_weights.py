"""Class weights from counts: inverse frequency and effective number (Cui et al. 2019)."""

import jax
import numpy as np
import pytest

import xentax
from tests import _reference as ref

rng = np.random.default_rng(5)
LABELS = rng.choice(5, size=200, p=[0.6, 0.25, 0.1, 0.05, 0.0])


@pytest.mark.parametrize("beta", [0.0, 0.9, 0.999, 0.99999])
def test_effective_number_matches_reference(beta):
  got = xentax.effective_number_class_weights(LABELS, 5, beta=beta)
  np.testing.assert_allclose(got, ref.effective_number_class_weights(LABELS, 5, beta), rtol=1e-5)
  assert got[4] == 0  # absent class


def test_inverse_frequency_matches_reference_and_balances():
  got = xentax.inverse_frequency_class_weights(LABELS, 5)
  np.testing.assert_allclose(got, ref.inverse_frequency_class_weights(LABELS, 5), rtol=1e-6)
  counts = np.bincount(LABELS, minlength=5)
  contributions = np.asarray(got) * counts  # every present class contributes equally
  np.testing.assert_allclose(contributions[:4], contributions[0], rtol=1e-5)


def test_beta_limits():
  eq = xentax.effective_number_class_weights(LABELS, 5, beta=0.0)
  np.testing.assert_allclose(eq[:4], 1.0, rtol=1e-6)
  near_one = xentax.effective_number_class_weights(LABELS, 5, beta=1 - 1e-7)
  np.testing.assert_allclose(near_one, xentax.inverse_frequency_class_weights(LABELS, 5), rtol=1e-3)


def test_ignore_index_where_and_jit():
  y = LABELS.copy()
  y[:50] = -1
  got = xentax.inverse_frequency_class_weights(y, 5, ignore_index=-1)
  np.testing.assert_allclose(got, ref.inverse_frequency_class_weights(LABELS[50:], 5), rtol=1e-6)
  where = np.arange(200) >= 50
  masked = jax.jit(lambda w: xentax.effective_number_class_weights(LABELS, 5, where=w))(where)
  np.testing.assert_allclose(
    masked, ref.effective_number_class_weights(LABELS[50:], 5, 0.999), rtol=1e-5
  )


def test_bad_inputs():
  with pytest.raises(ValueError, match="beta=1.0"):
    xentax.effective_number_class_weights(LABELS, 5, beta=1.0)
  with pytest.raises(ValueError, match="labels must lie in"):
    xentax.inverse_frequency_class_weights(LABELS, 3)
  with pytest.raises(TypeError, match="labels must be integer"):
    xentax.inverse_frequency_class_weights(LABELS.astype(float), 5)
  with pytest.raises(ValueError, match="num_classes=0"):
    xentax.inverse_frequency_class_weights(LABELS, 0)
