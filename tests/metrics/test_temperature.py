"""Temperature scaling: the fitted T minimises the NLL (checked against SciPy in float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from tests import _reference as ref
from xentax import metrics

pytestmark = pytest.mark.slow  # fits temperatures against SciPy

rng = np.random.default_rng(8)


def _nll(z, y, temperature):
  return np.mean([-ref._log_softmax(row / temperature)[t] for row, t in zip(z, y, strict=True)])


def _draw(true_temperature, n=400, c=5):
  z = rng.normal(size=(n, c)) * 3
  p = np.exp(np.apply_along_axis(ref._log_softmax, 1, z / true_temperature))
  y = np.array([rng.choice(c, p=row) for row in p])
  return z, y


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 3.0])
def test_matches_scipy_minimiser(true_temperature):
  z, y = _draw(true_temperature)
  got = float(metrics.fit_temperature(z, y))
  best = optimize.minimize_scalar(
    lambda log_t: _nll(z, y, np.exp(log_t)), bounds=(-5, 5), method="bounded",
    options={"xatol": 1e-10},
  )  # fmt: skip
  np.testing.assert_allclose(got, np.exp(best.x), rtol=1e-5)
  assert _nll(z, y, got) <= best.fun + 1e-12
  # And the derivative of the NLL in T vanishes there.
  h = 1e-5 * got
  assert abs(_nll(z, y, got + h) - _nll(z, y, got - h)) / (2 * h) < 1e-6


def test_scaling_reduces_ece_on_overconfident_logits():
  z, y = _draw(3.0, n=2000)
  temperature = metrics.fit_temperature(z, y)
  before = metrics.expected_calibration_error(z, y)
  after = metrics.expected_calibration_error(z / temperature, y)
  assert float(after) < 0.5 * float(before)


def test_jit_float32_masks_and_edge_cases():
  z, y = _draw(2.0)
  y[:50] = -100
  where = np.arange(400) < 350
  f = jax.jit(lambda z, y, w: metrics.fit_temperature(z, y, ignore_index=-100, where=w))
  got = f(z.astype(np.float32), y, where)
  assert got.dtype == jnp.float32
  want = metrics.fit_temperature(z[50:350], y[50:350])
  np.testing.assert_allclose(got, want, rtol=1e-4)
  # Every prediction wrong on average: no better than uniform, T = inf.
  worse = metrics.fit_temperature(np.array([[5.0, 0.0], [0.0, 5.0]]), np.array([1, 0]))
  assert worse == np.inf
  with pytest.raises(ValueError, match="num_steps=0"):
    metrics.fit_temperature(z, y, num_steps=0)


def test_a_nan_logit_in_a_kept_example_gives_nan():
  z = np.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [np.nan, 0.0, 1.0]])
  y = np.array([0, 1, 2])
  assert np.isnan(metrics.fit_temperature(z, y))
  assert np.isnan(jax.jit(metrics.fit_temperature)(z, y))
  kept = np.array([True, True, False])
  assert np.isfinite(metrics.fit_temperature(z, y, where=kept))
  z[2, 0] = -np.inf  # a -inf logit is fine
  assert np.isfinite(metrics.fit_temperature(z, y))
