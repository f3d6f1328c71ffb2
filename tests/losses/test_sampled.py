"""``sampled_softmax_cross_entropy`` against a float64 reference of TensorFlow's semantics,
the full softmax it estimates, and its bad-input contract."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import xentax
from tests import _reference


def _inputs(rng, n, d, v, s):
  hidden = rng.normal(size=(n, d))
  weight = rng.normal(size=(d, v)) / 2
  labels = rng.integers(0, v, n)
  sampled = rng.integers(0, v, s)
  sampled[: min(s, n)] = labels[: min(s, n)]  # accidental hits
  return hidden, weight, labels, sampled, rng.normal(size=s), rng.normal(size=n)


@settings(max_examples=10, deadline=None)  # each shape and option set compiles once
@given(
  seed=st.integers(0, 2**16),
  n=st.integers(1, 6),
  s=st.integers(1, 9),
  remove=st.booleans(),
  with_bias=st.booleans(),
  with_mask=st.booleans(),
  with_weights=st.booleans(),
  reduction=st.sampled_from(["mean", "sum", "sum_over_batch_size", "none"]),
)
def test_matches_the_reference(seed, n, s, remove, with_bias, with_mask, with_weights, reduction):
  rng = np.random.default_rng(seed)
  hidden, weight, labels, sampled, sampled_q, true_q = _inputs(rng, n, 3, 7, s)
  bias = rng.normal(size=7) if with_bias else None
  kept = rng.random(n) < 0.7 if with_mask else np.ones(n, bool)
  weights = rng.uniform(0.5, 2.0, n) if with_weights else None
  hidden = np.where(kept[:, None], hidden, np.inf)  # dropped rows may hold anything

  def loss(h):
    return xentax.sampled_softmax_cross_entropy(
      h,
      weight,
      labels,
      sampled,
      sampled_log_q=sampled_q,
      true_log_q=true_q,
      remove_accidental_hits=remove,
      bias=bias,
      where=kept,
      sample_weight=weights,
      reduction=reduction,
    )

  want, want_grad = _reference.sampled_softmax(
    hidden,
    weight,
    labels,
    sampled,
    sampled_q,
    true_q,
    remove_accidental_hits=remove,
    bias=bias,
    kept=kept,
    sample_weight=weights,
    reduction=reduction,
  )
  np.testing.assert_allclose(jax.jit(loss)(hidden), want, rtol=1e-12, atol=1e-12)
  if reduction != "none":
    np.testing.assert_allclose(jax.jit(jax.grad(loss))(hidden), want_grad, rtol=1e-10, atol=1e-12)


def test_every_class_sampled_without_correction_is_the_full_softmax():
  """Columns ``[y, 0 .. V-1]`` with ``y`` masked are the full softmax, equal to torch's."""
  rng = np.random.default_rng(0)
  hidden, weight, labels, *_ = _inputs(rng, 5, 4, 11, 1)
  bias = rng.normal(size=11)
  every = np.arange(11)

  def sampled(h, w, b):
    return xentax.sampled_softmax_cross_entropy(
      h, w, labels, every, sampled_log_q=np.zeros(11), true_log_q=0.0, bias=b
    )

  def full(h, w, b):
    logits = torch.as_tensor(h) @ torch.as_tensor(w) + torch.as_tensor(b)
    return torch.nn.functional.cross_entropy(logits, torch.as_tensor(labels))

  got = jax.value_and_grad(sampled, argnums=(0, 1, 2))(hidden, weight, bias)
  tensors = [torch.tensor(x, requires_grad=True) for x in (hidden, weight, bias)]
  want = full(*tensors)
  want.backward()
  np.testing.assert_allclose(got[0], want.item(), rtol=1e-12)
  for g, t in zip(got[1], tensors, strict=True):
    np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-10, atol=1e-13)


def test_repeated_sampled_classes_stay_separate_columns():
  hidden, weight = np.ones((1, 2)), np.arange(8.0).reshape(2, 4) / 4
  once, twice = (
    xentax.sampled_softmax_cross_entropy(
      hidden, weight, [0], sampled, sampled_log_q=np.zeros(len(sampled)), true_log_q=0.0
    )
    for sampled in (np.array([3]), np.array([3, 3]))
  )
  z = hidden[0] @ weight
  np.testing.assert_allclose(once, np.log(np.exp(z[0]) + np.exp(z[3])) - z[0])
  np.testing.assert_allclose(twice, np.log(np.exp(z[0]) + 2 * np.exp(z[3])) - z[0])


def test_the_corrections_have_exact_gradients():
  rng = np.random.default_rng(1)
  hidden, weight, labels, sampled, sampled_q, true_q = _inputs(rng, 4, 3, 9, 5)

  def loss(sq, tq):
    return xentax.sampled_softmax_cross_entropy(
      hidden, weight, labels, sampled, sampled_log_q=sq, true_log_q=tq
    )

  loss = jax.jit(loss)
  grads = jax.grad(loss, argnums=(0, 1))(sampled_q, true_q)
  for i, x in enumerate((sampled_q, true_q)):
    for j in range(len(x)):
      e = np.zeros_like(x)
      e[j] = 1e-6
      args = [sampled_q, true_q]
      up, down = list(args), list(args)
      up[i], down[i] = x + e, x - e
      fd = (loss(*up) - loss(*down)) / 2e-6
      np.testing.assert_allclose(grads[i][j], fd, rtol=1e-6, atol=1e-9)


def _call(**kw):
  rng = np.random.default_rng(2)
  hidden, weight, labels, sampled, sampled_q, true_q = _inputs(rng, 4, 3, 9, 5)
  args = {
    "hidden": hidden,
    "weight": weight,
    "labels": labels,
    "sampled_classes": sampled,
    "sampled_log_q": sampled_q,
    "true_log_q": true_q,
  }
  args.update(kw)
  positional = [args.pop(k) for k in ("hidden", "weight", "labels", "sampled_classes")]
  return xentax.sampled_softmax_cross_entropy(*positional, **args)


@pytest.mark.parametrize(
  "bad, match",
  [
    ({"labels": np.array([0, 1, 9, 2])}, r"labels must lie in \[0, 9\)"),
    ({"sampled_classes": np.array([0, -1, 2, 3, 4])}, r"sampled_classes must lie in \[0, 9\)"),
    ({"sampled_log_q": np.array([0.0, np.inf, 0, 0, 0])}, "sampled_log_q must be finite"),
    ({"true_log_q": np.array([0.0, np.nan, 0, 0])}, "true_log_q must be finite"),
    ({"true_log_q": np.zeros(3)}, "does not broadcast"),
    ({"sampled_log_q": np.zeros(4)}, "does not broadcast"),
    ({"sampled_classes": np.zeros((2, 2), int)}, "it must be"),
    ({"labels": np.zeros(3, int)}, "needs labels of shape"),
    ({"weight": np.zeros((4, 9))}, r"\[D, V\]"),
    ({"bias": np.zeros(8)}, r"it must be \(9,\)"),
    ({"reduction": "batchmean"}, "reduction"),
  ],
)
def test_bad_input_is_named(bad, match):
  with pytest.raises(ValueError, match=match):
    _call(**bad)


def test_under_jit_a_bad_value_makes_the_loss_nan():
  rng = np.random.default_rng(3)
  hidden, weight, labels, sampled, sampled_q, true_q = _inputs(rng, 4, 3, 9, 5)
  true_q[1] = np.nan

  @jax.jit
  def losses(tq, sq, sampled):
    return xentax.sampled_softmax_cross_entropy(
      hidden, weight, labels, sampled, sampled_log_q=sq, true_log_q=tq, reduction="none"
    )

  assert np.isnan(losses(true_q, sampled_q, sampled)).tolist() == [False, True, False, False]
  sampled_q[0] = -np.inf
  assert np.isnan(losses(np.zeros(4), sampled_q, sampled)).all()
  out_of_range = jnp.asarray(sampled).at[0].set(9)
  assert np.isnan(losses(np.zeros(4), np.zeros(5), out_of_range)).all()


def test_ignore_index_drops_like_where():
  rng = np.random.default_rng(4)
  hidden, weight, labels, sampled, sampled_q, true_q = _inputs(rng, 6, 3, 9, 5)
  padded = np.where(np.arange(6) % 3 == 0, -100, labels)

  def loss(h, labels, **kw):
    return xentax.sampled_softmax_cross_entropy(
      h, weight, labels, sampled, sampled_log_q=sampled_q, true_log_q=true_q, **kw
    )

  got = jax.value_and_grad(loss)(hidden, padded, ignore_index=-100)
  want = jax.value_and_grad(loss)(hidden, labels, where=padded != -100)
  for g, w in zip(got, want, strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-12)


def test_no_correction_is_none_or_zeros():
  rng = np.random.default_rng(11)
  hidden, weight, labels, sampled, _, _ = _inputs(rng, 4, 3, 7, 5)

  def loss(sampled_q, true_q):
    return xentax.sampled_softmax_cross_entropy(
      hidden, weight, labels, sampled, sampled_log_q=sampled_q, true_log_q=true_q
    )

  np.testing.assert_allclose(loss(None, None), loss(np.zeros(5), 0.0), rtol=1e-15)
  grads = xentax.gradcheck.sampled_softmax_cross_entropy_grad(
    hidden, weight, labels, sampled, sampled_log_q=None, true_log_q=None
  )
  auto = jax.grad(
    lambda h: xentax.sampled_softmax_cross_entropy(
      h, weight, labels, sampled, sampled_log_q=None, true_log_q=None
    )
  )(hidden)
  np.testing.assert_allclose(grads["d_hidden"], auto, rtol=1e-12)


def test_float_sampled_classes_are_named():
  with pytest.raises(TypeError, match="sampled_classes must be integer class indices"):
    _call(sampled_classes=np.array([0.0, 1.0, 2.0, 3.0, 4.0]))


def test_no_sampled_class_leaves_the_true_column_alone():
  rng = np.random.default_rng(4)
  hidden, weight = rng.normal(size=(4, 3)), rng.normal(size=(3, 9))
  labels, none = np.array([0, 3, 8, 2]), np.zeros(0, np.int32)

  def loss(hidden, weight):
    return xentax.sampled_softmax_cross_entropy(
      hidden, weight, labels, none, sampled_log_q=None, true_log_q=None
    )

  value, grads = jax.value_and_grad(loss, argnums=(0, 1))(hidden, weight)
  assert float(value) == 0.0
  assert not np.any(grads[0]) and not np.any(grads[1])
