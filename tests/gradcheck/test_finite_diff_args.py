"""Argument checks of the finite-difference helpers: the step, the directions, the counts.

Each error names the function, the argument, the value or shapes, and the fix.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from xentax import gradcheck


def _f(p):
  return jnp.sum(jnp.sin(p["w"]) * p["b"])


PARAMS = {"w": np.array([0.3, -1.2, 2.0]), "b": np.array(0.5)}  # n = 4 flattened entries

# name -> a call of that public function with the step ``eps``.
STEP_CALLS = {
  "finite_difference_jacobian": lambda eps: gradcheck.finite_difference_jacobian(
    _f, PARAMS, eps=eps
  ),
  "finite_difference_directional": lambda eps: gradcheck.finite_difference_directional(
    _f, PARAMS, np.eye(4), eps=eps
  ),
  "check_finite_differences": lambda eps: gradcheck.check_finite_differences(_f, PARAMS, eps=eps),
  "check_grads_report": lambda eps: gradcheck.check_grads_report(
    lambda w: jnp.sum(jnp.sin(w)), (PARAMS["w"],), eps=eps
  ),
  "finite_difference_noise": lambda eps: gradcheck.finite_difference_noise(1.0, eps),
}


def test_every_public_function_with_a_step_is_covered():
  import inspect

  with_step = {
    name
    for name in gradcheck.__all__
    if callable(fn := getattr(gradcheck, name))
    and not isinstance(fn, type)
    and "eps" in inspect.signature(fn).parameters
  }
  assert with_step == set(STEP_CALLS)


@pytest.mark.parametrize("eps", [0, 0.0, -1e-6, -1, np.inf, -np.inf, np.nan, np.float32(0)])
@pytest.mark.parametrize("name", sorted(STEP_CALLS))
def test_a_step_that_is_not_finite_and_positive_is_a_value_error(name, eps):
  with pytest.raises(ValueError) as info:
    STEP_CALLS[name](eps)
  message = str(info.value)
  assert message.startswith(f"{name}: eps={float(eps)!r} ")
  assert "must be finite and > 0" in message
  assert "eps=1e-06" in message  # the fix: the default step


@pytest.mark.parametrize("eps", ["1e-6", True, None, np.array([1e-6, 1e-6]), 1j])
@pytest.mark.parametrize("name", sorted(STEP_CALLS))
def test_a_step_that_is_not_a_real_number_is_a_type_error(name, eps):
  with pytest.raises(TypeError) as info:
    STEP_CALLS[name](eps)
  message = str(info.value)
  assert message.startswith(f"{name}: eps=")
  assert "must be a real number" in message and "eps=1e-06" in message


@pytest.mark.parametrize("eps", [1e-6, np.float64(1e-6), np.float32(1e-4), 1e-4])
def test_real_steps_of_any_type_are_accepted(eps):
  # ravel_pytree orders a dict's leaves by key: "b", then the three entries of "w".
  want = np.concatenate([[np.sum(np.sin(PARAMS["w"]))], np.cos(PARAMS["w"]) * PARAMS["b"]])
  got = gradcheck.finite_difference_directional(_f, PARAMS, np.eye(4), eps=eps)
  np.testing.assert_allclose(got, want, rtol=1e-7)
  jac = gradcheck.finite_difference_jacobian(_f, PARAMS, eps=eps)
  np.testing.assert_allclose(jac["w"], want[1:], rtol=1e-7)
  assert gradcheck.check_finite_differences(_f, PARAMS, eps=eps).passed
  assert gradcheck.check_grads_report(lambda w: jnp.sum(jnp.sin(w)), (PARAMS["w"],), eps=eps).passed
  noise = gradcheck.finite_difference_noise(1.0, eps)
  assert noise == pytest.approx(4 * np.finfo(np.float64).eps / float(eps))


def test_step_zero_no_longer_returns_nan():
  with pytest.raises(ValueError, match="finite_difference_directional: eps=0.0"):
    gradcheck.finite_difference_directional(_f, PARAMS, np.eye(4), eps=0.0)


@pytest.mark.parametrize(
  "directions, shape",
  [
    (np.ones((2, 5)), (2, 5)),  # one entry too many per direction
    (np.ones((2, 3)), (2, 3)),  # the leaf "w" alone, without "b"
    (np.ones((4, 2, 2)), (4, 2, 2)),  # unflattened
    (np.ones(7), (7,)),
    (np.ones(()), ()),
  ],
)
def test_directions_of_the_wrong_shape_name_both_shapes(directions, shape):
  with pytest.raises(ValueError) as info:
    gradcheck.finite_difference_directional(_f, PARAMS, directions)
  message = str(info.value)
  assert message.startswith("finite_difference_directional: directions have shape ")
  assert str(shape) in message
  assert "n = 4" in message and "pass a [k, 4] array" in message


def test_a_single_flat_direction_gets_a_hint():
  with pytest.raises(ValueError) as info:
    gradcheck.finite_difference_directional(_f, PARAMS, np.ones(4))
  assert "(4,)" in str(info.value) and "directions[None] for a single direction" in str(info.value)
  # The hint's fix works, and gives the derivative along that direction.
  got = gradcheck.finite_difference_directional(_f, PARAMS, np.ones(4)[None])
  want = np.sum(np.cos(PARAMS["w"]) * 0.5) + np.sum(np.sin(PARAMS["w"]))
  np.testing.assert_allclose(got, [want], rtol=1e-8)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_directions_name_the_value_and_position(bad):
  directions = np.eye(4)
  directions[1, 2] = bad
  with pytest.raises(ValueError) as info:
    gradcheck.finite_difference_directional(_f, PARAMS, directions)
  message = str(info.value)
  assert message.startswith("finite_difference_directional: directions must be finite")
  assert f"found {bad} at position (1, 2)" in message


@pytest.mark.parametrize("directions", [[[1.0, 2.0], [3.0]], np.array([["a"] * 4])])
def test_directions_that_are_not_numbers_are_a_type_error(directions):
  with pytest.raises(
    TypeError,
    match=r"finite_difference_directional: directions must be a \[k, 4\] array of real numbers",
  ):
    gradcheck.finite_difference_directional(_f, PARAMS, directions)


def test_no_direction_gives_no_derivative():
  """``k = 0`` is a valid (empty) batch of directions."""
  got = gradcheck.finite_difference_directional(_f, PARAMS, np.zeros((0, 4)))
  assert got.shape == (0,)


@pytest.mark.parametrize(
  "kwargs, error, text",
  [
    ({"num_directions": 0}, ValueError, "num_directions=0 must be an integer >= 1"),
    ({"num_directions": -3}, ValueError, "num_directions=-3 must be an integer >= 1"),
    ({"num_directions": 2.0}, TypeError, "num_directions=2.0 must be an integer >= 1"),
    ({"max_full": -1}, ValueError, "max_full=-1 must be an integer >= 0"),
    ({"max_full": True}, TypeError, "max_full=True must be an integer >= 0"),
  ],
)
def test_check_finite_differences_counts(kwargs, error, text):
  with pytest.raises(error) as info:
    gradcheck.check_finite_differences(_f, PARAMS, **kwargs)
  message = str(info.value)
  assert message.startswith(f"check_finite_differences: {text}")
  assert "pass " in message.split("; ", 1)[1]  # the fix


def test_check_finite_differences_with_one_direction_still_checks():
  report = gradcheck.check_finite_differences(_f, PARAMS, max_full=0, num_directions=1)
  assert report.passed and report.size == 1, str(report)
  wrong = gradcheck.check_finite_differences(
    _f, PARAMS, grad={"w": np.zeros(3), "b": np.array(0.0)}, max_full=0, num_directions=1
  )
  assert not wrong.passed
