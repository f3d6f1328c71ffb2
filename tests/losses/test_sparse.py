"""Sparse categorical losses against the float64 reference, options and edge cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import xentax
from tests import _reference as ref
from tests._tolerances import tol

REDUCTIONS = ["none", "sum", "mean", "sum_over_batch_size"]
rng = np.random.default_rng(0)


def _logits(shape, scale=3.0, seed=0):
  return np.random.default_rng(seed).normal(size=shape) * scale


def _labels(shape, num_classes, seed=1):
  return np.random.default_rng(seed).integers(0, num_classes, size=shape)


OPTIONS = {
  "plain": {},
  "class_weights": {"class_weights": np.linspace(0.5, 2.0, 5)},
  "ignore_index": {"ignore_index": 3},
  "label_smoothing": {"label_smoothing": 0.1},
  "z_loss": {"z_loss": 1e-3},
  "where": {"where": np.arange(12) % 3 != 0},
  "all": {
    "class_weights": np.linspace(0.5, 2.0, 5),
    "ignore_index": 3,
    "label_smoothing": 0.2,
    "z_loss": 1e-2,
    "where": np.arange(12) % 4 != 0,
  },
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logits_matches_reference(name, reduction, dtype):
  z, y = _logits((12, 5)), _labels(12, 5)
  options = OPTIONS[name]
  got = xentax.sparse_categorical_cross_entropy_with_logits(
    z.astype(dtype), y, reduction=reduction, **options
  )
  want = ref.sparse_categorical_cross_entropy_with_logits(z, y, reduction=reduction, **options)
  assert got.dtype == dtype
  np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", ["plain", "class_weights", "ignore_index", "where"])
def test_probs_matches_reference(name, reduction):
  z, y = _logits((12, 5)), _labels(12, 5)
  p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  options = {k: v for k, v in OPTIONS[name].items()}
  got = xentax.sparse_categorical_cross_entropy(p, y, reduction=reduction, **options)
  want = ref.sparse_categorical_cross_entropy(p, y, reduction=reduction, **options)
  np.testing.assert_allclose(got, want, **tol(np.float64))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_matches_reference(gamma, reduction):
  z, y = _logits((12, 5)), _labels(12, 5)
  options = {"class_weights": np.linspace(0.5, 2.0, 5), "ignore_index": 1}
  got = xentax.sparse_categorical_focal_loss_with_logits(
    z, y, gamma=gamma, reduction=reduction, **options
  )
  want = ref.sparse_categorical_focal_loss_with_logits(
    z, y, gamma=gamma, reduction=reduction, **options
  )
  np.testing.assert_allclose(got, want, **tol(np.float64))


def test_focal_with_gamma_zero_is_cross_entropy():
  z, y = _logits((12, 5)), _labels(12, 5)
  w = np.linspace(0.5, 2.0, 5)
  focal = xentax.sparse_categorical_focal_loss_with_logits(z, y, gamma=0.0, class_weights=w)
  ce = xentax.sparse_categorical_cross_entropy_with_logits(z, y, class_weights=w)
  np.testing.assert_allclose(focal, ce, rtol=1e-14)


def test_deck_sparse_example():
  # The deck's sparse pseudocode: -log(Y_pred[i, y_true[i]]) averaged over the batch.
  probs = np.array([[0.2, 0.8], [0.7, 0.3]])
  labels = np.array([1, 0])
  want = (-np.log(0.8) - np.log(0.7)) / 2
  assert xentax.sparse_categorical_cross_entropy(probs, labels) == pytest.approx(want, rel=1e-12)
  assert xentax.sparse_categorical_cross_entropy_with_logits(
    np.log(probs), labels
  ) == pytest.approx(want, rel=1e-12)
  assert xentax.sparse_categorical_cross_entropy(probs[:1], labels[:1]) == pytest.approx(
    0.2231, abs=5e-5
  )


def test_class_axis_one_with_spatial_dims():
  z = _logits((2, 5, 3, 4))
  y = _labels((2, 3, 4), 5)
  got = xentax.sparse_categorical_cross_entropy_with_logits(z, y, axis=1, reduction="none")
  want = ref.sparse_categorical_cross_entropy_with_logits(z, y, axis=1, reduction="none")
  assert got.shape == (2, 3, 4)
  np.testing.assert_allclose(got, want, **tol(np.float64))
  moved = xentax.sparse_categorical_cross_entropy_with_logits(
    np.moveaxis(z, 1, -1), y, reduction="none"
  )
  np.testing.assert_allclose(got, moved, rtol=1e-14)


def test_weighted_mean_is_torch_formula():
  z, y = _logits((12, 5)), _labels(12, 5)
  w = np.linspace(0.5, 2.0, 5)
  none = xentax.sparse_categorical_cross_entropy_with_logits(z, y, reduction="none")
  mean = xentax.sparse_categorical_cross_entropy_with_logits(z, y, class_weights=w)
  np.testing.assert_allclose(mean, np.sum(w[y] * none) / np.sum(w[y]), rtol=1e-12)


def test_smoothing_with_class_weights_and_ignore_index_matches_torch_interaction():
  # torch: (1 - e) * nll(weighted, mean) + e / C * sum_c w_c (-log p_c) / sum w[y]
  z, y = _logits((12, 5)), _labels(12, 5)
  w, e, ignore = np.linspace(0.5, 2.0, 5), 0.3, 2
  kept = y != ignore
  log_p = z - np.log(np.exp(z).sum(-1, keepdims=True))
  denom = w[y[kept]].sum()
  nll = -(w[y] * log_p[np.arange(12), y])[kept].sum() / denom
  smooth = -(log_p * w).sum(-1)[kept].sum() / denom
  want = (1 - e) * nll + e / 5 * smooth
  got = xentax.sparse_categorical_cross_entropy_with_logits(
    z, y, class_weights=w, label_smoothing=e, ignore_index=ignore
  )
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_z_loss_adds_squared_log_normaliser():
  z, y = _logits((12, 5)), _labels(12, 5)
  lse = np.log(np.exp(z).sum(-1))
  base = xentax.sparse_categorical_cross_entropy_with_logits(z, y, reduction="none")
  with_z = xentax.sparse_categorical_cross_entropy_with_logits(z, y, z_loss=0.5, reduction="none")
  np.testing.assert_allclose(with_z - base, 0.5 * lse**2, rtol=1e-12)


def test_everything_ignored_gives_zero_mean_and_zero_grad():
  z, y = _logits((4, 5)), np.full(4, -100)
  fn = lambda z: xentax.sparse_categorical_cross_entropy_with_logits(z, y, ignore_index=-100)  # noqa: E731
  value, grad = jax.value_and_grad(fn)(z)
  assert value == 0.0
  assert np.all(np.asarray(grad) == 0.0)
  w = np.ones(5)
  masked = xentax.sparse_categorical_cross_entropy_with_logits(
    z, np.zeros(4, int), class_weights=w, where=np.zeros(4, bool)
  )
  assert masked == 0.0


def test_ignored_rows_with_inf_and_nan_are_harmless():
  z = _logits((3, 4))
  z[1] = -np.inf
  z[2, 0] = np.nan
  y = np.array([0, -1, -1])
  fn = lambda z: xentax.sparse_categorical_cross_entropy_with_logits(z, y, ignore_index=-1)  # noqa: E731
  value, grad = jax.value_and_grad(fn)(z)
  np.testing.assert_allclose(value, ref.sparse_categorical_cross_entropy_with_logits(z[:1], y[:1]))
  assert np.all(np.isfinite(grad))
  assert np.all(np.asarray(grad)[1:] == 0)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_minus_inf_logits_on_zero_mass_classes_are_finite(smoothing):
  z = np.array([[0.0, -np.inf, 2.0], [-np.inf, 1.0, -np.inf]])
  y = np.array([2, 1])
  w = np.array([1.0, 0.0, 2.0])
  # With smoothing every class has mass, so a -inf logit with positive weight is an infinite
  # loss; give those classes zero weight so the true value is finite.
  options = {"label_smoothing": smoothing, "class_weights": w if smoothing else None}
  if smoothing:
    z = np.array([[0.0, -np.inf, 2.0], [0.5, -np.inf, 3.0]])
    y = np.array([2, 0])
  fn = lambda z: xentax.sparse_categorical_cross_entropy_with_logits(z, y, **options)  # noqa: E731
  value, grad = jax.value_and_grad(fn)(z)
  assert np.isfinite(value)
  assert np.all(np.isfinite(grad))
  np.testing.assert_allclose(
    value, ref.sparse_categorical_cross_entropy_with_logits(z, y, **options), rtol=1e-12
  )


def test_minus_inf_logit_with_smoothing_mass_is_infinite_not_nan():
  z = np.array([[0.0, -np.inf, 2.0]])
  value = xentax.sparse_categorical_cross_entropy_with_logits(z, np.array([2]), label_smoothing=0.1)
  assert value == np.inf


def test_focal_confident_prediction_has_finite_gradient():
  # p_y rounds to 1 in float32 here; log(1 - p_y) must still be exact.
  z = np.array([[40.0, 0.0, -3.0]], np.float32)
  grad = jax.grad(
    lambda z: xentax.sparse_categorical_focal_loss_with_logits(z, np.array([0]), gamma=2.0)
  )(z)
  assert np.all(np.isfinite(grad))
  value = xentax.sparse_categorical_focal_loss_with_logits(z.astype(np.float64), np.array([0]))
  assert value == pytest.approx(ref.sparse_categorical_focal_loss_with_logits(z, [0]), rel=1e-10)


def _focal_float64(z, y, gamma):
  """Per-example ``(1 - p_y)^g (-log p_y)`` and its logit gradient (the docstring's closed
  form), in float64 with ``1 - p_y`` summed from the other classes."""
  z = np.asarray(z, np.float64)
  rows = np.arange(len(y))
  log_p = z - z.max(-1, keepdims=True)
  log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
  p = np.exp(log_p)
  p_y, log_p_y = p[rows, y], log_p[rows, y]
  onehot = np.zeros_like(z)
  onehot[rows, y] = 1.0
  one_minus = np.sum(p * (1 - onehot), -1)
  loss = one_minus**gamma * -log_p_y
  scale = one_minus ** (gamma - 1) * (one_minus - gamma * p_y * log_p_y)
  return loss, (p - onehot) * scale[:, None]


@pytest.mark.parametrize("num_classes", [5, 65536])  # 65536: summed in two pieces on CPU
@pytest.mark.parametrize("extreme", [None, "overflow", "underflow"])
def test_focal_fast_and_guarded_forms_match_float64(num_classes, extreme):
  # Ordinary rows and a confident one (p_y rounds to 1 in float32) take the one-pass form;
  # a logit ~100 above the target's (exp overflows) or every other logit ~120 below it
  # (their sum flushes to 0) sends the batch to the guarded two-log-sum-exp form.
  z = _logits((4, num_classes), scale=2.0)
  y = np.array([0, 1, 2, 3])
  z[1, 1] = 30.0
  if extreme == "overflow":
    z[2, 4] = z[2, 2] + 100.0
  if extreme == "underflow":
    z[3] = -120.0
    z[3, 3] = 0.0
  z = z.astype(np.float32)
  f = lambda z: xentax.sparse_categorical_focal_loss_with_logits(z, y, reduction="none")  # noqa: E731
  want, want_grad = _focal_float64(z, y, 2.0)
  np.testing.assert_allclose(f(z), want, **tol(np.float32))
  grad = jax.grad(lambda z: jnp.sum(f(z)))(jnp.asarray(z))
  np.testing.assert_allclose(grad, want_grad, **tol(np.float32, "grad"))


def test_out_of_range_label_raises_eagerly_with_position():
  with pytest.raises(ValueError, match=r"found 7 at position \(1,\)"):
    xentax.sparse_categorical_cross_entropy_with_logits(_logits((3, 5)), np.array([0, 7, 1]))
  with pytest.raises(ValueError, match=r"found -2"):
    xentax.sparse_categorical_cross_entropy(np.full((3, 5), 0.2), np.array([0, -2, 1]))
  with pytest.raises(ValueError, match="ignore_index=-100"):
    xentax.sparse_categorical_cross_entropy_with_logits(
      _logits((3, 5)), np.array([0, 5, -100]), ignore_index=-100
    )


def test_out_of_range_label_is_nan_under_jit():
  z, y = jnp.asarray(_logits((3, 5))), jnp.array([0, 7, 1])
  fn = jax.jit(
    lambda z, y: xentax.sparse_categorical_cross_entropy_with_logits(z, y, reduction="none")
  )
  losses = fn(z, y)
  losses, grad_rows = np.asarray(losses), np.array([0, 2])
  assert np.isnan(losses[1]) and np.all(np.isfinite(losses[grad_rows]))
  grad = jax.jit(jax.grad(lambda z, y: fn(z, y).sum()))(z, y)
  grad = np.asarray(grad)
  assert np.all(np.isnan(grad[1])) and np.all(np.isfinite(grad[grad_rows]))


def test_ignore_index_label_outside_range_is_not_an_error():
  z = _logits((3, 5))
  labels = np.array([0, -100, 1])
  value = xentax.sparse_categorical_cross_entropy_with_logits(z, labels, ignore_index=-100)
  want = ref.sparse_categorical_cross_entropy_with_logits(z, labels, ignore_index=-100)
  np.testing.assert_allclose(value, want, rtol=1e-13)


def test_bad_inputs_raise_clear_errors():
  z = _logits((3, 5))
  with pytest.raises(TypeError, match="integer class indices"):
    xentax.sparse_categorical_cross_entropy_with_logits(z, np.array([0.0, 1.0, 2.0]))
  with pytest.raises(ValueError, match=r"\(4,\).*\(3, 5\)"):
    xentax.sparse_categorical_cross_entropy_with_logits(z, np.array([0, 1, 2, 3]))
  with pytest.raises(ValueError, match="choose one of"):
    xentax.sparse_categorical_cross_entropy_with_logits(z, np.array([0, 1, 2]), reduction="avg")
  with pytest.raises(ValueError, match=r"class_weights has shape \(4,\)"):
    xentax.sparse_categorical_cross_entropy_with_logits(
      z, np.array([0, 1, 2]), class_weights=np.ones(4)
    )
  with pytest.raises(ValueError, match="axis=2"):
    xentax.sparse_categorical_cross_entropy_with_logits(z, np.array([0, 1, 2]), axis=2)
  with pytest.raises(TypeError, match="floating-point"):
    xentax.sparse_categorical_cross_entropy_with_logits(
      np.zeros((3, 5), np.int32), np.array([0, 1, 2])
    )


def test_bad_probability_raises_eagerly_and_is_nan_under_jit():
  p = np.full((2, 3), 1 / 3)
  p[1, 2] = 1.5
  with pytest.raises(
    ValueError, match=r"probs must lie in \[0, 1\]; found 1.5 at position \(1, 2\)"
  ):
    xentax.sparse_categorical_cross_entropy(p, np.array([0, 1]))
  losses = jax.jit(
    lambda p: xentax.sparse_categorical_cross_entropy(p, np.array([0, 1]), reduction="none")
  )(p)
  assert np.isfinite(losses[0]) and np.isnan(losses[1])


def test_zero_probability_is_clamped_to_100():
  p = np.array([[1.0, 0.0]])
  assert xentax.sparse_categorical_cross_entropy(p, np.array([1])) == pytest.approx(100.0)
  grad = jax.grad(lambda p: xentax.sparse_categorical_cross_entropy(p, np.array([1])))(p)
  assert np.all(np.isfinite(grad))


def test_gradient_is_deck_softmax_minus_onehot():
  z, y = _logits((12, 5)), _labels(12, 5)
  grad = jax.grad(xentax.sparse_categorical_cross_entropy_with_logits)(z, y)
  softmax = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
  np.testing.assert_allclose(grad, (softmax - np.eye(5)[y]) / 12, **tol(np.float64, "grad"))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_low_precision_inputs_compute_in_float32(dtype):
  z, y = _logits((12, 5)), _labels(12, 5)
  got = xentax.sparse_categorical_cross_entropy_with_logits(jnp.asarray(z, dtype), y)
  assert got.dtype == jnp.float32
  want = ref.sparse_categorical_cross_entropy_with_logits(np.asarray(jnp.asarray(z, dtype)), y)
  np.testing.assert_allclose(got, want, **tol(np.float32))


def test_float64_class_weights_do_not_promote_float32_loss():
  z, y = _logits((12, 5)).astype(np.float32), _labels(12, 5)
  got = xentax.sparse_categorical_cross_entropy_with_logits(
    z, y, class_weights=np.ones(5), label_smoothing=0.1, z_loss=0.1
  )
  assert got.dtype == jnp.float32


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logit_gaps_beyond_exp_overflow_fall_back_to_the_max_shift(dtype):
  # The one-pass log-sum-exp shifts by the target logit; exp(1000) overflows, so the batch
  # must take the two-pass (max-shifted) route and still be exact.
  z = np.array([[0.0, 1000.0, 1.0], [2.0, 0.5, -1.0]], dtype)
  y = np.array([0, 0])
  got = jax.jit(
    lambda z: xentax.sparse_categorical_cross_entropy_with_logits(z, y, reduction="none")
  )(z)
  want = ref.sparse_categorical_cross_entropy_with_logits(z.astype(np.float64), y, reduction="none")
  np.testing.assert_allclose(got, want, rtol=1e-6)
  grad = jax.grad(lambda z: xentax.sparse_categorical_cross_entropy_with_logits(z, y))(z)
  assert np.all(np.isfinite(grad))


def test_bf16_logits_are_not_saved_as_a_float32_copy_for_the_backward_pass(capsys):
  # The residuals of reverse mode are the bf16 logits themselves and per-row vectors: an
  # upcast before the custom rule would save a float32 [N, C] copy (2x the logits' bytes).
  from jax.ad_checkpoint import print_saved_residuals

  x = jnp.zeros((8, 64), jnp.bfloat16)
  y = jnp.arange(8) % 64
  print_saved_residuals(lambda x: xentax.sparse_categorical_cross_entropy_with_logits(x, y), x)
  saved = capsys.readouterr().out
  assert "bf16[8,64]" in saved
  assert "f32[8,64]" not in saved
  grad = jax.grad(lambda x: xentax.sparse_categorical_cross_entropy_with_logits(x, y))(x)
  assert grad.dtype == jnp.bfloat16


# --- sample_weight, softcap, focal label smoothing (issue 12 items 2 and 3) -----------------

SPARSE_LOSSES = {
  "logits": xentax.sparse_categorical_cross_entropy_with_logits,
  "probs": xentax.sparse_categorical_cross_entropy,
  "focal": xentax.sparse_categorical_focal_loss_with_logits,
}
SPARSE_REFERENCES = {
  "logits": ref.sparse_categorical_cross_entropy_with_logits,
  "probs": ref.sparse_categorical_cross_entropy,
  "focal": ref.sparse_categorical_focal_loss_with_logits,
}


def _central_differences(f, x, step=1e-6):
  """float64 central differences of a scalar ``f`` at every entry of ``x``."""
  x = np.asarray(x, np.float64)
  out = np.zeros_like(x)
  for index in np.ndindex(*x.shape):
    e = np.zeros_like(x)
    e[index] = step
    out[index] = (float(f(x + e)) - float(f(x - e))) / (2 * step)
  return out


def _scores(kind, z):
  return np.exp(z) / np.exp(z).sum(-1, keepdims=True) if kind == "probs" else z


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", list(SPARSE_LOSSES))
@pytest.mark.parametrize("weighted", [False, True])
def test_sample_weight_matches_reference(kind, reduction, weighted):
  z, y = _logits((12, 5)), _labels(12, 5)
  s = np.random.default_rng(3).uniform(0.0, 2.0, 12)
  s[4] = 0.0
  options = {"ignore_index": 3, "where": np.arange(12) % 5 != 0}
  if weighted:
    options["class_weights"] = np.linspace(0.5, 2.0, 5)
  x = _scores(kind, z)
  got = SPARSE_LOSSES[kind](x, y, sample_weight=s, reduction=reduction, **options)
  want = SPARSE_REFERENCES[kind](x, y, sample_weight=s, reduction=reduction, **options)
  np.testing.assert_allclose(got, want, **tol(np.float64))


@pytest.mark.parametrize("kind", list(SPARSE_LOSSES))
def test_sample_weight_reductions_are_the_keras_and_torch_formulas(kind):
  z, y = _logits((12, 5)), _labels(12, 5)
  s = np.random.default_rng(4).uniform(0.0, 2.0, 12)
  w = np.linspace(0.5, 2.0, 5)
  x = _scores(kind, z)
  fn = SPARSE_LOSSES[kind]
  none = np.asarray(fn(x, y, class_weights=w, reduction="none"))
  weighted = fn(x, y, class_weights=w, sample_weight=s, reduction="none")
  np.testing.assert_allclose(weighted, s * none, rtol=1e-13)
  mean = fn(x, y, class_weights=w, sample_weight=s)
  np.testing.assert_allclose(mean, np.sum(s * none) / np.sum(s * w[y]), rtol=1e-12)
  per_batch = fn(x, y, class_weights=w, sample_weight=s, reduction="sum_over_batch_size")
  np.testing.assert_allclose(per_batch, np.mean(s * none), rtol=1e-12)
  ones = fn(x, y, class_weights=w, sample_weight=np.ones(12))
  np.testing.assert_allclose(ones, fn(x, y, class_weights=w), rtol=1e-13)


def test_zero_sample_weight_drops_an_infinite_loss():
  z = np.array([[0.0, -np.inf, 2.0], [1.0, 0.5, -1.0]])
  y = np.array([1, 0])
  f = xentax.sparse_categorical_cross_entropy_with_logits
  assert f(z, y) == np.inf
  s = np.array([0.0, 1.5])
  value, grad = jax.value_and_grad(lambda s: f(z, y, sample_weight=s, reduction="sum"))(s)
  want = ref.sparse_categorical_cross_entropy_with_logits(z[1:], y[1:], reduction="sum") * 1.5
  np.testing.assert_allclose(value, want, rtol=1e-12)
  assert np.all(np.isfinite(grad))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "sum_over_batch_size"])
@pytest.mark.parametrize("kind", list(SPARSE_LOSSES))
def test_gradient_in_sample_weight_matches_finite_differences(kind, reduction):
  z, y = _logits((6, 5)), _labels(6, 5)
  s = np.random.default_rng(5).uniform(0.5, 2.0, 6)
  x = _scores(kind, z)
  options = {"class_weights": np.linspace(0.5, 2.0, 5), "ignore_index": 2}
  if kind == "logits":
    options.update(label_smoothing=0.1, z_loss=0.01, softcap=4.0)
  if kind == "focal":
    options.update(label_smoothing=0.1, softcap=4.0, gamma=1.5)

  def f(s):
    out = SPARSE_LOSSES[kind](x, y, sample_weight=s, reduction=reduction, **options)
    return out.sum()

  want = _central_differences(f, s)
  np.testing.assert_allclose(jax.grad(f)(s), want, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("options", [{}, OPTIONS["all"]], ids=["plain", "all"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softcap_matches_reference(options, reduction, dtype):
  z, y = _logits((12, 5), scale=6.0), _labels(12, 5)
  got = xentax.sparse_categorical_cross_entropy_with_logits(
    z.astype(dtype), y, softcap=5.0, reduction=reduction, **options
  )
  want = ref.sparse_categorical_cross_entropy_with_logits(
    z.astype(dtype), y, softcap=5.0, reduction=reduction, **options
  )
  np.testing.assert_allclose(got, want, **tol(dtype))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_softcap_gradients_are_those_of_capped_logits(smoothing):
  z, y = _logits((12, 5), scale=6.0), _labels(12, 5)
  w = np.linspace(0.5, 2.0, 5)
  f = xentax.sparse_categorical_cross_entropy_with_logits
  options = {"class_weights": w, "label_smoothing": smoothing, "z_loss": 0.01}
  got = jax.grad(lambda z, c: f(z, y, softcap=c, **options), argnums=(0, 1))(z, 5.0)
  want = jax.grad(lambda z, c: f(c * jnp.tanh(z / c), y, **options), argnums=(0, 1))(z, 5.0)
  np.testing.assert_allclose(got[0], want[0], **tol(np.float64, "grad"))
  np.testing.assert_allclose(got[1], want[1], **tol(np.float64, "grad"))


def test_softcap_gradient_matches_finite_differences_and_forward_mode():
  z, y = _logits((6, 5), scale=6.0), _labels(6, 5)
  for fn in (
    xentax.sparse_categorical_cross_entropy_with_logits,
    xentax.sparse_categorical_focal_loss_with_logits,
  ):
    f = lambda c, fn=fn: fn(z, y, softcap=c, label_smoothing=0.1)  # noqa: E731
    want = _central_differences(f, 4.0)
    np.testing.assert_allclose(jax.grad(f)(4.0), want, rtol=1e-7)
    np.testing.assert_allclose(jax.jvp(f, (4.0,), (1.0,))[1], want, rtol=1e-7)


def test_softcap_minus_inf_logit_becomes_minus_cap_with_finite_gradients():
  z = np.array([[0.0, -np.inf, 2.0], [1.0, 0.5, -np.inf]])
  y = np.array([1, 0])
  for fn in (
    xentax.sparse_categorical_cross_entropy_with_logits,
    xentax.sparse_categorical_focal_loss_with_logits,
  ):
    value, grads = jax.value_and_grad(lambda z, c, fn=fn: fn(z, y, softcap=c), (0, 1))(z, 3.0)
    capped = np.where(np.isinf(z), -3.0, 3.0 * np.tanh(z / 3.0))
    np.testing.assert_allclose(value, fn(capped, y), rtol=1e-12)
    assert np.all(np.isfinite(grads[0])) and np.isfinite(grads[1])
    assert np.all(np.asarray(grads[0])[np.isinf(z)] == 0)


def test_softcap_jit_vmap_and_retrace():
  import chex

  z, y = _logits((12, 5), scale=6.0), _labels(12, 5)
  f = xentax.sparse_categorical_cross_entropy_with_logits

  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(z, c):
    return f(z, y, softcap=c, label_smoothing=0.1)

  np.testing.assert_allclose(loss(z, 5.0), f(z, y, softcap=5.0, label_smoothing=0.1), rtol=1e-13)
  loss(z, 6.0)  # a new cap value does not retrace
  per_example = jax.vmap(lambda z, y: f(z, y, softcap=5.0, reduction="sum"))(z, y)
  np.testing.assert_allclose(per_example, f(z, y, softcap=5.0, reduction="none"), rtol=1e-13)


def test_bf16_logits_with_softcap_are_not_saved_as_a_float32_copy(capsys):
  from jax.ad_checkpoint import print_saved_residuals

  x = jnp.zeros((8, 64), jnp.bfloat16)
  y = jnp.arange(8) % 64
  f = xentax.sparse_categorical_cross_entropy_with_logits
  print_saved_residuals(lambda x: f(x, y, softcap=30.0), x)
  saved = capsys.readouterr().out
  assert "f32[8,64]" not in saved
  assert jax.grad(lambda x: f(x, y, softcap=30.0))(x).dtype == jnp.bfloat16


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_label_smoothing_and_softcap_match_reference(gamma, reduction):
  z, y = _logits((12, 5)), _labels(12, 5)
  options = {
    "class_weights": np.linspace(0.5, 2.0, 5),
    "ignore_index": 1,
    "label_smoothing": 0.2,
    "softcap": 4.0,
  }
  got = xentax.sparse_categorical_focal_loss_with_logits(
    z, y, gamma=gamma, reduction=reduction, **options
  )
  want = ref.sparse_categorical_focal_loss_with_logits(
    z, y, gamma=gamma, reduction=reduction, **options
  )
  np.testing.assert_allclose(got, want, **tol(np.float64))


def test_focal_smoothing_with_gamma_zero_is_smoothed_cross_entropy():
  z, y = _logits((12, 5)), _labels(12, 5)
  options = {"class_weights": np.linspace(0.5, 2.0, 5), "label_smoothing": 0.3}
  focal = xentax.sparse_categorical_focal_loss_with_logits(z, y, gamma=0.0, **options)
  ce = xentax.sparse_categorical_cross_entropy_with_logits(z, y, **options)
  np.testing.assert_allclose(focal, ce, rtol=1e-13)


def test_focal_smoothing_gradient_matches_closed_form_when_a_class_is_certain():
  # p rounds to 1 for class 0 in float32; log(1 - p_c) must stay exact for every class.
  z = np.array([[30.0, 0.0, -3.0], [0.0, 1.0, 2.0]], np.float32)
  y = np.array([0, 1])
  f = lambda z: xentax.sparse_categorical_focal_loss_with_logits(z, y, label_smoothing=0.1)  # noqa: E731
  grad = jax.grad(f)(z)
  assert np.all(np.isfinite(grad))
  want = xentax.gradcheck.logits_grad(
    "sparse_categorical_focal_loss_with_logits", z.astype(np.float64), y, label_smoothing=0.1
  )
  np.testing.assert_allclose(grad, want, **tol(np.float32, "grad"))
  np.testing.assert_allclose(
    f(z.astype(np.float64)),
    ref.sparse_categorical_focal_loss_with_logits(z, y, label_smoothing=0.1),
    rtol=1e-12,
  )


def test_new_options_reject_bad_values_and_are_nan_when_traced():
  z, y = _logits((3, 5)), np.array([0, 1, 2])
  f = xentax.sparse_categorical_cross_entropy_with_logits
  focal = xentax.sparse_categorical_focal_loss_with_logits
  for fn in (f, focal):
    with pytest.raises(ValueError, match="softcap"):
      fn(z, y, softcap=0.0)
    with pytest.raises(ValueError, match="sample_weight"):
      fn(z, y, sample_weight=np.array([1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match=r"sample_weight has shape \(2,\)"):
      fn(z, y, sample_weight=np.ones(2))
    assert np.isnan(jax.jit(lambda c, fn=fn: fn(z, y, softcap=c))(-1.0))
    losses = jax.jit(lambda s, fn=fn: fn(z, y, sample_weight=s, reduction="none"))(
      np.array([1.0, -1.0, 1.0])
    )
    losses = np.asarray(losses)
    assert np.isnan(losses[1]) and np.all(np.isfinite(losses[[0, 2]]))
  with pytest.raises(ValueError, match="label_smoothing"):
    focal(z, y, label_smoothing=1.5)
  with pytest.raises(ValueError, match="sample_weight"):
    xentax.sparse_categorical_cross_entropy(
      np.full((3, 5), 0.2), y, sample_weight=np.array([np.inf, 1.0, 1.0])
    )


def test_softcap_ignored_rows_with_inf_and_nan_are_harmless():
  z = _logits((3, 4))
  z[1] = -np.inf
  z[2, 0] = np.nan
  y = np.array([0, -1, -1])
  f = xentax.sparse_categorical_cross_entropy_with_logits
  value, grads = jax.value_and_grad(
    lambda z, c: f(z, y, ignore_index=-1, softcap=c, label_smoothing=0.1), (0, 1)
  )(z, 3.0)
  want = ref.sparse_categorical_cross_entropy_with_logits(
    z[:1], y[:1], softcap=3.0, label_smoothing=0.1
  )
  np.testing.assert_allclose(value, want, rtol=1e-12)
  assert np.all(np.isfinite(grads[0])) and np.isfinite(grads[1])
  assert np.all(np.asarray(grads[0])[1:] == 0)


@settings(max_examples=12, deadline=None)
@given(
  weights=hnp.arrays(np.float64, 6, elements=st.floats(0.0, 4.0)),
  reduction=st.sampled_from(REDUCTIONS),
  kind=st.sampled_from(list(SPARSE_LOSSES)),
  cap=st.one_of(st.none(), st.floats(0.5, 20.0)),
)
def test_sample_weight_property_matches_reference(weights, reduction, kind, cap):
  z, y = _logits((6, 4), seed=11), _labels(6, 4, seed=12)
  options = {"ignore_index": 2, "class_weights": np.linspace(0.5, 2.0, 4)}
  if kind != "probs" and cap is not None:
    options["softcap"] = cap
  if kind == "focal":
    options["label_smoothing"] = 0.1
  x = _scores(kind, z)
  got = SPARSE_LOSSES[kind](x, y, sample_weight=weights, reduction=reduction, **options)
  want = SPARSE_REFERENCES[kind](x, y, sample_weight=weights, reduction=reduction, **options)
  np.testing.assert_allclose(got, want, **tol(np.float64))


def test_focal_softcap_gradients_ignore_a_dropped_row_holding_nan():
  z = jnp.array([[1.0, 2.0, 0.5], [jnp.nan, 0.0, 0.0]])
  y = jnp.array([1, -100])

  def f(z, cap, rows=slice(None)):
    return xentax.sparse_categorical_focal_loss_with_logits(
      z[rows], y[rows], ignore_index=-100, softcap=cap
    )

  grad_z, grad_cap = jax.grad(f, argnums=(0, 1))(z, 5.0)
  assert np.all(np.asarray(grad_z)[1] == 0)
  want_z, want_cap = jax.grad(f, argnums=(0, 1))(z, 5.0, rows=slice(0, 1))
  np.testing.assert_allclose(grad_z, want_z, **tol(np.float32, "grad"))
  np.testing.assert_allclose(grad_cap, want_cap, **tol(np.float32, "grad"))


@pytest.mark.parametrize("num_classes", [7, 65536])
def test_softcap_with_smoothing_in_one_fused_loop_matches_reference(num_classes):
  """Softcap + smoothing (+ class weights, z-loss, where, ignore_index): values against the
  float64 reference for short rows (the single fused loop) and rows reduced in pieces (the
  two-pass form); a dropped row holding NaN gives 0, a kept NaN row NaN, the rest as before."""
  rng = np.random.default_rng(num_classes)
  z = (4 * rng.normal(size=(6, num_classes))).astype(np.float32)
  y = rng.integers(0, num_classes, 6)
  y[4] = 3
  options = dict(
    softcap=5.0,
    label_smoothing=0.2,
    z_loss=0.01,
    class_weights=np.linspace(0.5, 2.0, num_classes).astype(np.float32),
    ignore_index=3,
  )
  where = np.array([True, True, True, False, True, True])
  f = jax.jit(
    lambda z: xentax.sparse_categorical_cross_entropy_with_logits(
      z, y, where=where, reduction="none", **options
    )
  )
  want = ref.sparse_categorical_cross_entropy_with_logits(
    z.astype(np.float64), y, where=where, reduction="none", **options
  )
  np.testing.assert_allclose(np.asarray(f(z)), want, rtol=2e-6, atol=1e-6)
  z[3, 1] = np.nan  # dropped by `where`
  z[4, 2] = np.nan  # dropped by ignore_index
  z[5, 0] = np.nan  # kept
  got = np.asarray(f(z))
  assert got[3] == 0 and got[4] == 0 and np.isnan(got[5])
  np.testing.assert_allclose(got[:3], want[:3], rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["plain", "where", "label_smoothing", "z_loss", "all"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gradient_is_the_same_with_kept_or_recomputed_exponentials(name, dtype, monkeypatch):
  # Small logits keep their exponentials for the backward pass; large ones recompute them
  # there. Both must give the closed-form gradient, with a logit gap beyond exp overflow
  # (row 1) and a dropped row holding NaN and +inf (row 0), which contributes nothing.
  from xentax.losses import _rows

  z, y = _logits((12, 5)), _labels(12, 5)
  z[1, (y[1] + 1) % 5] = 1000.0
  options = dict(OPTIONS[name])
  where = np.asarray(options.pop("where", np.ones(12, bool))).copy()
  where[0] = False
  z[0, :2] = [np.nan, np.inf]
  z = z.astype(dtype)

  def f(z):
    return xentax.sparse_categorical_cross_entropy_with_logits(z, y, where=where, **options)

  clean = z.copy()
  clean[0] = 0.0
  want = xentax.gradcheck.logits_grad(
    "sparse_categorical_cross_entropy_with_logits",
    clean.astype(np.float64),
    y,
    where=where,
    **options,
  )
  kept = jax.grad(f)(z)
  kept_exps = str(jax.make_jaxpr(jax.grad(f))(z)).count("exp")
  tangent = np.random.default_rng(2).normal(size=z.shape).astype(dtype)
  kept_jvp = jax.jvp(f, (z,), (tangent,))[1]
  monkeypatch.setattr(_rows, "SPARSE_KEEP_EXP_MAX_ENTRIES", 0)
  recomputed = jax.grad(f)(z)
  assert str(jax.make_jaxpr(jax.grad(f))(z)).count("exp") > kept_exps  # the other path
  recomputed_jvp = jax.jvp(f, (z,), (tangent,))[1]
  for grad in (kept, recomputed):
    np.testing.assert_allclose(grad, want, **tol(dtype))
    assert np.all(grad[0] == 0)
  np.testing.assert_allclose(kept_jvp, recomputed_jvp, **tol(dtype))
  np.testing.assert_allclose(kept_jvp, np.sum(want * tangent), **tol(dtype))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_focal_smoothing_gradient_is_the_same_with_shared_or_recomputed_terms(dtype, monkeypatch):
  # With label smoothing, small logits share the gradient's class terms between its row
  # sum and its output pass; large ones recompute them past an optimization barrier. Both
  # must give the closed-form gradient, with a -inf logit and a confident row (the value's
  # guarded forms) and a dropped row holding NaN and +inf, which contributes nothing.
  from xentax.losses import _rows

  z, y = _logits((12, 5)), _labels(12, 5)
  z[1, (y[1] + 1) % 5] = -np.inf
  z[2, y[2]] = 60.0
  where = np.ones(12, bool)
  where[0] = False
  z[0, :2] = [np.nan, np.inf]
  z = z.astype(dtype)
  options = dict(
    gamma=1.5,
    label_smoothing=0.2,
    softcap=20.0,
    class_weights=np.linspace(0.5, 2.0, 5).astype(dtype),
    sample_weight=np.linspace(0.1, 1.0, 12).astype(dtype),
  )

  def f(z):
    return xentax.sparse_categorical_focal_loss_with_logits(z, y, where=where, **options)

  clean = z.copy()
  clean[0] = 0.0
  want = xentax.gradcheck.logits_grad(
    "sparse_categorical_focal_loss_with_logits", clean.astype(np.float64), y, where=where, **options
  )
  shared = jax.grad(f)(z)
  assert "optimization_barrier" not in str(jax.make_jaxpr(jax.grad(f))(z))
  monkeypatch.setattr(_rows, "SPARSE_KEEP_EXP_MAX_ENTRIES", 0)
  recomputed = jax.grad(f)(z)
  assert "optimization_barrier" in str(jax.make_jaxpr(jax.grad(f))(z))  # the other path
  for grad in (shared, recomputed):
    np.testing.assert_allclose(grad, want, **tol(dtype))
    assert np.all(grad[0] == 0)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_confident_rows_have_exact_gradients_and_finite_hessians(gamma):
  # Row 0: p_y rounds to 1 in float32; row 1: a logit 100 above the target sends the batch
  # to the guarded form, where z_y - lse rounds to 0. The tiny gradient entries must match
  # the float64 closed form relatively, and second derivatives stay finite for gamma < 1.
  x = np.array([[0.0, 20.0, 0.0, 0.0], [0.0, 100.0, 0.0, 0.0]], np.float32)
  y = np.array([1, 0])

  def f(x):
    return xentax.sparse_categorical_focal_loss_with_logits(x, y, gamma=gamma)

  want = xentax.gradcheck.logits_grad(
    "sparse_categorical_focal_loss_with_logits", x.astype(np.float64), y, gamma=gamma
  )
  # atol: row 1's e^-100 entries are subnormal in float32, flushed to 0 by XLA:CPU.
  np.testing.assert_allclose(jax.grad(f)(x), want, rtol=1e-5, atol=1e-40)
  assert np.all(np.isfinite(jax.hessian(f)(x)))


_EDGE_PROBS = [0.0, -0.0, 1.0, 0.5, -1e-30, -1.2e-38, 1.0000001, 2.0, -1.0, np.inf, -np.inf, np.nan]
_PROBS_LOSS = jax.jit(
  lambda p, y: xentax.sparse_categorical_cross_entropy(p, y, reduction="none"),
)
_PROBS_GRAD = jax.jit(
  jax.vmap(jax.value_and_grad(lambda p, y: xentax.sparse_categorical_cross_entropy(p, y)))
)


@settings(max_examples=25, deadline=None)
@given(
  picks=st.lists(st.sampled_from(range(len(_EDGE_PROBS))), min_size=4, max_size=4),
  num_classes=st.sampled_from([5, 65536]),
)
def test_probs_range_check_flags_exactly_the_rows_with_a_value_outside_0_1(picks, num_classes):
  """Under jit, a row's loss (the forward's row sum) and its value and gradient (the
  derivative rule's mask) are NaN iff a non-target probability lies outside [0, 1]."""
  p = np.full((4, num_classes), 0.5 / num_classes, np.float32)
  p[:, 1] = 0.5
  values = np.array([_EDGE_PROBS[i] for i in picks], np.float32)
  p[:, num_classes - 2] = values
  y = np.ones(4, np.int32)
  outside = ~((values >= 0) & (values <= 1))
  np.testing.assert_array_equal(np.isnan(np.asarray(_PROBS_LOSS(p, y))), outside)
  losses, grads = _PROBS_GRAD(p[:, None], y[:, None])
  np.testing.assert_array_equal(np.isnan(np.asarray(losses)), outside)
  np.testing.assert_array_equal(np.isnan(np.asarray(grads)).any(axis=(1, 2)), outside)
