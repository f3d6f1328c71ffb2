"""Accuracy, perplexity, entropy and Brier score against NumPy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import _reference as ref
from tests._tolerances import tol
from xentax import metrics

rng = np.random.default_rng(6)
Z = rng.normal(size=(40, 6)) * 2
Y = rng.integers(0, 6, 40)


@pytest.mark.parametrize("k", [1, 2, 5, 6])
def test_top_k_accuracy_matches_reference(k):
  y = Y.copy()
  y[:5] = -1
  where = np.arange(40) % 7 != 0
  got = metrics.top_k_accuracy(Z, y, k=k, ignore_index=-1, where=where)
  want = ref.top_k_accuracy(Z, y, k=k, ignore_index=-1, where=where)
  np.testing.assert_allclose(got, want, **tol("float64"))
  if k == 6:
    assert got == 1.0


def test_top_k_ties_count_as_hits_and_reductions():
  z = np.array([[1.0, 1.0, 0.0], [0.0, 2.0, 1.0], [3.0, 2.0, 1.0]])
  y = np.array([1, 2, 2])
  assert metrics.top_k_accuracy(z, y, reduction="none").tolist() == [1.0, 0.0, 0.0]
  assert float(metrics.top_k_accuracy(z, y, k=2, reduction="sum")) == 2.0


def test_top_k_axis_and_jit():
  f = jax.jit(lambda z: metrics.top_k_accuracy(z, Y, k=2, axis=0))
  np.testing.assert_allclose(f(Z.T), ref.top_k_accuracy(Z, Y, k=2))


def test_perplexity():
  nll = np.mean([-ref._log_softmax(z)[y] for z, y in zip(Z, Y, strict=True)])
  np.testing.assert_allclose(metrics.perplexity(Z, Y), np.exp(nll), **tol("float64"))
  np.testing.assert_allclose(metrics.perplexity(np.zeros((3, 8)), np.array([0, 1, 2])), 8.0)
  y = Y.copy()
  y[::2] = -100
  nll_kept = np.mean([-ref._log_softmax(z)[t] for z, t in zip(Z, y, strict=True) if t >= 0])
  np.testing.assert_allclose(metrics.perplexity(Z, y, ignore_index=-100), np.exp(nll_kept))


def test_predictive_entropy_with_and_without_labels():
  np.testing.assert_allclose(metrics.predictive_entropy(Z), ref.predictive_entropy(Z))
  z = Z.copy()
  z[0, :3] = -np.inf
  got = metrics.predictive_entropy(z)
  np.testing.assert_allclose(got, ref.predictive_entropy(z), **tol("float64"))
  assert np.isfinite(jax.grad(metrics.predictive_entropy)(z)).all()
  y = Y.copy()
  y[5:] = -1
  np.testing.assert_allclose(
    metrics.predictive_entropy(Z, y, ignore_index=-1), ref.predictive_entropy(Z[:5])
  )
  np.testing.assert_allclose(metrics.predictive_entropy(np.zeros((2, 4))), np.log(4))


def test_brier_score():
  np.testing.assert_allclose(metrics.brier_score(Z, Y), ref.brier_score(Z, Y), **tol("float64"))
  got = metrics.brier_score(Z.astype(np.float32), Y, reduction="none")
  assert got.dtype == jnp.float32 and got.shape == (40,)
  assert np.all((np.asarray(got) >= 0) & (np.asarray(got) <= 2))
  np.testing.assert_allclose(
    metrics.brier_score(np.array([[50.0, 0.0]]), np.array([0])), 0.0, atol=1e-30
  )


def test_vmap_and_bad_inputs():
  per_row = jax.vmap(lambda z, y: metrics.brier_score(z, y))(Z, Y)
  np.testing.assert_allclose(per_row, metrics.brier_score(Z, Y, reduction="none"))
  with pytest.raises(ValueError, match="k=0"):
    metrics.top_k_accuracy(Z, Y, k=0)
  with pytest.raises(ValueError, match="top_k_accuracy: labels must lie in"):
    metrics.top_k_accuracy(Z, Y + 6)
  with pytest.raises(ValueError, match="ignore_index needs labels"):
    metrics.predictive_entropy(Z, ignore_index=-1)
  with pytest.raises(TypeError, match="labels must be integer"):
    metrics.brier_score(Z, Y.astype(float))
  assert np.isnan(jax.jit(lambda y: metrics.top_k_accuracy(Z, y))(Y + 6))


@pytest.mark.parametrize("kind", ["logits", "probs"])
def test_a_nan_score_in_a_kept_row_gives_nan_and_a_dropped_one_does_not(kind):
  z = np.array([[np.nan, 0.2, 0.8], [np.nan, 0.1, 0.9], [0.3, 0.3, 0.4]])
  if kind == "logits":
    z = np.where(np.isnan(z), np.nan, np.log(z))
  y = np.array([2, 0, 2])
  where = np.array([True, False, True])
  for fn in (metrics.top_k_accuracy, metrics.predictive_entropy, metrics.brier_score):
    none = np.asarray(fn(z, y, kind=kind, reduction="none"))
    assert np.isnan(none[:2]).all() and np.isfinite(none[2]), fn.__name__
    kept = fn(z, y, kind=kind, where=where, reduction="none")
    assert np.isnan(kept[0]) and np.isfinite(kept[1:]).all(), fn.__name__
    assert np.isfinite(fn(z[1:], y[1:], kind=kind, where=where[1:])), fn.__name__
