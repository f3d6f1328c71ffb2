"""Binary losses against the float64 reference, options and edge cases."""

import functools

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xentax
from tests import _reference as ref
from tests._tolerances import tol

REDUCTIONS = ["none", "sum", "mean", "sum_over_batch_size"]
rng = np.random.default_rng(0)
Z = rng.normal(size=(6, 4)) * 3
Y_HARD = (rng.uniform(size=(6, 4)) > 0.5).astype(np.float64)
Y_SOFT = rng.uniform(size=(6, 4))
P = 1 / (1 + np.exp(-Z))

LOGIT_OPTIONS = {
  "plain": {},
  "pos_weight": {"pos_weight": np.array([0.5, 1.0, 2.0, 3.0])},
  "weights": {"weights": rng.uniform(size=(6, 1))},
  "label_smoothing": {"label_smoothing": 0.1},
  "where": {"where": rng.uniform(size=(6, 4)) > 0.3},
  "sample_weight": {"sample_weight": rng.uniform(0.0, 2.0, size=(6, 4))},
  "all": {
    "pos_weight": np.array([0.5, 1.0, 2.0, 3.0]),
    "weights": rng.uniform(size=(6, 4)),
    "label_smoothing": 0.2,
    "where": rng.uniform(size=(6, 4)) > 0.3,
    "sample_weight": rng.uniform(0.0, 2.0, size=(6, 1)),
  },
}
PROBS_OPTIONS = ["plain", "weights", "where", "label_smoothing", "sample_weight", "all"]
FOCAL_OPTIONS = {
  "label_smoothing": {"label_smoothing": 0.2},
  "where": {"where": rng.uniform(size=(6, 4)) > 0.3},
  "sample_weight": {"sample_weight": rng.uniform(0.0, 2.0, size=(4,))},
  "all": {
    "label_smoothing": 0.1,
    "where": rng.uniform(size=(6, 1)) > 0.3,
    "sample_weight": rng.uniform(0.0, 2.0, size=(6, 4)),
  },
}


def _probs_options(name):
  options = dict(LOGIT_OPTIONS[name])
  options.pop("pos_weight", None)
  return options


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(LOGIT_OPTIONS))
@pytest.mark.parametrize("labels", ["hard", "soft"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_with_logits_matches_reference(name, reduction, labels, dtype):
  y = Y_HARD if labels == "hard" else Y_SOFT
  options = LOGIT_OPTIONS[name]
  got = xentax.binary_cross_entropy_with_logits(Z.astype(dtype), y, reduction=reduction, **options)
  want = ref.binary_cross_entropy_with_logits(Z, y, reduction=reduction, **options)
  assert got.dtype == dtype
  np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", PROBS_OPTIONS)
@pytest.mark.parametrize("labels", ["hard", "soft"])
def test_probs_matches_reference(name, reduction, labels):
  y = Y_HARD if labels == "hard" else Y_SOFT
  options = _probs_options(name)
  got = xentax.binary_cross_entropy(P, y, reduction=reduction, **options)
  want = ref.binary_cross_entropy(P, y, reduction=reduction, **options)
  np.testing.assert_allclose(got, want, **tol(np.float64))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("alpha", [None, 0.25])
@pytest.mark.parametrize("labels", ["hard", "soft"])
def test_focal_matches_torchvision_reference(gamma, alpha, reduction, labels):
  y = Y_HARD if labels == "hard" else Y_SOFT
  got = xentax.binary_focal_loss_with_logits(Z, y, gamma=gamma, alpha=alpha, reduction=reduction)
  want = ref.binary_focal_loss_with_logits(Z, y, gamma=gamma, alpha=alpha, reduction=reduction)
  np.testing.assert_allclose(got, want, **tol(np.float64))


def test_deck_worked_example():
  # True label 1, predicted probability 0.8: -log(0.8) = 0.2231.
  assert xentax.binary_cross_entropy(np.array(0.8), np.array(1.0)) == pytest.approx(
    0.2231, abs=5e-5
  )
  logit = np.log(0.8 / 0.2)
  assert xentax.binary_cross_entropy_with_logits(np.array(logit), np.array(1.0)) == pytest.approx(
    -np.log(0.8), rel=1e-12
  )


def test_deck_dataset_average():
  # 100 images, 50 cats predicted 0.8, 50 non-cats predicted 0.3: the mean of the
  # per-image losses is (-log 0.8 - log 0.7) / 2.
  labels = np.repeat([1.0, 0.0], 50)
  probs = np.repeat([0.8, 0.3], 50)
  want = (-np.log(0.8) - np.log(0.7)) / 2
  assert xentax.binary_cross_entropy(probs, labels) == pytest.approx(want, rel=1e-12)
  assert want == pytest.approx(0.2899, abs=5e-5)


def test_weights_multiply_and_mean_divides_by_count():
  w = rng.uniform(size=(6, 4))
  none = xentax.binary_cross_entropy_with_logits(Z, Y_HARD, reduction="none")
  mean = xentax.binary_cross_entropy_with_logits(Z, Y_HARD, weights=w)
  np.testing.assert_allclose(mean, (w * none).sum() / Z.size, rtol=1e-12)


@pytest.mark.parametrize(
  "fn", [xentax.binary_cross_entropy_with_logits, xentax.binary_focal_loss_with_logits]
)
def test_infinite_logits_give_finite_or_true_infinite_losses_and_finite_grads(fn):
  z = np.array([np.inf, -np.inf, np.inf, -np.inf])
  y = np.array([1.0, 0.0, 0.0, 1.0])
  losses = fn(z, y, reduction="none")
  np.testing.assert_array_equal(np.abs(losses), [0.0, 0.0, np.inf, np.inf])
  grad = jax.grad(lambda z: fn(z, y[:2], reduction="sum"))(z[:2])
  assert np.all(np.isfinite(grad))
  grad = jax.grad(lambda z: fn(z, y, reduction="sum"))(z)
  assert np.all(np.isfinite(grad))


def test_pos_weight_with_infinite_logit():
  losses = xentax.binary_cross_entropy_with_logits(
    np.array([np.inf, -np.inf]), np.array([1.0, 0.0]), pos_weight=np.array(3.0), reduction="none"
  )
  np.testing.assert_array_equal(np.abs(losses), [0.0, 0.0])


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_probability_edges_are_clamped_like_torch(reduction, traced):
  """log p and log(1 - p) clamp at -100 (torch's value) under every reduction, each of which
  may take its own fast path; a term's gradient is 0 where its clamp is active."""
  p = np.array([0.0, 1.0, 0.0, 1.0])
  y = np.array([0.0, 1.0, 1.0, 0.0])
  loss = functools.partial(xentax.binary_cross_entropy, reduction=reduction)
  if traced:
    loss = jax.jit(loss)
  losses = np.array([0.0, 0.0, 100.0, 100.0])
  scale = {"none": 1.0, "sum": 1.0, "mean": 0.25, "sum_over_batch_size": 0.25}[reduction]
  want = losses if reduction == "none" else losses.sum() * scale
  np.testing.assert_allclose(loss(p, y), want)
  grad = jax.grad(lambda p: jnp.sum(loss(p, y)))(p)
  np.testing.assert_allclose(grad, np.array([1.0, -1.0, 0.0, 0.0]) * scale)


def test_out_of_range_values_raise_eagerly_and_are_nan_under_jit():
  with pytest.raises(ValueError, match=r"probs must lie in \[0, 1\]; found 1.2 at position \(1,\)"):
    xentax.binary_cross_entropy(np.array([0.5, 1.2]), np.array([1.0, 0.0]))
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 1\]; found 2.0"):
    xentax.binary_cross_entropy_with_logits(np.array([0.5, 1.2]), np.array([2.0, 0.0]))
  jitted = jax.jit(lambda p, y: xentax.binary_cross_entropy(p, y, reduction="none"))
  losses = np.asarray(jitted(np.array([0.5, 1.2, -0.1]), np.array([1.0, 0.0, 0.0])))
  assert np.isfinite(losses[0]) and np.all(np.isnan(losses[1:]))


def test_bad_inputs_raise_clear_errors():
  with pytest.raises(ValueError, match=r"\(6, 4\).*\(6,\)"):
    xentax.binary_cross_entropy_with_logits(Z, Y_HARD[:, 0])
  with pytest.raises(ValueError, match="pos_weight has shape"):
    xentax.binary_cross_entropy_with_logits(Z, Y_HARD, pos_weight=np.ones(3))
  with pytest.raises(ValueError, match="choose one of"):
    xentax.binary_focal_loss_with_logits(Z, Y_HARD, reduction="batchmean")
  with pytest.raises(TypeError, match="where must be a boolean"):
    xentax.binary_cross_entropy(P, Y_HARD, where=np.ones((6, 4)))


def test_all_masked_mean_is_zero_with_zero_grad():
  where = np.zeros((6, 4), bool)
  value, grad = jax.value_and_grad(
    lambda z: xentax.binary_cross_entropy_with_logits(z, Y_HARD, where=where)
  )(Z)
  assert value == 0.0 and np.all(np.asarray(grad) == 0)


def test_gradient_is_deck_sigmoid_minus_label():
  grad = jax.grad(lambda z: xentax.binary_cross_entropy_with_logits(z, Y_SOFT, reduction="sum"))(Z)
  np.testing.assert_allclose(grad, 1 / (1 + np.exp(-Z)) - Y_SOFT, **tol(np.float64, "grad"))


def test_bfloat16_input_gives_float32_loss():
  got = xentax.binary_cross_entropy_with_logits(jnp.asarray(Z, jnp.bfloat16), Y_HARD)
  assert got.dtype == jnp.float32
  want = ref.binary_cross_entropy_with_logits(
    np.asarray(jnp.asarray(Z, jnp.bfloat16), np.float64), Y_HARD
  )
  np.testing.assert_allclose(got, want, **tol(np.float32))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(FOCAL_OPTIONS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_focal_options_match_reference(name, reduction, dtype):
  options = FOCAL_OPTIONS[name]
  got = xentax.binary_focal_loss_with_logits(
    Z.astype(dtype), Y_SOFT, alpha=0.25, reduction=reduction, **options
  )
  want = ref.binary_focal_loss_with_logits(Z, Y_SOFT, alpha=0.25, reduction=reduction, **options)
  assert got.dtype == dtype
  np.testing.assert_allclose(got, want, **tol(dtype))


LOSSES = {
  "probs": (xentax.binary_cross_entropy, ref.binary_cross_entropy),
  "logits": (xentax.binary_cross_entropy_with_logits, ref.binary_cross_entropy_with_logits),
  "focal": (xentax.binary_focal_loss_with_logits, ref.binary_focal_loss_with_logits),
}


def _scores(kind, z):
  return 1 / (1 + np.exp(-z)) if kind == "probs" else z


@settings(max_examples=15, deadline=None)
@given(
  kind=st.sampled_from(list(LOSSES)),
  reduction=st.sampled_from(REDUCTIONS),
  data=st.data(),
)
def test_options_and_reductions_match_reference_property(kind, reduction, data):
  shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=5))
  floats = st.floats(-8, 8, allow_nan=False)
  z = data.draw(hnp.arrays(np.float64, shape, elements=floats))
  y = data.draw(hnp.arrays(np.float64, shape, elements=st.floats(0, 1)))
  options = {
    "label_smoothing": data.draw(st.floats(0, 1)),
    # Weights 0 or far from subnormal: XLA flushes subnormals to zero, so a weight whose
    # product with a loss is subnormal counts as a weight of 0 there (documented).
    "sample_weight": data.draw(
      hnp.arrays(np.float64, shape[-1:], elements=st.just(0.0) | st.floats(1e-100, 3))
    ),
    "where": data.draw(hnp.arrays(np.bool_, shape)),
  }
  fn, reference = LOSSES[kind]
  got = fn(_scores(kind, z), y, reduction=reduction, **options)
  want = reference(_scores(kind, z), y, reduction=reduction, **options)
  np.testing.assert_allclose(got, want, **tol(np.float64))
  assert reduction == "none" or np.ndim(got) == 0


@pytest.mark.parametrize("kind", list(LOSSES))
def test_sample_weight_enters_the_mean_denominator_and_weights_do_not(kind):
  fn, _ = LOSSES[kind]
  scores = _scores(kind, Z)
  s = rng.uniform(0.1, 2.0, size=(6, 4))
  none = np.asarray(fn(scores, Y_SOFT, reduction="none"))
  weighted = fn(scores, Y_SOFT, sample_weight=s)
  np.testing.assert_allclose(weighted, (s * none).sum() / s.sum(), rtol=1e-12)
  # Keras's default and torch's `(loss(reduction="none") * w).mean()`: the count.
  per_batch = fn(scores, Y_SOFT, sample_weight=s, reduction="sum_over_batch_size")
  np.testing.assert_allclose(per_batch, (s * none).mean(), rtol=1e-12)
  np.testing.assert_allclose(fn(scores, Y_SOFT, sample_weight=s, reduction="none"), s * none)
  if kind != "focal":  # elementwise `weights` (torch's `weight`) multiply, count stays N
    np.testing.assert_allclose(fn(scores, Y_SOFT, weights=s), (s * none).mean(), rtol=1e-12)


@pytest.mark.parametrize("kind", list(LOSSES))
def test_zero_sample_weight_drops_an_infinite_loss(kind):
  fn, _ = LOSSES[kind]
  scores = np.array([np.inf, 0.5]) if kind != "probs" else np.array([0.0, 0.5])
  y = np.array([0.0, 1.0]) if kind != "probs" else np.array([1.0, 1.0])
  s = np.array([0.0, 1.0])
  value, grad = jax.value_and_grad(lambda x: fn(x, y, sample_weight=s, reduction="sum"))(
    jnp.asarray(scores)
  )
  want = float(fn(scores[1:], y[1:], reduction="sum"))
  np.testing.assert_allclose(value, want, rtol=1e-12)
  assert grad[0] == 0 and np.isfinite(grad[1])


@pytest.mark.parametrize("kind", list(LOSSES))
def test_label_smoothing_equals_smoothed_labels(kind):
  fn, _ = LOSSES[kind]
  scores = _scores(kind, Z)
  eps = 0.3
  np.testing.assert_allclose(
    fn(scores, Y_HARD, label_smoothing=eps, reduction="none"),
    fn(scores, Y_HARD * (1 - eps) + eps / 2, reduction="none"),
    rtol=1e-12,
  )


def _central(f, x, h=1e-6):
  x = np.asarray(x, np.float64)
  g = np.zeros_like(x)
  for i in np.ndindex(x.shape):
    e = np.zeros_like(x)
    e[i] = h
    g[i] = (float(f(x + e)) - float(f(x - e))) / (2 * h)
  return g


@pytest.mark.parametrize("reduction", ["mean", "sum_over_batch_size"])
@pytest.mark.parametrize("kind", list(LOSSES))
def test_gradients_in_label_smoothing_and_sample_weight_match_differences(kind, reduction):
  fn, reference = LOSSES[kind]
  scores = _scores(kind, Z)
  where = LOGIT_OPTIONS["where"]["where"]
  s0 = rng.uniform(0.5, 2.0, size=(4,))

  def loss(eps, s, f=fn):
    return f(scores, Y_SOFT, label_smoothing=eps, sample_weight=s, where=where, reduction=reduction)

  g_eps, g_s = jax.grad(loss, argnums=(0, 1))(0.1, s0)
  np.testing.assert_allclose(
    g_eps, _central(lambda e: loss(e, s0, reference), 0.1), rtol=1e-6, atol=1e-8
  )
  np.testing.assert_allclose(
    g_s, _central(lambda s: loss(0.1, s, reference), s0), rtol=1e-6, atol=1e-8
  )


@pytest.mark.parametrize("kind", list(LOSSES))
def test_jit_vmap_grad_and_jvp_agree(kind):
  fn, reference = LOSSES[kind]
  scores = jnp.asarray(_scores(kind, Z))
  options = {"label_smoothing": 0.1, "sample_weight": np.linspace(0.5, 2.0, 4)}

  def loss(x):
    return fn(x, Y_SOFT, **options)

  np.testing.assert_allclose(jax.jit(loss)(scores), loss(scores), rtol=1e-12)
  rows = jax.vmap(lambda x, y: fn(x, y, reduction="sum", **options))(scores, jnp.asarray(Y_SOFT))
  want = [reference(np.asarray(scores)[i], Y_SOFT[i], reduction="sum", **options) for i in range(6)]
  np.testing.assert_allclose(rows, want, **tol(np.float64))
  grad = jax.jit(jax.grad(loss))(scores)
  v = jnp.asarray(rng.normal(size=(6, 4)))
  _, tangent = jax.jvp(loss, (scores,), (v,))
  np.testing.assert_allclose(tangent, jnp.vdot(grad, v), rtol=1e-10)
  np.testing.assert_allclose(
    grad, _central(lambda x: reference(x, Y_SOFT, **options), scores), rtol=1e-5, atol=1e-8
  )


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("kind", list(LOSSES))
def test_dropped_garbage_leaks_nothing_under_jit(kind, reduction):
  # The fast sum meets the NaN / infinity / bad label and falls back to the exact one.
  fn, reference = LOSSES[kind]
  scores = np.array(_scores(kind, Z))
  y = Y_SOFT.copy()
  where = np.ones((6, 4), bool)
  where[0, :3] = False
  scores[0, 0], scores[0, 1], y[0, 2] = np.nan, (np.inf if kind != "probs" else 2.0), 3.0

  def loss(x, y):
    return fn(x, y, where=where, sample_weight=np.full((6, 4), 2.0), reduction=reduction)

  value, grad = jax.jit(jax.value_and_grad(loss))(jnp.asarray(scores), jnp.asarray(y))
  clean = np.where(where, scores, 0.5)
  want = reference(clean, np.where(where, y, 0.5), where=where, sample_weight=2.0,
                   reduction=reduction)  # fmt: skip
  np.testing.assert_allclose(value, want, **tol(np.float64))
  assert np.all(np.asarray(grad)[~where] == 0) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("kind", list(LOSSES))
def test_concrete_bad_new_options_raise(kind):
  fn, _ = LOSSES[kind]
  scores = _scores(kind, Z)
  with pytest.raises(ValueError, match="label_smoothing"):
    fn(scores, Y_SOFT, label_smoothing=1.5)
  with pytest.raises(ValueError, match="sample_weight"):
    fn(scores, Y_SOFT, sample_weight=-np.ones(4))
  with pytest.raises(ValueError, match=r"sample_weight has shape \(3,\)"):
    fn(scores, Y_SOFT, sample_weight=np.ones(3))


def test_the_guarded_sum_of_a_large_batch_with_a_row_mask_and_traced_row_weights():
  # Large enough for the guarded formula to run by blocks of rows; an infinite logit sends
  # the batch there; the mask and the traced pos_weight have rows of their own.
  rng = np.random.default_rng(3)
  z = rng.normal(size=(256, 4096)).astype(np.float32)
  y = (rng.uniform(size=z.shape) < 0.5).astype(np.float32)
  z[5, 7], y[5, 7] = np.inf, 1.0  # its loss is 0: the limit of a large finite logit
  where = rng.uniform(size=z.shape) < 0.9
  pos_weight = rng.uniform(0.5, 2.0, size=(256, 1)).astype(np.float32)
  loss = jax.jit(
    lambda z, y, pw: xentax.binary_cross_entropy_with_logits(z, y, pos_weight=pw, where=where)
  )
  got = loss(z, y, pos_weight)
  finite = np.where(np.isinf(z), 100.0, z)
  want = ref.binary_cross_entropy_with_logits(finite, y, pos_weight=pos_weight, where=where)
  np.testing.assert_allclose(got, want, rtol=1e-5)
