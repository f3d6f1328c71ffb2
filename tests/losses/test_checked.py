"""xentax.checked: value checks that raise under jit."""

import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import xentax


def test_checked_passes_good_input_through():
  z, y = jnp.zeros((2, 3)), jnp.array([0, 2])
  got = xentax.checked(xentax.sparse_categorical_cross_entropy_with_logits)(
    z, y, class_weights=jnp.ones(3), reduction="sum"
  )
  assert got == pytest.approx(2 * np.log(3))


def test_checked_raises_on_out_of_range_label_with_value_and_position():
  loss = xentax.checked(xentax.sparse_categorical_cross_entropy_with_logits)
  with pytest.raises(checkify.JaxRuntimeError, match=r"found 9 at flat position 1"):
    loss(jnp.zeros((3, 3)), jnp.array([0, 9, 1]))
  # ignore_index is not an error
  value = loss(jnp.zeros((3, 3)), jnp.array([0, -100, 1]), ignore_index=-100)
  assert value == pytest.approx(np.log(3))


def test_checked_raises_on_probability_outside_unit_interval():
  with pytest.raises(checkify.JaxRuntimeError, match=r"probs must lie in \[0, 1\]; found 1.5"):
    xentax.checked(xentax.binary_cross_entropy)(jnp.array([0.5, 1.5]), jnp.array([1.0, 0.0]))
  with pytest.raises(checkify.JaxRuntimeError, match="probs must lie"):
    xentax.checked(xentax.categorical_cross_entropy)(
      jnp.array([[0.5, -0.5]]), jnp.array([[1.0, 0.0]])
    )


def test_checked_works_on_a_function_calling_losses():
  def total(z, y):
    return xentax.sparse_categorical_cross_entropy_with_logits(z, y) + 1.0

  with pytest.raises(checkify.JaxRuntimeError, match="labels must lie in"):
    xentax.checked(total)(jnp.zeros((2, 3)), jnp.array([3, 0]))


S = xentax.sparse_categorical_cross_entropy_with_logits
LG, LB, BAD = jnp.array([[2, 0.5, -1], [0.1, 0.2, 3]]), jnp.array([0, 2]), jnp.array([0, 7])


def test_checked_inside_jit_vmap_and_grad():
  import jax

  checked = xentax.checked(S)
  want = S(LG, LB)
  np.testing.assert_allclose(jax.jit(checked)(LG, LB), want, rtol=1e-6)
  np.testing.assert_allclose(jax.vmap(checked)(LG[None], LB[None])[0], want, rtol=1e-6)
  np.testing.assert_allclose(jax.jit(jax.grad(checked))(LG, LB), jax.grad(S)(LG, LB), rtol=1e-6)
  # Raised from a host callback: under jit XLA re-raises it as jax.errors.JaxRuntimeError.
  errors = (checkify.JaxRuntimeError, jax.errors.JaxRuntimeError)
  for transformed in (jax.jit(checked), jax.grad(checked), jax.jit(jax.grad(checked))):
    with pytest.raises(errors, match="found 7 at flat position 1"):
      jax.block_until_ready(transformed(LG, BAD))
  with pytest.raises(errors, match="found 7 at flat position 1"):
    jax.block_until_ready(jax.vmap(checked)(LG[None], BAD[None]))


def test_checked_around_a_jitted_train_step():
  import jax

  @jax.jit
  def step(w, y):
    return jax.value_and_grad(lambda w: S(w, y))(w)

  checked = xentax.checked(step)
  value, grad = checked(LG, LB)
  np.testing.assert_allclose(value, S(LG, LB), rtol=1e-6)
  with pytest.raises(checkify.JaxRuntimeError, match="found 7"):
    checked(LG, BAD)
  with pytest.raises(checkify.JaxRuntimeError, match="label_smoothing must be in"):
    xentax.checked(jax.jit(lambda e: S(LG, LB, label_smoothing=e)))(1.5)


def test_checked_takes_lists_like_the_loss():
  f = xentax.sparse_categorical_cross_entropy_with_logits
  want = f([[0.0, 1.0, 2.0]], [2], class_weights=[1.0, 2.0, 3.0])
  got = xentax.checked(f)([[0.0, 1.0, 2.0]], [2], class_weights=[1.0, 2.0, 3.0])
  np.testing.assert_allclose(got, want, rtol=1e-12)
  with pytest.raises(checkify.JaxRuntimeError, match="labels must lie in"):
    xentax.checked(f)([[0.0, 1.0, 2.0]], [3])
