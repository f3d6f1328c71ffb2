"""Labels, options and the loss / gradient-coefficient terms against float64 NumPy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests import _reference as ref
from tests._tolerances import tol
from xentax.losses._sparse_terms import SparseOptions, prepare_labels

C = 5
WEIGHTS = np.linspace(0.5, 2.0, C)
OPTIONS = {
  "plain": {},
  "class_weights": {"class_weights": WEIGHTS},
  "label_smoothing": {"label_smoothing": 0.1},
  "z_loss": {"z_loss": 1e-2},
  "smoothing_and_weights": {"class_weights": WEIGHTS, "label_smoothing": 0.2},
  "all": {"class_weights": WEIGHTS, "label_smoothing": 0.3, "z_loss": 1e-2},
}


def _data(n=7, seed=0):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, C)) * 3.0, rng.integers(0, C, size=n)


def _np_terms(z, labels, class_weights):
  """Float64 log-normaliser, target logit and weighted logit sum, per row."""
  m = z.max(-1, keepdims=True)
  lse = (m + np.log(np.exp(z - m).sum(-1, keepdims=True)))[:, 0]
  w = np.ones(z.shape[-1]) if class_weights is None else np.asarray(class_weights)
  return lse, z[np.arange(len(labels)), labels], z @ w


def _terms(labels, class_weights=None, label_smoothing=0.0, z_loss=0.0):
  options = SparseOptions.of(C, label_smoothing=label_smoothing, z_loss=z_loss)
  weights = None if class_weights is None else jnp.asarray(class_weights)
  return options.terms(jnp.asarray(labels), weights, label_smoothing, z_loss)


# ---------------------------------------------------------------- prepare_labels


def test_prepare_labels_masks_and_weights():
  labels = np.array([0, 4, 2, 7, 3, 1])
  where = np.array([True, True, False, True, True, True])
  out = jax.jit(
    lambda y: prepare_labels(
      "f",
      y,
      num_classes=C,
      class_weights=WEIGHTS,
      ignore_index=7,
      where=where,
      dtype=jnp.float64,
    )
  )(labels)
  valid = where & (labels != 7)
  np.testing.assert_array_equal(out.valid, valid)
  np.testing.assert_array_equal(out.bad, np.zeros(6, bool))
  np.testing.assert_array_equal(out.labels, np.where(valid, labels, 0))
  np.testing.assert_allclose(out.target_weight, WEIGHTS[np.where(valid, labels, 0)])
  np.testing.assert_allclose(out.class_weights, WEIGHTS)


def test_prepare_labels_traced_out_of_range_is_bad():
  labels = np.array([0, 5, -1, 2])
  out = jax.jit(
    lambda y: prepare_labels(
      "f", y, num_classes=C, class_weights=None, ignore_index=None, where=None, dtype=jnp.float32
    )
  )(labels)
  np.testing.assert_array_equal(out.bad, [False, True, True, False])
  np.testing.assert_array_equal(out.labels, [0, 0, 0, 2])  # safe to gather with
  assert out.target_weight is None


def test_prepare_labels_traced_bad_option_marks_every_kept_example():
  def run(flag):
    return prepare_labels(
      "f",
      jnp.array([0, 1, 2]),
      num_classes=C,
      class_weights=None,
      ignore_index=None,
      where=jnp.array([True, False, True]),
      dtype=jnp.float32,
      option_bad=flag,
    ).bad

  np.testing.assert_array_equal(jax.jit(run)(True), [True, False, True])
  np.testing.assert_array_equal(jax.jit(run)(False), [False, False, False])


def test_prepare_labels_concrete_errors_name_the_problem():
  kwargs = dict(num_classes=C, class_weights=None, where=None, dtype=jnp.float32)
  with pytest.raises(ValueError, match=r"f: labels must lie in \[0, 5\) or equal ignore_index"):
    prepare_labels("f", jnp.array([0, 9]), ignore_index=-100, **kwargs)
  with pytest.raises(TypeError, match="ignore_index=1.5 must be an integer"):
    prepare_labels("f", jnp.array([0]), ignore_index=1.5, **kwargs)
  with pytest.raises(ValueError, match="class_weights"):
    prepare_labels(
      "f",
      jnp.array([0]),
      num_classes=C,
      class_weights=-WEIGHTS,
      ignore_index=None,
      where=None,
      dtype=jnp.float32,
    )


# ---------------------------------------------------------------- SparseOptions


def test_options_flags_follow_static_zeros():
  assert SparseOptions.of(C, label_smoothing=0.0, z_loss=0) == SparseOptions(C, False, False)
  assert SparseOptions.of(C, label_smoothing=0.1, z_loss=0.0) == SparseOptions(C, True, False)
  # An array zero is not static: the term stays, so changing it does not recompile.
  assert SparseOptions.of(C, label_smoothing=0.0, z_loss=jnp.zeros(())).z_loss
  hash(SparseOptions.of(C, label_smoothing=0.1, z_loss=0.1))  # a custom_vjp nondiff argument


def test_terms_drop_values_whose_flag_is_off():
  terms = SparseOptions(C, smoothing=False, z_loss=False).terms(
    jnp.array([1, 2]), None, jnp.asarray(0.5), jnp.asarray(0.5)
  )
  assert terms.label_smoothing == 0.0 and terms.z_loss == 0.0
  assert not terms.smoothing and terms.target_weight is None
  weighted = SparseOptions(C, True, True).terms(jnp.array([1, 2]), jnp.asarray(WEIGHTS), 0.5, 0.5)
  np.testing.assert_allclose(weighted.target_weight, WEIGHTS[[1, 2]])
  np.testing.assert_allclose(weighted.weights(jnp.float64), WEIGHTS)
  np.testing.assert_allclose(terms.weights(jnp.float32), np.ones(C))
  np.testing.assert_allclose(weighted.class_weight_sum(jnp.float64), WEIGHTS.sum())
  assert float(terms.class_weight_sum(jnp.float32)) == C


# ---------------------------------------------------------------- loss


@pytest.mark.parametrize("name", list(OPTIONS))
def test_loss_matches_reference(name):
  options = OPTIONS[name]
  z, labels = _data()
  lse, target, weighted_sum = _np_terms(z, labels, options.get("class_weights"))
  got = _terms(labels, **options).loss(jnp.asarray(lse), jnp.asarray(target), weighted_sum)
  want = ref.sparse_categorical_cross_entropy_with_logits(z, labels, reduction="none", **options)
  np.testing.assert_allclose(got, want, **tol(np.float64))


def test_loss_float32_terms_stay_float32():
  z, labels = _data()
  lse, target, weighted_sum = (a.astype(np.float32) for a in _np_terms(z, labels, WEIGHTS))
  terms = SparseOptions(C, True, True).terms(
    jnp.asarray(labels), jnp.asarray(WEIGHTS, jnp.float32), jnp.float32(0.1), jnp.float32(0.01)
  )
  got = terms.loss(jnp.asarray(lse), jnp.asarray(target), jnp.asarray(weighted_sum))
  assert got.dtype == jnp.float32
  want = ref.sparse_categorical_cross_entropy_with_logits(
    z, labels, class_weights=WEIGHTS, label_smoothing=0.1, z_loss=0.01, reduction="none"
  )
  np.testing.assert_allclose(got, want, **tol(np.float32))


def test_loss_without_smoothing_needs_no_weighted_sum():
  z, labels = _data()
  lse, target, _ = _np_terms(z, labels, None)
  got = _terms(labels, z_loss=0.1).loss(jnp.asarray(lse), jnp.asarray(target))
  np.testing.assert_allclose(got, lse - target + 0.1 * lse**2, **tol(np.float64))


def test_traced_zero_smoothing_with_a_zero_weight_on_minus_inf_is_finite():
  # w_c = 0 meets z_c = -inf: the weighted sum is 0 * -inf, taken as 0, and eps = 0 must
  # not turn the smoothing term into 0 * inf either; d loss / d eps stays exact.
  weights = jnp.array([1.0, 0.0, 1.0])
  z = jnp.array([1.0, -jnp.inf, 0.5])
  lse = jax.nn.logsumexp(z)
  weighted_sum = jnp.sum(jnp.where(weights == 0, 0.0, weights * z))

  def loss(eps):
    terms = SparseOptions(3, True, False).terms(jnp.array(0), weights, eps, 0.0)
    return terms.loss(lse, z[0], weighted_sum)

  assert float(loss(0.0)) == pytest.approx(float(lse - z[0]), rel=1e-12)
  # d loss / d eps = -(lse - z_y) + (sum(w) lse - sum_c w_c z_c) / C
  want = -(lse - z[0]) + (2 * lse - weighted_sum) / 3
  np.testing.assert_allclose(jax.grad(loss)(0.0), want, rtol=1e-12)


# ---------------------------------------------------------------- grad_coefficients


def _full_logits_loss(z, labels, class_weights, eps, z_loss_weight, cotangent, lse_cotangent):
  """``sum_n g_n l_n + g_lse_n lse_n`` from full logits, for jax.grad."""
  options = SparseOptions.of(C, label_smoothing=eps, z_loss=z_loss_weight)
  terms = options.terms(labels, class_weights, eps, z_loss_weight)
  lse = jax.nn.logsumexp(z, axis=-1)
  target = jnp.take_along_axis(z, labels[:, None], axis=-1)[:, 0]
  weighted_sum = z @ terms.weights(z.dtype)
  total = jnp.sum(cotangent * terms.loss(lse, target, weighted_sum))
  if lse_cotangent is not None:
    total = total + jnp.sum(lse_cotangent * lse)
  return total


@pytest.mark.parametrize("with_lse_cotangent", [False, True])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_grad_coefficients_match_jax_grad(name, with_lse_cotangent):
  options = OPTIONS[name]
  z, labels = _data(seed=3)
  rng = np.random.default_rng(4)
  cotangent = rng.uniform(0.5, 2.0, size=len(labels))
  lse_cotangent = rng.normal(size=len(labels)) if with_lse_cotangent else None
  class_weights = options.get("class_weights")
  eps, z_loss_weight = options.get("label_smoothing", 0.0), options.get("z_loss", 0.0)
  weights = None if class_weights is None else jnp.asarray(class_weights)
  want = jax.grad(_full_logits_loss)(
    jnp.asarray(z),
    jnp.asarray(labels),
    weights,
    eps,
    z_loss_weight,
    jnp.asarray(cotangent),
    None if lse_cotangent is None else jnp.asarray(lse_cotangent),
  )

  terms = _terms(labels, class_weights, eps, z_loss_weight)
  lse, _, _ = _np_terms(z, labels, class_weights)
  a, b, c = terms.grad_coefficients(
    jnp.asarray(cotangent),
    jnp.asarray(lse),
    None if lse_cotangent is None else jnp.asarray(lse_cotangent),
  )
  # Independent float64 assembly: G = a p - b onehot(y) - c w.
  p = np.exp(z - lse[:, None])
  w = np.ones(C) if class_weights is None else class_weights
  onehot = np.eye(C)[labels]
  got = np.asarray(a)[:, None] * p - np.asarray(b)[:, None] * onehot - np.asarray(c)[:, None] * w
  np.testing.assert_allclose(got, want, **tol(np.float64, "grad"))
  if "label_smoothing" not in options:
    np.testing.assert_array_equal(c, np.zeros(len(labels)))


def test_grad_coefficients_closed_form():
  # a = g ((1 - e) w_y + (e / C) sum(w) + 2 lz lse) + g_lse, b = g (1 - e) w_y, c = g e / C.
  labels = np.array([0, 3])
  terms = _terms(labels, WEIGHTS, 0.25, 0.5)
  g, lse, g_lse = np.array([2.0, 0.5]), np.array([1.5, -0.5]), np.array([0.1, 0.2])
  a, b, c = terms.grad_coefficients(jnp.asarray(g), jnp.asarray(lse), jnp.asarray(g_lse))
  w_y = WEIGHTS[labels]
  np.testing.assert_allclose(a, g * (0.75 * w_y + 0.05 * WEIGHTS.sum() + lse) + g_lse)
  np.testing.assert_allclose(b, g * 0.75 * w_y)
  np.testing.assert_allclose(c, g * 0.05)
