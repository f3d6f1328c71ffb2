"""Hypothesis properties of the cross-entropy family (small max_examples: 2 cores)."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xentax

SETTINGS = settings(max_examples=10, deadline=None)
finite = st.floats(-20, 20, allow_nan=False, allow_subnormal=False)


@st.composite
def logits_and_labels(draw):
  n = draw(st.integers(1, 5))
  c = draw(st.integers(2, 6))
  z = draw(hnp.arrays(np.float64, (n, c), elements=finite))
  y = draw(hnp.arrays(np.int64, (n,), elements=st.integers(0, c - 1)))
  return z, y


@st.composite
def logits_and_targets(draw):
  z, _ = draw(logits_and_labels())
  t = draw(hnp.arrays(np.float64, z.shape, elements=st.floats(0, 1)))
  t = np.where(t.sum(-1, keepdims=True) > 0, t, 1.0)
  return z, t / t.sum(-1, keepdims=True)


@SETTINGS
@given(logits_and_labels(), st.floats(0, 1), st.floats(0, 5))
def test_losses_are_non_negative(zy, smoothing, gamma):
  z, y = zy
  assert xentax.sparse_categorical_cross_entropy_with_logits(z, y, label_smoothing=smoothing) >= 0
  assert xentax.sparse_categorical_focal_loss_with_logits(z, y, gamma=gamma) >= 0
  assert xentax.binary_cross_entropy_with_logits(z, (z > 0).astype(float)) >= 0
  assert xentax.binary_focal_loss_with_logits(z, (z > 0).astype(float), gamma=gamma) >= 0


@SETTINGS
@given(logits_and_labels(), st.floats(-50, 50))
def test_adding_a_constant_to_all_logits_changes_nothing(zy, shift):
  z, y = zy
  a = xentax.sparse_categorical_cross_entropy_with_logits(z, y, reduction="none")
  b = xentax.sparse_categorical_cross_entropy_with_logits(z + shift, y, reduction="none")
  np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


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
  got = xentax.categorical_cross_entropy_with_logits(z, t, reduction="none")
  np.testing.assert_allclose(got, entropy + kl, rtol=1e-9, atol=1e-9)


@SETTINGS
@given(logits_and_labels(), st.floats(0, 1))
def test_sparse_equals_one_hot_dense(zy, smoothing):
  z, y = zy
  sparse = xentax.sparse_categorical_cross_entropy_with_logits(z, y, label_smoothing=smoothing)
  dense = xentax.categorical_cross_entropy_with_logits(
    z, np.eye(z.shape[1])[y], label_smoothing=smoothing
  )
  np.testing.assert_allclose(sparse, dense, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(logits_and_labels())
def test_probability_and_logit_forms_agree(zy):
  z, y = zy
  p = np.exp(z - z.max(-1, keepdims=True))
  p = p / p.sum(-1, keepdims=True)
  if np.min(p[np.arange(len(y)), y]) < 1e-30:  # the probability form clamps at log = -100
    return
  from_probs = xentax.sparse_categorical_cross_entropy(p, y)
  from_logits = xentax.sparse_categorical_cross_entropy_with_logits(z, y)
  np.testing.assert_allclose(from_probs, from_logits, rtol=1e-8, atol=1e-10)
