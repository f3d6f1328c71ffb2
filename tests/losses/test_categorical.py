"""Dense categorical losses against the float64 reference, options and edge cases."""

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


# --- z_loss, softcap, sample_weight and every reduction (issue 12) --------------------------

ALL_REDUCTIONS = ["none", "sum", "mean", "sum_over_batch_size"]
NEW_OPTIONS = {
  "z_loss": {"z_loss": 0.01},
  "softcap": {"softcap": 2.5},
  "sample_weight": {"sample_weight": np.linspace(0.0, 2.0, 12)},
  "everything": {
    "class_weights": np.linspace(0.5, 2.0, 5),
    "label_smoothing": 0.2,
    "z_loss": 0.05,
    "softcap": 3.0,
    "where": np.arange(12) % 4 != 0,
    "sample_weight": np.linspace(0.1, 2.0, 12),
  },
}


@pytest.mark.parametrize("reduction", ALL_REDUCTIONS)
@pytest.mark.parametrize("name", list(NEW_OPTIONS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logits_new_options_match_reference(name, reduction, dtype):
  z, t = _logits((12, 5)), _soft_targets((12, 5))
  got = xentax.categorical_cross_entropy_with_logits(
    z.astype(dtype), t, reduction=reduction, **NEW_OPTIONS[name]
  )
  want = ref.categorical_cross_entropy_with_logits(z, t, reduction=reduction, **NEW_OPTIONS[name])
  assert got.dtype == dtype
  np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("reduction", ALL_REDUCTIONS)
def test_probs_sample_weight_matches_reference(reduction):
  z, t = _logits((12, 5)), _soft_targets((12, 5))
  p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  s = np.linspace(0.0, 2.0, 12)
  where = np.arange(12) % 3 != 0
  got = xentax.categorical_cross_entropy(p, t, sample_weight=s, where=where, reduction=reduction)
  want = ref.categorical_cross_entropy(p, t, sample_weight=s, where=where, reduction=reduction)
  np.testing.assert_allclose(got, want, **tol(np.float64))


@settings(max_examples=15, deadline=None)
@given(
  batch=st.integers(1, 6),
  classes=st.integers(1, 7),
  smoothing=st.sampled_from([0.0, 0.3]),
  z_loss=st.sampled_from([0.0, 0.1]),
  softcap=st.sampled_from([None, 1.5]),
  weighted=st.booleans(),
  reduction=st.sampled_from(ALL_REDUCTIONS),
  seed=st.integers(0, 2**16),
)
def test_logits_property_matches_reference(
  batch, classes, smoothing, z_loss, softcap, weighted, reduction, seed
):
  z, t = _logits((batch, classes), seed), _soft_targets((batch, classes), seed + 1)
  options = dict(label_smoothing=smoothing, z_loss=z_loss, softcap=softcap)
  if weighted:
    options["sample_weight"] = np.random.default_rng(seed).uniform(0, 2, batch)
    options["class_weights"] = np.linspace(0.5, 1.5, classes)
  got = xentax.categorical_cross_entropy_with_logits(z, t, reduction=reduction, **options)
  want = ref.categorical_cross_entropy_with_logits(z, t, reduction=reduction, **options)
  np.testing.assert_allclose(got, want, **tol(np.float64))


def _all_options_loss(z, t, zl=0.05, cap=3.0, eps=0.2, s=None):
  return xentax.categorical_cross_entropy_with_logits(
    z,
    t,
    class_weights=np.linspace(0.5, 2.0, 5),
    label_smoothing=eps,
    z_loss=zl,
    softcap=cap,
    where=np.arange(6) % 4 != 0,
    sample_weight=np.linspace(0.1, 2.0, 6) if s is None else s,
  )


def test_grad_and_jvp_with_every_option_match_finite_differences():
  # Targets away from 0 and 1, so finite differences stay inside [0, 1].
  z, t = _logits((6, 5)), 0.1 + 0.5 * _soft_targets((6, 5))
  check_grads(jax.jit(lambda z: _all_options_loss(z, t)), (z,), order=2, modes=("fwd", "rev"))
  check_grads(jax.jit(lambda t: _all_options_loss(z, t)), (t,), order=1, modes=("fwd", "rev"))


@pytest.mark.parametrize("option", ["zl", "cap", "eps", "s"])
def test_grad_wrt_each_float_option_matches_finite_differences(option):
  z, t = _logits((6, 5)), _soft_targets((6, 5))
  value = {"zl": 0.05, "cap": 3.0, "eps": 0.2, "s": np.linspace(0.1, 2.0, 6)}[option]
  check_grads(lambda v: _all_options_loss(z, t, **{option: v}), (value,), order=1)


def test_grad_matches_closed_form_with_z_loss_and_softcap():
  z, t = _logits((6, 5)), _soft_targets((6, 5))
  cap, zl = 2.5, 0.1
  got = jax.grad(
    lambda z: xentax.categorical_cross_entropy_with_logits(
      z, t, z_loss=zl, softcap=cap, reduction="sum"
    )
  )(z)
  capped = cap * np.tanh(z / cap)
  lse = np.log(np.exp(capped).sum(-1, keepdims=True))
  p = np.exp(capped - lse)
  want = (p * (t.sum(-1, keepdims=True) + 2 * zl * lse) - t) * (1 - np.tanh(z / cap) ** 2)
  np.testing.assert_allclose(got, want, **tol(np.float64, "grad"))


def test_jit_and_vmap_match_eager():
  z, t = _logits((3, 4, 5)), _soft_targets((3, 4, 5))
  f = functools.partial(
    xentax.categorical_cross_entropy_with_logits, z_loss=0.1, softcap=4.0, reduction="sum"
  )
  eager = np.array([f(z[i], t[i]) for i in range(3)])
  np.testing.assert_allclose(jax.jit(jax.vmap(f))(z, t), eager, rtol=1e-12)
  grads = jax.vmap(jax.grad(f))(z, t)
  np.testing.assert_allclose(grads[1], jax.grad(f)(z[1], t[1]), rtol=1e-12)


def test_fast_path_and_guarded_fallback_agree_and_the_fallback_is_taken():
  # One row whose exp overflows the fast shift (a logit far above the first 128) forces
  # the guarded path for the batch; its values and gradients equal the fast path's elsewhere.
  z = _logits((4, 300))
  t = _soft_targets((4, 300))
  wild = z.copy()
  wild[0, 200] = 1e3
  fast = jax.value_and_grad(xentax.categorical_cross_entropy_with_logits)
  v_wild, g_wild = fast(wild, t)
  want = ref.categorical_cross_entropy_with_logits(wild, t)
  np.testing.assert_allclose(v_wild, want, **tol(np.float64))
  _, g = fast(z, t)
  np.testing.assert_allclose(g_wild[1:], g[1:], rtol=1e-12)
  assert np.all(np.isfinite(g_wild))


def test_nan_logit_in_a_kept_row_is_nan_and_dropped_rows_leak_nothing():
  z, t = _logits((3, 4)), _soft_targets((3, 4))
  z[0, 1] = np.nan
  z[2] = np.nan
  f = jax.jit(
    lambda z, t, w: xentax.categorical_cross_entropy_with_logits(z, t, where=w, reduction="none")
  )
  losses = np.asarray(f(z, t, np.array([True, True, False])))
  assert np.isnan(losses[0]) and np.isfinite(losses[1]) and losses[2] == 0
  grad = jax.grad(
    lambda z: xentax.categorical_cross_entropy_with_logits(
      z, t, where=np.array([False, True, False]), softcap=2.0, z_loss=0.1
    )
  )(z)
  assert np.all(np.isfinite(grad)) and np.all(np.asarray(grad)[[0, 2]] == 0)


def test_minus_inf_under_zero_mass_stays_finite_in_forward_mode():
  z = np.array([[0.0, -np.inf, 2.0]])
  t = np.array([[0.3, 0.0, 0.7]])
  f = functools.partial(xentax.categorical_cross_entropy_with_logits, z_loss=0.1)
  _, tangent = jax.jvp(lambda z: f(z, t), (z,), (np.ones_like(z),))
  assert np.isfinite(tangent)


def test_traced_bad_target_gives_nan_loss_and_gradient_for_its_row_only():
  z, t = _logits((3, 5)), _soft_targets((3, 5))
  t[1, 2] = -0.25
  f = jax.jit(
    lambda z, t: xentax.categorical_cross_entropy_with_logits(z, t, softcap=5.0, reduction="none")
  )
  losses = np.asarray(f(z, t))
  assert np.isnan(losses[1]) and np.all(np.isfinite(losses[[0, 2]]))
  grad = np.asarray(jax.jit(jax.grad(lambda z: f(z, t)[1]))(z))
  assert np.all(np.isnan(grad[1]))


@pytest.mark.parametrize("num_classes", [5, 65536])  # 65536: summed in two pieces on CPU
def test_probs_values_and_gradients_match_float64_closed_form(num_classes):
  # float32 probabilities, soft targets on a few classes, one zero probability under
  # target mass (clamped at -100: zero gradient) and smoothing, so every class has mass.
  rng = np.random.default_rng(0)
  p = rng.uniform(0.01, 1.0, (4, num_classes))
  p = p / p.sum(-1, keepdims=True)
  p[0, 1] = 0.0
  t = np.zeros((4, num_classes))
  t[:, :3] = [0.2, 0.3, 0.5]
  p, t = p.astype(np.float32), t.astype(np.float32)
  f = lambda p: xentax.categorical_cross_entropy(p, t, label_smoothing=0.1, reduction="none")  # noqa: E731
  q = 0.9 * t.astype(np.float64) + 0.1 / num_classes
  p64 = p.astype(np.float64)
  with np.errstate(divide="ignore"):
    log_p = np.maximum(np.log(p64), -100.0)
    want_grad = np.where(p64 > 0, -q / np.where(p64 > 0, p64, 1.0), 0.0)
  np.testing.assert_allclose(f(p), -np.sum(q * log_p, -1), **tol(np.float32))
  grad = jax.grad(lambda p: jnp.sum(f(p)))(jnp.asarray(p))
  np.testing.assert_allclose(grad, want_grad, **tol(np.float32, "grad"))


def test_probs_bad_values_under_jit_are_nan_and_dropped_rows_leak_nothing():
  p = np.full((5, 4), 0.25)
  t = np.full((5, 4), 0.25)
  p[1, 0] = 1.5  # probability above 1
  p[2, 0] = -0.1  # negative probability
  t[3, 0] = 1.5  # target above 1
  p[4] = np.nan  # dropped row holding NaN
  where = np.array([True, True, True, True, False])
  f = jax.jit(lambda p: xentax.categorical_cross_entropy(p, t, where=where, reduction="none"))
  losses = np.asarray(f(p))
  assert np.isfinite(losses[0]) and np.all(np.isnan(losses[1:4])) and losses[4] == 0
  grad = np.asarray(jax.grad(lambda p: jnp.sum(f(p)))(p))
  assert np.all(np.isfinite(grad[0])) and np.all(np.isnan(grad[1:4])) and np.all(grad[4] == 0)


def test_option_gradients_ignore_a_dropped_row_with_nan_targets():
  # Dropped rows may hold anything, also in the targets: the gradients of traced options
  # stay those of the kept rows (float64 reference: the kept row alone).
  p = np.array([[0.2, 0.5, 0.3], [0.1, 0.6, 0.3]])
  t = np.array([[0.0, 1.0, 0.0], [np.nan, 0.3, 0.7]])
  where = np.array([True, False])
  for loss, scores in [
    (xentax.categorical_cross_entropy, p),
    (xentax.categorical_cross_entropy_with_logits, np.log(p)),
  ]:

    def f(eps, w, scores=scores, rows=slice(None), where=where, loss=loss):
      return loss(scores[rows], t[rows], label_smoothing=eps, class_weights=w, where=where[rows])

    got = jax.grad(f, argnums=(0, 1))(0.1, jnp.ones(3))
    want = jax.grad(f, argnums=(0, 1))(0.1, jnp.ones(3), rows=slice(0, 1))
    for g, w in zip(got, want, strict=True):
      np.testing.assert_allclose(g, w, **tol(np.float64, "grad"))


# No denormals: XLA:CPU flushes them to zero, so -1e-45 counts as 0 (as in every check).
_EDGE_TARGETS = [
  0.0,
  -0.0,
  1.0,
  0.5,
  -1e-30,
  -1.2e-38,
  1.0000001,
  2.0,
  -1.0,
  np.inf,
  -np.inf,
  np.nan,
]

# Which edge value each of the four rows gets.
_EDGE_PICKS = st.lists(st.sampled_from(range(len(_EDGE_TARGETS))), min_size=4, max_size=4)

# Compiled once per shape for every hypothesis example.
_EDGE_LOGITS_LOSSES = {
  focal: jax.jit(functools.partial(fn, reduction="none"))
  for focal, fn in [
    (False, xentax.categorical_cross_entropy_with_logits),
    (True, xentax.categorical_focal_loss_with_logits),
  ]
}


@jax.jit
def _edge_probs_loss_and_grad(p, t):
  losses = xentax.categorical_cross_entropy(p, t, reduction="none")
  return losses, jax.grad(lambda p: xentax.categorical_cross_entropy(p, t, reduction="sum"))(p)


@settings(max_examples=25, deadline=None)
@given(
  picks=_EDGE_PICKS,
  num_classes=st.sampled_from([5, 65536]),
  focal=st.booleans(),
)
def test_fast_range_check_flags_exactly_the_rows_with_a_target_outside_0_1(
  picks, num_classes, focal
):
  """Under jit (no eager ValueError), row n is NaN iff its target holds a value outside
  [0, 1] or a NaN: the fast form's folded min/max check, edge values included (tiny
  negatives, -0.0, the float just above 1), for short rows and rows summed in pieces."""
  rng = np.random.default_rng(len(picks) + num_classes)
  z = rng.normal(size=(4, num_classes)).astype(np.float32)
  t = np.zeros((4, num_classes), np.float32)
  t[:, 1] = 0.5
  values = np.array([_EDGE_TARGETS[i] for i in picks], np.float32)
  t[:, num_classes - 2] = values
  losses = np.asarray(_EDGE_LOGITS_LOSSES[focal](z, t))
  outside = ~((values >= 0) & (values <= 1))
  np.testing.assert_array_equal(np.isnan(losses), outside)


@settings(max_examples=25, deadline=None)
@given(
  picks=_EDGE_PICKS,
  num_classes=st.sampled_from([5, 65536]),
  on_probs=st.booleans(),
)
def test_probs_fast_range_check_flags_exactly_the_rows_with_a_value_outside_0_1(
  picks, num_classes, on_probs
):
  """``categorical_cross_entropy`` under jit: row n's loss and gradient are NaN iff its
  probabilities or its targets (whichever gets the edge value) hold a value outside [0, 1]
  or a NaN. On rows of 65536 XLA:CPU's fused max/min drop a NaN; this caught it."""
  p = np.full((4, num_classes), 1.0 / num_classes, np.float32)
  t = np.zeros((4, num_classes), np.float32)
  t[:, 1] = 0.5
  values = np.array([_EDGE_TARGETS[i] for i in picks], np.float32)
  (p if on_probs else t)[:, num_classes - 2] = values
  losses, grads = _edge_probs_loss_and_grad(p, t)
  outside = ~((values >= 0) & (values <= 1))
  np.testing.assert_array_equal(np.isnan(np.asarray(losses)), outside)
  np.testing.assert_array_equal(np.isnan(np.asarray(grads)).all(axis=1), outside)
  np.testing.assert_array_equal(np.isfinite(np.asarray(grads)).all(axis=1), ~outside)


def test_softcap_gradient_is_finite_at_a_kept_minus_inf_logit():
  """The cap's gradient with a -inf logit (soft-capped to -c) matches float64 central
  differences of the NumPy formula; it was NaN (``-inf / c * 0`` in dz/dc)."""
  z = np.array([[0.3, -np.inf, 1.2, 0.1], [0.5, 0.2, -0.4, 2.0]], np.float32)
  t = np.array([[0.5, 0.0, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0]], np.float32)

  def numpy_loss(cap):
    capped = cap * np.tanh(z.astype(np.float64) / cap)
    log_p = capped - np.log(np.sum(np.exp(capped), axis=-1, keepdims=True))
    return np.mean(-np.sum(t * log_p, axis=-1))

  h = 1e-6
  expected = (numpy_loss(2.5 + h) - numpy_loss(2.5 - h)) / (2 * h)
  grad_z, grad_cap = jax.grad(
    lambda z, cap: xentax.categorical_cross_entropy_with_logits(z, t, softcap=cap), (0, 1)
  )(z, 2.5)
  np.testing.assert_allclose(float(grad_cap), expected, rtol=1e-4)
  assert np.all(np.isfinite(np.asarray(grad_z)))


@pytest.mark.parametrize("num_classes", [7, 65536])
def test_z_loss_and_softcap_in_the_fused_loop_match_float64(num_classes):
  """The z-loss term enters the row's fused sum as its first term; values and logit
  gradients against float64 NumPy, for short rows and rows reduced in pieces."""
  rng = np.random.default_rng(num_classes)
  z = (3 * rng.normal(size=(3, num_classes))).astype(np.float32)
  t = rng.dirichlet(np.ones(num_classes), size=3).astype(np.float32)
  cap, lam = 4.0, 0.05
  capped = cap * np.tanh(z.astype(np.float64) / cap)
  lse = np.log(np.sum(np.exp(capped), axis=-1))
  expected = -np.sum(t * (capped - lse[:, None]), axis=-1) + lam * lse**2
  p = np.exp(capped - lse[:, None])
  expected_grad = (p * (t.sum(-1) + 2 * lam * lse)[:, None] - t) * (1 - (capped / cap) ** 2)

  def loss(z):
    return xentax.categorical_cross_entropy_with_logits(
      z, t, softcap=cap, z_loss=lam, reduction="sum"
    )

  got = jax.jit(
    lambda z: xentax.categorical_cross_entropy_with_logits(
      z, t, softcap=cap, z_loss=lam, reduction="none"
    )
  )(z)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=2e-6)
  np.testing.assert_allclose(
    np.asarray(jax.jit(jax.grad(loss))(z)), expected_grad, rtol=1e-4, atol=1e-9
  )


@pytest.mark.parametrize(
  "fn", [xentax.categorical_cross_entropy_with_logits, xentax.categorical_focal_loss_with_logits]
)
def test_second_derivatives_through_one_hot_targets_are_finite(fn):
  """The folded range check carries no gradient: at one-hot targets its sqrt's derivative is
  infinite, which made the Hessian with respect to the targets NaN (review finding)."""
  x = jnp.array([[0.5, -1.0, 2.0, 0.1]])
  t = jnp.array([[0.0, 0.0, 1.0, 0.0]])
  hessian = jax.hessian(lambda t: fn(x, t) ** 2)(t)
  assert np.all(np.isfinite(np.asarray(hessian)))


def test_z_loss_gradient_ignores_a_dropped_row_holding_nan():
  """Reverse mode: the z-loss weight's gradient comes from kept rows only (review finding)."""
  x = np.array([[0.5, -1.0, 2.0], [np.nan, 0.0, 0.0]])
  t = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
  where = np.array([True, False])

  def loss(z, x):
    return xentax.categorical_cross_entropy_with_logits(x, t, z_loss=z, where=where)

  got = jax.grad(loss)(0.01, x)
  lse = np.log(np.sum(np.exp(x[0])))
  # mean over the one kept row: d/dz (z lse^2) = lse^2
  np.testing.assert_allclose(float(got), lse**2, rtol=1e-6)


@pytest.mark.parametrize("name", ["plain", "label_smoothing", "all", "z_loss"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gradient_is_the_same_with_kept_or_recomputed_exponentials(name, dtype, monkeypatch):
  # Small logits keep their exponentials for the backward pass; large ones recompute them
  # there. Both must give the closed-form gradient, with a logit gap beyond exp overflow
  # (row 1), a -inf logit without target mass (row 2: the guarded fallback) and a dropped
  # row holding NaN and +inf (row 0), which contributes nothing.
  from xentax.losses import _rows

  z, t = _logits((12, 5)), _soft_targets((12, 5))
  z[1, 2] = 1000.0
  t[2] = [0.5, 0.5, 0.0, 0.0, 0.0]
  z[2, 3] = -np.inf
  options = dict(OPTIONS.get(name, NEW_OPTIONS.get(name)))
  where = np.asarray(options.pop("where", np.ones(12, bool))).copy()
  where[0] = False
  z[0, :2] = [np.nan, np.inf]
  z, t = z.astype(dtype), t.astype(dtype)

  def f(z):
    return xentax.categorical_cross_entropy_with_logits(z, t, where=where, **options)

  clean = z.astype(np.float64)
  clean[0] = 0.0
  want = xentax.gradcheck.logits_grad(
    "categorical_cross_entropy_with_logits", clean, t.astype(np.float64), where=where, **options
  )
  kept = jax.grad(f)(z)
  kept_exps = str(jax.make_jaxpr(jax.grad(f))(z)).count("exp")
  tangent = np.random.default_rng(2).normal(size=z.shape).astype(dtype)
  tangent[2, 3] = 0.0
  kept_jvp = jax.jvp(f, (z,), (tangent,))[1]
  monkeypatch.setattr(_rows, "DENSE_KEEP_EXP_MAX_ENTRIES", 0)
  recomputed = jax.grad(f)(z)
  assert str(jax.make_jaxpr(jax.grad(f))(z)).count("exp") > kept_exps  # the other path
  recomputed_jvp = jax.jvp(f, (z,), (tangent,))[1]
  for grad in (kept, recomputed):
    np.testing.assert_allclose(grad, want, **tol(dtype, "grad"))
    assert np.all(grad[0] == 0)
  np.testing.assert_allclose(kept_jvp, recomputed_jvp, **tol(dtype, "grad"))
  np.testing.assert_allclose(kept_jvp, np.sum(want * tangent), **tol(dtype, "grad"))
