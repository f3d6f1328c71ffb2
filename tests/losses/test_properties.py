"""Hypothesis properties of the cross-entropy family (small max_examples: 2 cores).

Each property evaluates one ``jax.jit`` of the losses with the float options traced, on
shapes from a small fixed set (edge cases included), so examples differ in values without
recompiling for every drawn shape or option value.
"""

import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xentax
from tests import _reference as ref

SETTINGS = settings(max_examples=10, deadline=None, derandomize=True)
finite = st.floats(-20, 20, allow_nan=False, allow_subnormal=False)
# one example, two classes, and a general shape
SHAPES = [(1, 2), (4, 5), (3, 2)]


@st.composite
def logits_and_labels(draw):
  n, c = draw(st.sampled_from(SHAPES))
  z = draw(hnp.arrays(np.float64, (n, c), elements=finite))
  y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
  return z, y


@st.composite
def logits_and_targets(draw):
  z, _ = draw(logits_and_labels())
  t = draw(hnp.arrays(np.float64, z.shape, elements=st.floats(0, 1)))
  t = np.where(t.sum(-1, keepdims=True) > 0, t, 1.0)
  return z, t / t.sum(-1, keepdims=True)


@jax.jit
def _four_losses(z, y, smoothing, gamma):
  b = (z > 0).astype(z.dtype)
  return (
    xentax.sparse_categorical_cross_entropy_with_logits(z, y, label_smoothing=smoothing),
    xentax.sparse_categorical_focal_loss_with_logits(z, y, gamma=gamma),
    xentax.binary_cross_entropy_with_logits(z, b),
    xentax.binary_focal_loss_with_logits(z, b, gamma=gamma),
  )


@SETTINGS
@given(logits_and_labels(), st.floats(0, 1), st.floats(0, 5))
def test_losses_are_non_negative_and_equal_the_reference(zy, smoothing, gamma):
  z, y = zy
  values = np.asarray(_four_losses(z, y, smoothing, gamma))
  assert np.all(values >= 0), values
  b = (z > 0).astype(z.dtype)
  want = [
    ref.sparse_categorical_cross_entropy_with_logits(z, y, label_smoothing=smoothing),
    ref.sparse_categorical_focal_loss_with_logits(z, y, gamma=gamma),
    ref.binary_cross_entropy_with_logits(z, b),
    ref.binary_focal_loss_with_logits(z, b, gamma=gamma),
  ]
  np.testing.assert_allclose(values, want, rtol=1e-9, atol=1e-12)


@jax.jit
def _shifted(z, y, shift):
  loss = xentax.sparse_categorical_cross_entropy_with_logits
  return loss(z, y, reduction="none"), loss(z + shift, y, reduction="none")


@SETTINGS
@given(logits_and_labels(), st.floats(-50, 50))
def test_adding_a_constant_to_all_logits_changes_nothing(zy, shift):
  z, y = zy
  a, b = _shifted(z, y, shift)
  np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


_dense_none = jax.jit(
  lambda z, t: xentax.categorical_cross_entropy_with_logits(z, t, reduction="none")
)


@SETTINGS
@given(logits_and_targets())
def test_cross_entropy_is_entropy_plus_kl(zt):
  z, t = zt
  log_p = (
    z
    - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1, keepdims=True))
    - z.max(-1, keepdims=True)
  )
  with np.errstate(divide="ignore", invalid="ignore"):
    entropy = -np.sum(np.where(t > 0, t * np.log(t), 0.0), -1)
    kl = np.sum(np.where(t > 0, t * (np.log(t) - log_p), 0.0), -1)
  got = _dense_none(z, t)
  np.testing.assert_allclose(got, entropy + kl, rtol=1e-9, atol=1e-9)


@jax.jit
def _sparse_and_dense(z, y, smoothing):
  sparse = xentax.sparse_categorical_cross_entropy_with_logits(z, y, label_smoothing=smoothing)
  dense = xentax.categorical_cross_entropy_with_logits(
    z, jax.nn.one_hot(y, z.shape[1], dtype=z.dtype), label_smoothing=smoothing
  )
  return sparse, dense


@SETTINGS
@given(logits_and_labels(), st.floats(0, 1))
def test_sparse_equals_one_hot_dense(zy, smoothing):
  z, y = zy
  sparse, dense = _sparse_and_dense(z, y, smoothing)
  np.testing.assert_allclose(sparse, dense, rtol=1e-9, atol=1e-12)


@jax.jit
def _probs_and_logits(p, z, y):
  return (
    xentax.sparse_categorical_cross_entropy(p, y),
    xentax.sparse_categorical_cross_entropy_with_logits(z, y),
  )


@SETTINGS
@given(logits_and_labels())
def test_probability_and_logit_forms_agree(zy):
  z, y = zy
  p = np.exp(z - z.max(-1, keepdims=True))
  p = p / p.sum(-1, keepdims=True)
  if np.min(p[np.arange(len(y)), y]) < 1e-30:  # the probability form clamps at log = -100
    return
  from_probs, from_logits = _probs_and_logits(p, z, y)
  np.testing.assert_allclose(from_probs, from_logits, rtol=1e-8, atol=1e-10)
