"""The dense-target categorical focal loss against its float64 reference and Keras's numbers."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.test_util import check_grads

import xentax
from tests import _reference as ref
from tests._tolerances import tol

REDUCTIONS = ["none", "sum", "mean", "sum_over_batch_size"]


def _logits(shape, seed=0):
  return np.random.default_rng(seed).normal(size=shape) * 2.0


def _soft_targets(shape, seed=1):
  t = np.random.default_rng(seed).uniform(size=shape) ** 3
  return t / t.sum(-1, keepdims=True)


OPTIONS = {
  "default": {},
  "gamma0_alpha1": {"gamma": 0.0, "alpha": None},
  "per_class_alpha": {"alpha": np.linspace(0.1, 0.9, 5)},
  "label_smoothing": {"label_smoothing": 0.1, "gamma": 1.5},
  "where": {"where": np.arange(12) % 3 != 0},
  "sample_weight": {"sample_weight": np.linspace(0.0, 2.0, 12)},
  "everything": {
    "gamma": 0.5,
    "alpha": np.linspace(0.2, 1.0, 5),
    "label_smoothing": 0.2,
    "where": np.arange(12) % 4 != 0,
    "sample_weight": np.linspace(0.1, 2.0, 12),
  },
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_reference(name, reduction, dtype):
  z, t = _logits((12, 5)), _soft_targets((12, 5))
  got = xentax.categorical_focal_loss_with_logits(
    z.astype(dtype), t, reduction=reduction, **OPTIONS[name]
  )
  want = ref.categorical_focal_loss_with_logits(z, t, reduction=reduction, **OPTIONS[name])
  assert got.dtype == dtype
  np.testing.assert_allclose(got, want, **tol(dtype))


def test_keras_documented_example():
  # keras.losses.categorical_focal_crossentropy(y_true, y_pred) on probabilities, here as
  # their logarithms: [2.6340128e-04, 6.7591208e-01] (Keras docs, default alpha and gamma).
  y_true = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
  y_pred = np.array([[0.05, 0.9, 0.05], [0.1, 0.85, 0.05]])
  got = xentax.categorical_focal_loss_with_logits(np.log(y_pred), y_true, reduction="none")
  np.testing.assert_allclose(got, [2.6340128e-04, 6.7591208e-01], rtol=1e-6)


def test_gamma_zero_alpha_one_is_the_cross_entropy():
  z, t = _logits((12, 5)), _soft_targets((12, 5))
  focal = xentax.categorical_focal_loss_with_logits(
    z, t, gamma=0.0, alpha=None, label_smoothing=0.1, reduction="none"
  )
  ce = xentax.categorical_cross_entropy_with_logits(z, t, label_smoothing=0.1, reduction="none")
  np.testing.assert_allclose(focal, ce, rtol=1e-12)


def test_one_hot_equals_sparse_focal():
  z = _logits((12, 5))
  y = np.random.default_rng(2).integers(0, 5, 12)
  dense = xentax.categorical_focal_loss_with_logits(z, np.eye(5)[y], gamma=2.0, alpha=None)
  sparse = xentax.sparse_categorical_focal_loss_with_logits(z, y, gamma=2.0)
  # The sparse focal loss modulates only the target class; with one-hot targets the dense
  # loss's other classes carry no mass, so the two agree.
  np.testing.assert_allclose(dense, sparse, rtol=1e-12)


# A few shapes (one class, one example, both) rather than every (batch, classes): each new
# shape recompiles every operation of the eager loss and its reference comparison.
@settings(max_examples=12, deadline=None, derandomize=True)
@given(
  shape=st.sampled_from([(1, 1), (1, 6), (4, 2), (5, 6)]),
  gamma=st.sampled_from([0.0, 0.5, 2.0]),
  alpha=st.sampled_from([None, 0.25]),
  smoothing=st.sampled_from([0.0, 0.3]),
  reduction=st.sampled_from(REDUCTIONS),
  seed=st.integers(0, 2**16),
)
def test_property_matches_reference(shape, gamma, alpha, smoothing, reduction, seed):
  batch, classes = shape
  z, t = _logits((batch, classes), seed), _soft_targets((batch, classes), seed + 1)
  s = np.random.default_rng(seed).uniform(0, 2, batch)
  options = dict(gamma=gamma, alpha=alpha, label_smoothing=smoothing, sample_weight=s)
  got = xentax.categorical_focal_loss_with_logits(z, t, reduction=reduction, **options)
  want = ref.categorical_focal_loss_with_logits(z, t, reduction=reduction, **options)
  np.testing.assert_allclose(got, want, **tol(np.float64))


def _loss(z, t, gamma=0.7, alpha=0.3, eps=0.1, s=None):
  return xentax.categorical_focal_loss_with_logits(
    z,
    t,
    gamma=gamma,
    alpha=alpha,
    label_smoothing=eps,
    where=np.arange(6) % 4 != 0,
    sample_weight=np.linspace(0.1, 2.0, 6) if s is None else s,
  )


def test_grad_and_jvp_match_finite_differences():
  z, t = _logits((6, 5)), 0.1 + 0.5 * _soft_targets((6, 5))
  check_grads(jax.jit(lambda z: _loss(z, t)), (z,), order=2, modes=("fwd", "rev"))
  check_grads(jax.jit(lambda t: _loss(z, t)), (t,), order=1, modes=("fwd", "rev"))


@pytest.mark.parametrize("option", ["gamma", "alpha", "eps", "s"])
def test_grad_wrt_each_float_option_matches_finite_differences(option):
  z, t = _logits((6, 5)), _soft_targets((6, 5))
  value = {"gamma": 0.7, "alpha": 0.3, "eps": 0.1, "s": np.linspace(0.1, 2.0, 6)}[option]
  check_grads(lambda v: _loss(z, t, **{option: v}), (value,), order=1)


# Whole numbers are integer powers (and 0 the cross-entropy); 1.5 takes jnp.power.
@pytest.mark.parametrize("gamma", [0.0, 1.0, 1.5, 2.0, 3])
def test_grad_matches_closed_form(gamma):
  z, t = _logits((6, 5)), _soft_targets((6, 5))
  got = jax.grad(xentax.categorical_focal_loss_with_logits)(z, t, gamma=gamma)
  want = xentax.gradcheck.logits_grad("categorical_focal_loss_with_logits", z, t, gamma=gamma)
  np.testing.assert_allclose(got, want, **tol(np.float64, "grad"))
  check_grads(lambda z: xentax.categorical_focal_loss_with_logits(z, t, gamma=gamma), (z,), order=2)


def _focal_float64(z, t, gamma, alpha):
  """Per-example loss and logit gradient (the docstring's closed form) in float64."""
  z = np.asarray(z, np.float64)
  log_p = z - z.max(-1, keepdims=True)
  log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
  p = np.exp(log_p)
  q = alpha * t
  with np.errstate(invalid="ignore"):  # 0 log 0 = 0 at a -inf logit
    loss = -np.sum(np.where(q > 0, q * (1 - p) ** gamma * log_p, 0.0), -1)
    p_log_p = np.where(p > 0, p * log_p, 0.0)
  b = q * ((1 - p) ** gamma - gamma * p_log_p * (1 - p) ** (gamma - 1))
  return loss, p * b.sum(-1, keepdims=True) - b


@pytest.mark.parametrize("num_classes", [5, 65536])  # 65536: summed in two pieces on CPU
@pytest.mark.parametrize("extreme", [None, "overflow", "minus_inf"])
def test_fast_and_guarded_forms_match_float64(num_classes, extreme):
  # Ordinary rows and a confident one take the guard-free reductions; a logit ~100 above
  # the head's max (exp overflows) or a -inf logit on a zero-mass class sends the batch to
  # the guarded formula.
  z = _logits((4, num_classes))
  t = np.zeros((4, num_classes))
  t[np.arange(4), [0, 1, 2, 3]] = 1.0
  t[0, :4] = [0.1, 0.2, 0.3, 0.4]
  z[1, 1] = 30.0
  if extreme == "overflow":
    z[2, -1] = 100.0
  if extreme == "minus_inf":
    z[3, -1] = -np.inf
  z = z.astype(np.float32)
  f = lambda z: xentax.categorical_focal_loss_with_logits(z, t, reduction="none")  # noqa: E731
  want, want_grad = _focal_float64(z, t, 2.0, 0.25)
  np.testing.assert_allclose(f(z), want, **tol(np.float32))
  grad = jax.grad(lambda z: jnp.sum(f(z)))(jnp.asarray(z))
  np.testing.assert_allclose(grad, want_grad, **tol(np.float32, "grad"))


def test_jit_and_vmap_match_eager():
  z, t = _logits((3, 4, 5)), _soft_targets((3, 4, 5))
  f = functools.partial(xentax.categorical_focal_loss_with_logits, gamma=1.0, reduction="sum")
  eager = np.array([f(z[i], t[i]) for i in range(3)])
  np.testing.assert_allclose(jax.jit(jax.vmap(f))(z, t), eager, rtol=1e-12)


def test_edge_cases_are_finite_or_nan_as_specified():
  # -inf logit on a zero-mass class: finite loss and gradient; a certain correct class: 0.
  z = np.array([[0.0, -np.inf, 2.0], [50.0, 0.0, 0.0]])
  t = np.array([[0.3, 0.0, 0.7], [1.0, 0.0, 0.0]])
  value, grad = jax.value_and_grad(xentax.categorical_focal_loss_with_logits)(z, t)
  assert np.isfinite(value) and np.all(np.isfinite(grad))
  np.testing.assert_allclose(value, ref.categorical_focal_loss_with_logits(z, t), rtol=1e-9)
  # A dropped row leaks nothing; a NaN logit in a kept row is NaN; a bad target is NaN.
  z2, t2 = _logits((3, 4)), _soft_targets((3, 4))
  z2[2] = np.nan
  t2[1, 0] = 1.5
  f = jax.jit(
    lambda z, t: xentax.categorical_focal_loss_with_logits(
      z, t, where=np.array([True, True, False]), reduction="none"
    )
  )
  losses = np.asarray(f(z2, t2))
  assert np.isfinite(losses[0]) and np.isnan(losses[1]) and losses[2] == 0
  g = jax.grad(lambda z: f(z, _soft_targets((3, 4))).sum())(z2)
  assert np.all(np.asarray(g)[2] == 0)
  with pytest.raises(ValueError, match="alpha"):
    xentax.categorical_focal_loss_with_logits(z2, _soft_targets((3, 4)), alpha=np.ones(3))


def test_second_derivatives_are_finite_at_a_minus_inf_logit():
  # Reverse over reverse meets log p = -inf where p = 0: p log p must be taken as 0 there.
  z = jnp.array([[1.0, 2.0, -jnp.inf]])
  t = jnp.array([[0.0, 1.0, 0.0]])
  f = lambda z: xentax.categorical_focal_loss_with_logits(z, t, gamma=2)  # noqa: E731
  np.testing.assert_allclose(jax.jacrev(jax.grad(f))(z), jax.hessian(f)(z), rtol=1e-6)
  assert np.all(np.isfinite(jax.jacrev(jax.grad(f))(z)))
