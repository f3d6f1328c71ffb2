"""nll_loss: torch's semantics on log-probabilities, against the NumPy reference."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import xentax
from tests import _reference as ref
from tests._tolerances import tol
from xentax import gradcheck

rng = np.random.default_rng(2)
Z = rng.normal(size=(7, 5)) * 2
LOGP = np.asarray(jax.nn.log_softmax(Z))
Y = rng.integers(0, 5, 7)
Y[3] = -100
W = rng.uniform(0.5, 2.0, 5)
WHERE = np.arange(7) != 5


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_matches_reference(reduction, weighted):
  kw = dict(
    class_weights=W if weighted else None, ignore_index=-100, where=WHERE, reduction=reduction
  )
  np.testing.assert_allclose(
    xentax.nll_loss(LOGP, Y, **kw), ref.nll_loss(LOGP, Y, **kw), **tol("float64")
  )


def test_is_the_cross_entropy_of_log_softmax():
  y = np.where(Y < 0, 0, Y)
  np.testing.assert_allclose(
    xentax.nll_loss(LOGP, y, class_weights=W),
    xentax.sparse_categorical_cross_entropy_with_logits(Z, y, class_weights=W),
    **tol("float64"),
  )


def test_axis_inf_entries_and_gradient():
  x = np.moveaxis(LOGP, 1, 0).copy()  # classes first
  x[0, 1] = -np.inf if Y[1] != 0 else x[0, 1]
  kw = dict(axis=0, ignore_index=-100, class_weights=W)
  np.testing.assert_allclose(xentax.nll_loss(x, Y, **kw), ref.nll_loss(x, Y, **kw))
  g = jax.grad(xentax.nll_loss)(x, Y, **kw)
  np.testing.assert_allclose(g, gradcheck.nll_loss_grad(x, Y, **kw), **tol("float64", "grad"))
  check_grads(lambda a: xentax.nll_loss(a, Y, **kw), (LOGP.T,), order=1, modes=("fwd", "rev"))


def test_jit_vmap_float32():
  y = np.where(Y < 0, 0, Y)
  f = jax.jit(lambda x: xentax.nll_loss(x, y, reduction="none"))
  got = f(LOGP.astype(np.float32))
  assert got.dtype == jnp.float32
  np.testing.assert_allclose(got, ref.nll_loss(LOGP, y, reduction="none"), **tol("float32"))
  per_row = jax.vmap(lambda x, t: xentax.nll_loss(x, t))(LOGP, y)
  np.testing.assert_allclose(per_row, ref.nll_loss(LOGP, y, reduction="none"))


def test_bad_inputs():
  with pytest.raises(ValueError, match="nll_loss: labels must lie in"):
    xentax.nll_loss(LOGP, Y)
  with pytest.raises(TypeError, match="labels must be integer"):
    xentax.nll_loss(LOGP, Y.astype(float))
  with pytest.raises(ValueError, match="class_weights has shape"):
    xentax.nll_loss(LOGP, Y, ignore_index=-100, class_weights=W[:3])
  assert np.isnan(jax.jit(lambda y: xentax.nll_loss(LOGP, y))(np.full(7, 9)))


# --- sample_weight ------------------------------------------------------------------------
SW = rng.uniform(0.0, 2.0, 7)
SW[1] = 0.0


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "sum_over_batch_size"])
@pytest.mark.parametrize("weighted", [False, True])
def test_sample_weight_matches_reference(reduction, weighted):
  kw = dict(
    class_weights=W if weighted else None,
    ignore_index=-100,
    where=WHERE,
    sample_weight=SW,
    reduction=reduction,
  )
  np.testing.assert_allclose(
    xentax.nll_loss(LOGP, Y, **kw), ref.nll_loss(LOGP, Y, **kw), **tol("float64")
  )


def test_sample_weight_gradient_and_jit():
  def f(x, w):
    return xentax.nll_loss(x, Y, class_weights=W, ignore_index=-100, sample_weight=w)

  check_grads(jax.jit(f), (LOGP, SW + 0.1), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)
  np.testing.assert_allclose(
    jax.jit(f)(LOGP, SW),
    ref.nll_loss(LOGP, Y, class_weights=W, ignore_index=-100, sample_weight=SW),
    **tol("float64"),
  )


@pytest.mark.parametrize("num_classes", [7, 40000])
def test_nan_rows_under_jit_are_exactly_the_rows_holding_a_nan(num_classes):
  """A NaN anywhere in a kept row makes it NaN, on rows long enough for XLA:CPU's fused
  min and max to drop one; -inf entries, and finite entries summing past the float range,
  do not."""
  x = np.array(jax.nn.log_softmax(jax.random.normal(jax.random.key(0), (6, num_classes))))
  x[1, -2] = np.nan
  x[2, 0] = np.nan
  x[3, 5] = -np.inf
  x[4, num_classes // 2] = np.nan
  x[5] = np.where(np.arange(num_classes) % 2 == 0, 3e38, -3e38)
  losses = jax.jit(lambda x: xentax.nll_loss(x, np.ones(6, np.int32), reduction="none"))(
    x.astype(np.float32)
  )
  np.testing.assert_array_equal(np.isnan(losses), [False, True, True, False, True, False])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16])
def test_narrow_label_dtypes_index_every_class(dtype):
  """Labels narrower than 32 bits are widened before any class range is built in their
  dtype: 300 classes, labels of a uint8 or int8, the gradient only at the targets."""
  x = jax.nn.log_softmax(jax.random.normal(jax.random.key(1), (2, 300)))
  y = np.array([3, 100], dtype)
  grad = jax.grad(lambda x: xentax.nll_loss(x, y))(x)
  np.testing.assert_array_equal(np.argwhere(np.asarray(grad) != 0), [[0, 3], [1, 100]])
