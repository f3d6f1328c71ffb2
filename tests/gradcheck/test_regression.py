"""The deck's models: softmax and logistic regression, per-example gradients, the Hessian."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xentax
from xentax import gradcheck

pytestmark = pytest.mark.slow  # closed forms, Hessians and per-example grads


def _data(seed=0, n=7, d=3, num_classes=4):
  rng = np.random.default_rng(seed)
  X = rng.normal(size=(n, d))
  W = rng.normal(scale=0.5, size=(d, num_classes))
  b = rng.normal(scale=0.5, size=num_classes)
  y = rng.integers(0, num_classes, n)
  soft = rng.dirichlet(np.ones(num_classes), n)
  return X, W, b, y, soft


def _mean_ce(params, X, Y):
  z = X @ params[0] + params[1]
  if jnp.issubdtype(jnp.asarray(Y).dtype, jnp.integer):
    return xentax.sparse_categorical_cross_entropy_with_logits(z, Y)
  return xentax.categorical_cross_entropy_with_logits(z, Y)


@pytest.mark.parametrize("targets", ["integer", "soft"])
def test_softmax_regression_grad_matches_autodiff(targets):
  X, W, b, y, soft = _data()
  Y = y if targets == "integer" else soft
  report = gradcheck.compare(
    jax.grad(_mean_ce)((W, b), X, Y), gradcheck.softmax_regression_grad(X, W, b, Y)
  )
  assert report.passed and report.max_rel_error < 1e-10, str(report)


def test_softmax_regression_grad_by_hand():
  """One example, two classes, zero weights: p = [1/2, 1/2], so dW = x^T (p - y)."""
  x = np.array([[1.0, -2.0]])
  dW, db = gradcheck.softmax_regression_grad(x, np.zeros((2, 2)), np.zeros(2), np.array([1]))
  np.testing.assert_allclose(dW, [[0.5, -0.5], [-1.0, 1.0]], rtol=1e-15)
  np.testing.assert_allclose(db, [0.5, -0.5], rtol=1e-15)


def test_per_example_grad_matches_vmap_of_grad():
  X, W, b, y, _ = _data(seed=1)

  def one(params, x_j, y_j):
    return _mean_ce(params, x_j[None], y_j[None])

  auto = jax.vmap(jax.grad(one), in_axes=(None, 0, 0))((W, b), X, y)
  closed = gradcheck.softmax_regression_per_example_grad(X, W, b, y)
  report = gradcheck.compare(auto, closed)
  assert report.passed and report.max_rel_error < 1e-10, str(report)
  # Their mean is the full-batch gradient.
  full = gradcheck.softmax_regression_grad(X, W, b, y)
  np.testing.assert_allclose(closed[0].mean(axis=0), full[0], rtol=1e-12)


def test_logistic_regression_grad_matches_autodiff():
  X, _, _, _, _ = _data(seed=2)
  rng = np.random.default_rng(5)
  w, b, y = rng.normal(size=X.shape[1]), 0.3, rng.uniform(size=X.shape[0])

  def loss(params):
    return xentax.binary_cross_entropy_with_logits(X @ params[0] + params[1], y)

  report = gradcheck.compare(jax.grad(loss)((w, b)), gradcheck.logistic_regression_grad(X, w, b, y))
  assert report.passed and report.max_rel_error < 1e-10, str(report)


def test_hessian_matches_jax_hessian_and_is_a_covariance():
  z = np.array([1.0, -0.5, 2.0, 0.1])

  def loss(z_):
    return xentax.sparse_categorical_cross_entropy_with_logits(z_[None], np.array([2]))

  H = np.asarray(gradcheck.softmax_cross_entropy_hessian(z))
  report = gradcheck.compare(jax.hessian(loss)(z), H)
  assert report.passed and report.max_rel_error < 1e-10, str(report)
  np.testing.assert_allclose(H, H.T, rtol=0, atol=1e-16)
  np.testing.assert_allclose(H @ np.ones(4), 0, atol=1e-15)
  assert np.linalg.eigvalsh(H).min() > -1e-15


def test_wrong_targets_shape_is_a_clear_error():
  X, W, b, _, _ = _data()
  with pytest.raises(ValueError, match=r"Y has shape \(7, 3\)"):
    gradcheck.softmax_regression_grad(X, W, b, np.ones((7, 3)))


def test_fused_linear_closed_form_matches_autodiff_of_the_dense_loss():
  rng = np.random.default_rng(3)
  h, w, b = rng.normal(size=(7, 4)), rng.normal(size=(4, 9)), rng.normal(size=9)
  y = rng.integers(0, 9, 7)
  y[2] = -1
  options = {
    "ignore_index": -1,
    "label_smoothing": 0.2,
    "z_loss": 0.05,
    "class_weights": rng.uniform(0.5, 2, 9),
  }

  def dense(h, w, b):
    z = 2.5 * jnp.tanh((h @ w + b) / 2.5)
    return xentax.sparse_categorical_cross_entropy_with_logits(z, y, **options)

  want = jax.grad(dense, argnums=(0, 1, 2))(h, w, b)
  got = gradcheck.fused_linear_cross_entropy_grad(h, w, y, bias=b, softcap=2.5, **options)
  for g, e in zip(got, want, strict=True):
    np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
  ("call", "error", "match"),
  [
    (
      lambda: xentax.gradcheck.softmax_regression_grad(
        np.ones((2, 3)), np.ones((4, 3)), np.ones(3), np.array([0, 1])
      ),
      ValueError,
      r"X has shape \(2, 3\), W \(4, 3\)",
    ),
    (
      lambda: xentax.gradcheck.softmax_regression_grad(
        np.ones((2, 3)), np.ones((3, 3)), np.ones(3), np.array([0, 5])
      ),
      ValueError,
      r"labels Y must lie in \[0, 3\); found 5",
    ),
    (
      lambda: xentax.gradcheck.logistic_regression_grad(
        np.ones((2, 3)), np.ones(3), 0.0, np.array([2.0, 0.0])
      ),
      ValueError,
      r"labels y must lie in \[0, 1\]; found 2.0",
    ),
    (
      lambda: xentax.gradcheck.logistic_regression_grad(
        np.ones((2, 3)), np.ones(4), 0.0, np.array([1.0, 0.0])
      ),
      ValueError,
      r"X has shape \(2, 3\), w \(4,\)",
    ),
    (
      lambda: xentax.gradcheck.softmax_cross_entropy_hessian(np.array(1.0)),
      ValueError,
      "logits must have a class axis",
    ),
    (
      lambda: xentax.gradcheck.fused_linear_cross_entropy_grad(
        np.ones((2, 3)), np.ones((4, 5)), np.array([0, 1])
      ),
      ValueError,
      r"hidden has shape \(2, 3\) and weight \(4, 5\)",
    ),
  ],
)
def test_closed_forms_validate_like_the_losses(call, error, match):
  with pytest.raises(error, match=match):
    call()
