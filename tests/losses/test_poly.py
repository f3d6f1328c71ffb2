"""Poly-1 cross-entropy: reference, optax equality on one-hot labels, gradient."""

import functools

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import xentax
from tests import _reference as ref
from tests._tolerances import tol
from xentax import gradcheck

rng = np.random.default_rng(3)
Z = rng.normal(size=(8, 6)) * 2
Y = rng.integers(0, 6, 8)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("epsilon", [0.0, 1.0, -0.5])
def test_matches_reference(reduction, epsilon):
  y = Y.copy()
  y[1] = -1
  kw = dict(epsilon=epsilon, ignore_index=-1, where=np.arange(8) != 4, reduction=reduction)
  np.testing.assert_allclose(
    xentax.poly1_cross_entropy_with_logits(Z, y, **kw),
    ref.poly1_cross_entropy_with_logits(Z, y, **kw),
    **tol("float64"),
  )


@pytest.mark.parametrize("epsilon", [2.0, 0.7])
def test_equals_optax_poly_loss_on_one_hot_labels(epsilon):
  optax = pytest.importorskip("optax")
  want = optax.losses.poly_loss_cross_entropy(Z, jax.nn.one_hot(Y, 6), epsilon=epsilon)
  got = xentax.poly1_cross_entropy_with_logits(Z, Y, epsilon=epsilon, reduction="none")
  np.testing.assert_allclose(got, want, **tol("float64"))


def test_gradient_and_inf_logits():
  z = Z.copy()
  z[0, (Y[0] + 1) % 6] = -np.inf
  g = jax.grad(xentax.poly1_cross_entropy_with_logits)(z, Y, epsilon=1.5)
  np.testing.assert_allclose(
    g, gradcheck.poly1_cross_entropy_with_logits_grad(z, Y, epsilon=1.5), **tol("float64", "grad")
  )
  assert np.all(np.isfinite(g))
  check_grads(
    jax.jit(lambda a: xentax.poly1_cross_entropy_with_logits(a, Y, epsilon=1.5)),
    (Z,),
    order=2,
    modes=("fwd", "rev"),
  )


@settings(max_examples=12, deadline=None)
@given(st.floats(0.0, 5.0))
def test_at_least_the_cross_entropy_for_nonnegative_epsilon(epsilon):
  poly = xentax.poly1_cross_entropy_with_logits(Z, Y, epsilon=epsilon, reduction="none")
  ce = xentax.sparse_categorical_cross_entropy_with_logits(Z, Y, reduction="none")
  assert np.all(np.asarray(poly) >= np.asarray(ce) - 1e-12)


def test_traced_epsilon_jit():
  f = jax.jit(lambda e: xentax.poly1_cross_entropy_with_logits(Z, Y, epsilon=e))
  np.testing.assert_allclose(f(1.0), ref.poly1_cross_entropy_with_logits(Z, Y, epsilon=1.0))


def test_bad_inputs():
  with pytest.raises(ValueError, match="reduction='avg'"):
    xentax.poly1_cross_entropy_with_logits(Z, Y, reduction="avg")
  with pytest.raises(ValueError, match="labels have shape"):
    xentax.poly1_cross_entropy_with_logits(Z, Y[:3])


# --- sample_weight ------------------------------------------------------------------------
SW = rng.uniform(0.0, 2.0, 8)
SW[2] = 0.0


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "sum_over_batch_size"])
def test_sample_weight_matches_reference(reduction):
  y = Y.copy()
  y[0] = -1
  kw = dict(epsilon=1.5, ignore_index=-1, sample_weight=SW, reduction=reduction)
  np.testing.assert_allclose(
    xentax.poly1_cross_entropy_with_logits(Z, y, **kw),
    ref.poly1_cross_entropy_with_logits(Z, y, **kw),
    **tol("float64"),
  )


@functools.partial(jax.jit, static_argnames="reduction")
def _poly_weighted(z, w, reduction):
  return xentax.poly1_cross_entropy_with_logits(z, Y, sample_weight=w, reduction=reduction)


@settings(max_examples=10, deadline=None, derandomize=True)
@given(st.floats(0.0, 3.0), st.sampled_from(["mean", "sum_over_batch_size"]))
def test_sample_weight_scalar_and_gradient(scale, reduction):
  # one jit per reduction, shared by the examples (a fresh jit per example recompiles)
  def f(z, w):
    return _poly_weighted(z, w, reduction)

  got = xentax.poly1_cross_entropy_with_logits(Z, Y, sample_weight=SW * scale, reduction=reduction)
  np.testing.assert_allclose(
    got,
    ref.poly1_cross_entropy_with_logits(Z, Y, sample_weight=SW * scale, reduction=reduction),
    **tol("float64"),
  )
  check_grads(f, (Z, SW + 0.1), order=1, modes=("rev",), atol=1e-6, rtol=1e-6)
