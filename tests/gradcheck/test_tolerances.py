"""The tolerance table."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xentax import gradcheck


def test_every_dtype_and_reference_has_a_tolerance():
  for dtype in ("float64", "float32", "bfloat16"):
    for reference in ("analytic", "finite_difference"):
      tol = gradcheck.tolerance(dtype, reference)
      assert 0 < tol["rtol"] < 0.1 and 0 < tol["atol"] < 1e-3


def test_tolerances_loosen_with_precision():
  rtols = [gradcheck.tolerance(d)["rtol"] for d in (np.float64, np.float32, jnp.bfloat16)]
  assert rtols == sorted(rtols) and rtols[0] <= 1e-10
  # bfloat16 keeps 8 significant bits: its rtol must exceed one rounding, 2^-8.
  assert rtols[2] > 2.0**-8


def test_finite_difference_noise_is_the_round_off_bound():
  assert gradcheck.finite_difference_noise(30.0, 1e-6) == pytest.approx(4 * 2.0**-52 * 30 / 1e-6)


def test_unknown_dtype_is_a_clear_error():
  with pytest.raises(ValueError, match="no gradient tolerance for dtype='int32'"):
    gradcheck.tolerance("int32")


@pytest.mark.parametrize("error", [1e-5, 1e-6])
def test_float64_finite_difference_check_fails_a_gradient_wrong_by_a_small_relative_error(error):
  """The float64 finite-difference tolerance must stay tight enough to catch a gradient off
  by 1e-6 relative (rtol 1e-7); the exact gradient passes with the same check."""
  rng = np.random.default_rng(0)
  z, y = rng.normal(size=(4, 5)), rng.integers(0, 5, 4)

  def f(z):
    lse = jnp.log(jnp.sum(jnp.exp(z), axis=-1))
    return jnp.mean(lse - z[jnp.arange(4), y])

  grad = jax.grad(f)(z)
  assert gradcheck.check_finite_differences(f, z, grad).passed
  assert not gradcheck.check_finite_differences(f, z, grad * (1 + error)).passed
  tol = gradcheck.tolerance("float64", "finite_difference")
  assert tol["rtol"] <= 1e-7 and tol["atol"] <= 1e-9
  analytic = gradcheck.tolerance("float64", "analytic")
  assert analytic["rtol"] <= 1e-10 and analytic["atol"] <= 1e-12
