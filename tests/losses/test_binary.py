"""Binary losses against the float64 reference, options and edge cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xentax
from tests import _reference as ref
from tests._tolerances import tol

REDUCTIONS = ["none", "sum", "mean"]
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
  "all": {
    "pos_weight": np.array([0.5, 1.0, 2.0, 3.0]),
    "weights": rng.uniform(size=(6, 4)),
    "label_smoothing": 0.2,
    "where": rng.uniform(size=(6, 4)) > 0.3,
  },
}


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
@pytest.mark.parametrize("name", ["plain", "weights", "where"])
@pytest.mark.parametrize("labels", ["hard", "soft"])
def test_probs_matches_reference(name, reduction, labels):
  y = Y_HARD if labels == "hard" else Y_SOFT
  options = LOGIT_OPTIONS[name]
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


def test_probability_edges_are_clamped_like_torch():
  p = np.array([0.0, 1.0, 0.0, 1.0])
  y = np.array([0.0, 1.0, 1.0, 0.0])
  np.testing.assert_allclose(
    xentax.binary_cross_entropy(p, y, reduction="none"), [0.0, 0.0, 100.0, 100.0]
  )
  grad = jax.grad(lambda p: xentax.binary_cross_entropy(p, y))(p)
  assert np.all(np.isfinite(grad))


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
