"""Dense categorical losses against the float64 reference, options and edge cases."""

import jax
import numpy as np
import pytest

import xentax
from tests import _reference as ref
from tests._tolerances import tol

REDUCTIONS = ["none", "sum", "mean"]


def _logits(shape, seed=0):
  return np.random.default_rng(seed).normal(size=shape) * 3.0


def _soft_targets(shape, seed=1):
  t = np.random.default_rng(seed).uniform(size=shape) ** 3
  return t / t.sum(-1, keepdims=True)


OPTIONS = {
  "plain": {},
  "class_weights": {"class_weights": np.linspace(0.5, 2.0, 5)},
  "label_smoothing": {"label_smoothing": 0.1},
  "where": {"where": np.arange(12) % 3 != 0},
  "all": {
    "class_weights": np.linspace(0.5, 2.0, 5),
    "label_smoothing": 0.2,
    "where": np.arange(12) % 4 != 0,
  },
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logits_matches_reference(name, reduction, dtype):
  z, t = _logits((12, 5)), _soft_targets((12, 5))
  got = xentax.categorical_cross_entropy_with_logits(
    z.astype(dtype), t, reduction=reduction, **OPTIONS[name]
  )
  want = ref.categorical_cross_entropy_with_logits(z, t, reduction=reduction, **OPTIONS[name])
  assert got.dtype == dtype
  np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(OPTIONS))
def test_probs_matches_reference(name, reduction):
  z, t = _logits((12, 5)), _soft_targets((12, 5))
  p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  got = xentax.categorical_cross_entropy(p, t, reduction=reduction, **OPTIONS[name])
  want = ref.categorical_cross_entropy(p, t, reduction=reduction, **OPTIONS[name])
  np.testing.assert_allclose(got, want, **tol(np.float64))


def test_deck_worked_example():
  # y = [0, 1] (cat), y_hat = [0.2, 0.8]: -(0 log 0.2 + 1 log 0.8) = 0.2231
  value = xentax.categorical_cross_entropy(np.array([0.2, 0.8]), np.array([0.0, 1.0]))
  assert value == pytest.approx(0.2231, abs=5e-5)
  assert value == pytest.approx(-np.log(0.8), rel=1e-12)


def test_one_hot_equals_sparse():
  z = _logits((12, 5))
  y = np.random.default_rng(2).integers(0, 5, 12)
  w = np.linspace(0.5, 2.0, 5)
  dense = xentax.categorical_cross_entropy_with_logits(
    z, np.eye(5)[y], class_weights=w, label_smoothing=0.1, reduction="none"
  )
  sparse = xentax.sparse_categorical_cross_entropy_with_logits(
    z, y, class_weights=w, label_smoothing=0.1, reduction="none"
  )
  np.testing.assert_allclose(dense, sparse, rtol=1e-12)


def test_dense_mean_divides_by_count_not_weights():
  z, t = _logits((12, 5)), _soft_targets((12, 5))
  w = np.linspace(0.5, 2.0, 5)
  none = xentax.categorical_cross_entropy_with_logits(z, t, class_weights=w, reduction="none")
  mean = xentax.categorical_cross_entropy_with_logits(z, t, class_weights=w)
  np.testing.assert_allclose(mean, none.sum() / 12, rtol=1e-12)


def test_class_axis_one():
  z, t = _logits((2, 5, 3)), np.moveaxis(_soft_targets((2, 3, 5)), -1, 1)
  got = xentax.categorical_cross_entropy_with_logits(z, t, axis=1, reduction="none")
  want = ref.categorical_cross_entropy_with_logits(z, t, axis=1, reduction="none")
  assert got.shape == (2, 3)
  np.testing.assert_allclose(got, want, **tol(np.float64))


def test_minus_inf_logits_on_zero_mass_classes_are_finite():
  z = np.array([[0.0, -np.inf, 2.0]])
  t = np.array([[0.3, 0.0, 0.7]])
  value, grad = jax.value_and_grad(xentax.categorical_cross_entropy_with_logits)(z, t)
  assert np.isfinite(value) and np.all(np.isfinite(grad))
  np.testing.assert_allclose(value, ref.categorical_cross_entropy_with_logits(z, t), rtol=1e-12)
  # The target gradient (distillation) is -log p: finite wherever p > 0.
  target_grad = jax.grad(xentax.categorical_cross_entropy_with_logits, argnums=1)(z, t)
  np.testing.assert_allclose(
    np.asarray(target_grad)[0, [0, 2]], -(z - np.log(1 + np.exp(2)))[0, [0, 2]]
  )


def test_zero_probabilities_follow_zero_log_zero_and_clamp():
  p = np.array([[0.0, 1.0, 0.0]])
  assert xentax.categorical_cross_entropy(p, np.array([[0.0, 1.0, 0.0]])) == 0.0
  assert xentax.categorical_cross_entropy(p, np.array([[1.0, 0.0, 0.0]])) == pytest.approx(100.0)
  grad = jax.grad(xentax.categorical_cross_entropy)(p, np.array([[0.5, 0.5, 0.0]]))
  assert np.all(np.isfinite(grad))


def test_masked_rows_are_dropped_even_if_infinite():
  z = _logits((3, 4))
  z[1] = -np.inf
  t = _soft_targets((3, 4))
  where = np.array([True, False, True])
  value, grad = jax.value_and_grad(xentax.categorical_cross_entropy_with_logits)(z, t, where=where)
  assert np.isfinite(value) and np.all(np.asarray(grad)[1] == 0)
  empty = xentax.categorical_cross_entropy_with_logits(z, t, where=np.zeros(3, bool))
  assert empty == 0.0


def test_bad_inputs_raise_clear_errors():
  z, t = _logits((3, 5)), _soft_targets((3, 5))
  with pytest.raises(ValueError, match=r"\(3, 5\).*\(3, 4\)"):
    xentax.categorical_cross_entropy_with_logits(z, t[:, :4])
  with pytest.raises(ValueError, match=r"targets must lie in \[0, 1\]; found -0.5"):
    bad = t.copy()
    bad[2, 1] = -0.5
    xentax.categorical_cross_entropy_with_logits(z, bad)
  with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\]"):
    xentax.categorical_cross_entropy(np.full((3, 5), 1.2), t)
  with pytest.raises(ValueError, match="choose one of"):
    xentax.categorical_cross_entropy(np.full((3, 5), 0.2), t, reduction="mean_all")
  with pytest.raises(ValueError, match="where has shape"):
    xentax.categorical_cross_entropy_with_logits(z, t, where=np.ones(4, bool))


def test_bad_target_is_nan_under_jit():
  z, t = _logits((3, 5)), _soft_targets((3, 5))
  t[0, 0] = 2.0
  losses = jax.jit(
    lambda z, t: xentax.categorical_cross_entropy_with_logits(z, t, reduction="none")
  )(z, t)
  losses = np.asarray(losses)
  assert np.isnan(losses[0]) and np.all(np.isfinite(losses[1:]))
