"""Central differences over pytrees, directional checks, and ``check_grads`` with numbers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xentax import gradcheck


def _quadratic_problem(n=4, seed=0):
  rng = np.random.default_rng(seed)
  A = rng.normal(size=(n, n))
  x = rng.normal(size=n)
  return A, x


def test_jacobian_of_a_quadratic_over_a_pytree():
  A, x = _quadratic_problem()
  params = {"x": x, "s": np.array(0.7)}

  def f(p):
    return p["x"] @ A @ p["x"] * p["s"] + jnp.sin(p["s"])

  g = gradcheck.finite_difference_jacobian(f, params)
  np.testing.assert_allclose(g["x"], 0.7 * (A + A.T) @ x, rtol=1e-8)
  np.testing.assert_allclose(g["s"], x @ A @ x + np.cos(0.7), rtol=1e-8)


def test_jacobian_of_a_vector_function_has_output_axes_first():
  A, x = _quadratic_problem(n=3)
  jac = gradcheck.finite_difference_jacobian(lambda v: jnp.tanh(A @ v), x)
  expected = (1 - np.tanh(A @ x) ** 2)[:, None] * A
  assert jac.shape == (3, 3)
  np.testing.assert_allclose(jac, expected, rtol=1e-7, atol=1e-10)


def test_small_inputs_compare_every_entry_and_catch_a_wrong_gradient():
  A, x = _quadratic_problem()

  def f(v):
    return jnp.log1p(jnp.exp(A @ v)).sum()

  def by_hand(v):
    return A.T @ (1 / (1 + np.exp(-(A @ v))))

  good = gradcheck.check_finite_differences(f, x, grad=by_hand)
  assert good.passed and good.size == 4 and good.max_rel_error < 1e-7, str(good)
  bad = gradcheck.check_finite_differences(f, x, grad=lambda v: -by_hand(v))
  assert not bad.passed and bad.max_rel_error == pytest.approx(2.0)


def test_large_inputs_use_random_directions():
  rng = np.random.default_rng(1)
  w = rng.normal(size=(30, 20))  # 600 parameters > max_full

  def f(p):
    return jnp.sum(jnp.tanh(p) ** 2)

  good = gradcheck.check_finite_differences(f, w, num_directions=6)
  assert good.passed and good.size == 6 and "random directions" in good.detail, str(good)
  wrong = 2 * np.tanh(w) * (1 - np.tanh(w) ** 2) * (1 + 1e-3 * rng.normal(size=w.shape))
  bad = gradcheck.check_finite_differences(f, w, grad=wrong, num_directions=6)
  assert not bad.passed


def test_float32_gradient_is_checked_against_float64_differences():
  x = np.linspace(-1, 1, 5)

  def f(v):
    return jnp.sum(jnp.exp(v) * v)

  report = gradcheck.check_finite_differences(f, x.astype(np.float32))
  assert report.dtype == "float32" and report.passed, str(report)
  assert 1e-9 < report.max_rel_error < 1e-5  # float32 rounding, measured in float64


def test_float32_only_function_is_a_clear_error():
  with pytest.raises(ValueError, match="need f to compute in float64"):
    gradcheck.finite_difference_jacobian(lambda v: jnp.sum(v.astype(jnp.float32)), np.ones(3))


def test_works_with_x64_off():
  with jax.enable_x64(False):
    x = jnp.array([0.3, -0.2])  # float32, x64 off
    report = gradcheck.check_finite_differences(lambda v: jnp.sum(jnp.sin(v)), x)
  assert report.passed and report.dtype == "float32"


def test_check_grads_report_returns_numbers():
  A, x = _quadratic_problem(n=3)

  def f(v):
    return jnp.tanh(A @ v)

  report = gradcheck.check_grads_report(f, (x,), order=2)
  assert report.passed and report.reference == "check_grads", str(report)
  assert 0 < report.max_abs_error < 1e-8
  # As check_grads recurses: JVP (3 outputs), JVP of JVP (6), VJP of JVP (1), VJP (1),
  # JVP of VJP (3), VJP of VJP (1).
  assert report.size == 15
  assert report.worst.split("]")[0].strip("['") in {
    "JVP",
    "JVP of JVP",
    "VJP of JVP",
    "VJP",
    "JVP of VJP",
    "VJP of VJP",
  }


@jax.custom_jvp
def _wrong_sin(x):
  return jnp.sin(x)


@_wrong_sin.defjvp
def _wrong_sin_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  return jnp.sin(x), 1.01 * jnp.cos(x) * t  # 1% wrong


def test_check_grads_report_fails_on_a_wrong_derivative():
  report = gradcheck.check_grads_report(lambda v: jnp.sum(_wrong_sin(v)), (np.ones(3),), order=1)
  assert not report.passed
  assert report.max_rel_error == pytest.approx(0.01, rel=1e-3)
  # One pair of numbers: the worst entry's, which is where the verdict comes from.
  worst = abs(report.actual_at_worst - report.expected_at_worst)
  assert worst > report.atol + report.rtol * abs(report.expected_at_worst)
  assert report.detail == ""


def test_check_grads_report_modes_are_checked_and_one_name_is_one_mode():
  f = lambda v: jnp.sum(_wrong_sin(v))  # noqa: E731
  assert not gradcheck.check_grads_report(f, (np.ones(3),), order=1, modes="rev").passed
  for bad in (["Rev"], "backward", ()):
    with pytest.raises(ValueError, match="must name 'fwd', 'rev' or both"):
      gradcheck.check_grads_report(f, (np.ones(3),), modes=bad)


def test_check_grads_report_allows_for_the_round_off_of_a_large_function():
  # |f| = 1e6: the differences carry about 4 eps |f| / h = 9e-4 of round-off.
  x = np.array([0.5, 1.0, -0.3])
  assert gradcheck.check_grads_report(lambda v: 1e6 + jnp.sum(jnp.sin(v)), (x,), order=2).passed
  wrong = gradcheck.check_grads_report(lambda v: 1e6 + jnp.sum(_wrong_sin(v)), (x,), order=1)
  assert not wrong.passed


@jax.custom_vjp
def _square(x):
  return x**2


_square.defvjp(lambda x: (x**2, x), lambda x, g: (2 * x * g,))


def test_check_grads_report_skips_forward_mode_of_a_custom_vjp():
  report = gradcheck.check_grads_report(lambda v: jnp.sum(_square(v)), (np.ones(3),), order=1)
  assert report.passed and report.worst.startswith("['VJP")
  assert "forward mode skipped" in report.detail and "custom_vjp" in report.detail
  only_fwd = gradcheck.check_grads_report(
    lambda v: jnp.sum(_square(v)), (np.ones(3),), order=1, modes=("fwd",)
  )
  assert not only_fwd.passed and only_fwd.detail.startswith("no mode applies")


def test_a_function_of_more_than_the_parameters_gets_the_fix():
  def loss(params, X, y):
    return jnp.sum((X @ params - y) ** 2)

  with pytest.raises(TypeError, match=r"takes \(params, X, y\).*lambda params: f\(params, X, y\)"):
    gradcheck.check_finite_differences(loss, np.ones(3))
  with pytest.raises(TypeError, match="check_grads_report: f is called with 1 positional"):
    gradcheck.check_grads_report(loss, (np.ones(3),))
