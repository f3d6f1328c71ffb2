"""No silent wrong answer: every input gives the right number, NaN, or a clear error.

One test per class of failure (issue 9), each over every loss it applies to, and a
hypothesis search over the option space with adversarial values.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.experimental import checkify

import xentax
from tests import _reference as ref
from tests._tolerances import tol

REDUCTIONS = ["none", "sum", "mean", "sum_over_batch_size"]
N, C = 4, 3
rng = np.random.default_rng(0)
LOGITS = rng.normal(size=(N, C)) * 2
LABELS = np.array([0, 2, 1, 2])
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(-1, keepdims=True)
TARGETS = np.eye(C)[LABELS] * 0.8 + 0.2 / C
BINARY_LABELS = rng.uniform(size=(N, C))
HIDDEN = rng.normal(size=(N, 2))
WEIGHT = rng.normal(size=(2, C))


def _fused(h, y, **kw):
  return xentax.fused_linear_cross_entropy(h, jnp.asarray(WEIGHT), y, block_size=2, **kw)


TEACHER = rng.normal(size=(N, C))
LOG_PROBS = np.log(PROBS)


def _distill(s, y, **kw):
  return xentax.distillation_loss(s, jnp.asarray(TEACHER), y, **kw)


# name -> (loss, scores, labels, float options it takes, index of the bad entry's example)
LOSSES = {
  "sparse_logits": (
    xentax.sparse_categorical_cross_entropy_with_logits,
    LOGITS,
    LABELS,
    ("label_smoothing", "z_loss", "class_weights", "softcap", "sample_weight"),
  ),
  "sparse_probs": (
    xentax.sparse_categorical_cross_entropy,
    PROBS,
    LABELS,
    ("class_weights", "sample_weight"),
  ),
  "sparse_focal": (
    xentax.sparse_categorical_focal_loss_with_logits,
    LOGITS,
    LABELS,
    ("gamma", "class_weights", "label_smoothing", "softcap", "sample_weight"),
  ),
  "dense_logits": (
    xentax.categorical_cross_entropy_with_logits,
    LOGITS,
    TARGETS,
    ("label_smoothing", "class_weights", "z_loss", "softcap"),
  ),
  "dense_focal": (
    xentax.categorical_focal_loss_with_logits,
    LOGITS,
    TARGETS,
    ("gamma", "alpha", "label_smoothing"),
  ),
  "dense_probs": (
    xentax.categorical_cross_entropy,
    PROBS,
    TARGETS,
    ("label_smoothing", "class_weights"),
  ),
  "binary_logits": (
    xentax.binary_cross_entropy_with_logits,
    LOGITS,
    BINARY_LABELS,
    ("label_smoothing", "pos_weight", "weights"),
  ),
  "binary_probs": (
    xentax.binary_cross_entropy,
    PROBS,
    BINARY_LABELS,
    ("weights", "label_smoothing"),
  ),
  "binary_focal": (
    xentax.binary_focal_loss_with_logits,
    LOGITS,
    BINARY_LABELS,
    ("gamma", "alpha", "label_smoothing"),
  ),
  "fused": (
    _fused,
    HIDDEN,
    LABELS,
    ("label_smoothing", "z_loss", "class_weights", "softcap", "sample_weight"),
  ),
  # Issue 12's losses. The divergences take the teacher's logits where the others take labels.
  "kl": (xentax.kl_divergence_with_logits, LOGITS, TEACHER, ("temperature", "sample_weight")),
  "jsd": (
    xentax.jensen_shannon_divergence_with_logits,
    LOGITS,
    TEACHER,
    ("beta", "temperature", "sample_weight"),
  ),
  "distillation": (_distill, LOGITS, LABELS, ("temperature", "alpha", "sample_weight")),
  "poly1": (xentax.poly1_cross_entropy_with_logits, LOGITS, LABELS, ("epsilon", "sample_weight")),
  "nll": (xentax.nll_loss, LOG_PROBS, LABELS, ("class_weights", "sample_weight")),
}
# name -> the float64 reference of each loss in LOSSES, called as (scores, labels, **options)
REFERENCES = {
  "sparse_logits": ref.sparse_categorical_cross_entropy_with_logits,
  "sparse_probs": ref.sparse_categorical_cross_entropy,
  "sparse_focal": ref.sparse_categorical_focal_loss_with_logits,
  "dense_logits": ref.categorical_cross_entropy_with_logits,
  "dense_focal": ref.categorical_focal_loss_with_logits,
  "dense_probs": ref.categorical_cross_entropy,
  "binary_logits": ref.binary_cross_entropy_with_logits,
  "binary_probs": ref.binary_cross_entropy,
  "binary_focal": ref.binary_focal_loss_with_logits,
  "fused": lambda h, y, **kw: ref.sparse_categorical_cross_entropy_with_logits(h @ WEIGHT, y, **kw),
  "kl": ref.kl_divergence_with_logits,
  "jsd": ref.jensen_shannon_divergence_with_logits,
  "distillation": lambda s, y, **kw: ref.distillation_loss(s, TEACHER, y, **kw),
  "poly1": ref.poly1_cross_entropy_with_logits,
  "nll": ref.nll_loss,
}

GOOD = {
  "label_smoothing": 0.1,
  "z_loss": 0.01,
  "gamma": 1.5,
  "alpha": 0.3,
  "softcap": 2.0,
  "class_weights": np.array([0.5, 1.0, 2.0]),
  "pos_weight": np.array([0.5, 1.0, 2.0]),
  "weights": rng.uniform(0.5, 2.0, (N, C)),
  "temperature": 2.0,
  "beta": 0.3,
  "epsilon": 1.0,
  "sample_weight": np.array([0.5, 1.0, 2.0, 1.5]),  # one per example (N of them)
}
BAD = {
  "label_smoothing": [1.5, -0.1, np.nan],
  "z_loss": [-0.1, np.inf, np.nan],
  "gamma": [-1.0, np.inf, np.nan],
  "alpha": [2.0, -0.5, np.nan],
  "softcap": [0.0, -1.0, np.inf, np.nan],
  "class_weights": [np.array([1.0, -1.0, 1.0]), np.array([1.0, np.nan, 1.0])],
  "pos_weight": [np.array([1.0, -1.0, 1.0]), np.array([np.inf, 1.0, 1.0])],
  "weights": [-np.ones((N, C)), np.full((N, C), np.nan)],
  "temperature": [0.0, -1.0, np.inf, np.nan],
  "beta": [1.5, -0.1, np.nan],
  "epsilon": [-1.5, np.inf, np.nan],
  "sample_weight": [
    np.array([1.0, -1.0, 1.0, 1.0]),
    np.array([np.inf, 1.0, 1.0, 1.0]),
    np.array([1.0, 1.0, np.nan, 1.0]),
  ],
}
OPTION_CASES = [
  (loss, name, i)
  for loss, spec in LOSSES.items()
  for name in spec[3]
  for i in range(len(BAD[name]))
]


def _call(loss, **kw):
  fn, scores, labels, _ = LOSSES[loss]
  return fn(jnp.asarray(scores), labels, **kw)


# --- NaN inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", list(LOSSES))
def test_nan_in_a_kept_example_gives_nan_loss_and_gradient(loss, reduction, traced):
  fn, scores, labels, _ = LOSSES[loss]
  scores = np.array(scores)
  scores[0, 1] = np.nan

  first = (0, 1) if loss.startswith("binary") else 0  # binary losses are elementwise

  def total(s):
    out = fn(s, labels, reduction=reduction)
    return out[first] if reduction == "none" else out

  if traced:
    total = jax.jit(total)

  value = total(jnp.asarray(scores))
  grad = jax.grad(total)(jnp.asarray(scores))
  assert np.isnan(value), value
  assert np.isnan(grad[0]).any(), grad[0]
  if reduction == "none":  # the other examples are untouched
    others = fn(jnp.asarray(scores), labels, reduction="none")[1:]
    assert np.isfinite(others).all()
    grad = jax.grad(lambda s: fn(s, labels, reduction="none")[1:].sum())(jnp.asarray(scores))
    assert np.isfinite(grad[1:]).all()


def test_sparse_nan_logit_was_minus_inf():
  # The example of issue 9: the batch fallback log-sum-exp read a NaN sum as "all -inf".
  z = jnp.array([[2, 0.5, -1], [0.1, 0.2, 3]]).at[0, 1].set(jnp.nan)
  f = xentax.sparse_categorical_cross_entropy_with_logits
  got = f(z, jnp.array([0, 2]), reduction="none")
  assert np.isnan(got[0]) and np.isfinite(got[1])
  grad = jax.grad(lambda z: f(z, jnp.array([0, 2]), reduction="sum"))(z)
  assert np.isnan(grad[0]).all() and np.isfinite(grad[1]).all()


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", [k for k in LOSSES if not k.startswith("binary")])
def test_nan_in_a_dropped_example_does_not_leak(loss, reduction, traced):
  fn, scores, labels, _ = LOSSES[loss]
  scores = np.array(scores)
  scores[0] = np.nan
  where = np.arange(N) != 0

  def f(s):
    return fn(s, labels, where=where, reduction=reduction)

  if traced:
    f = jax.jit(f)

  value = f(jnp.asarray(scores))
  clean = np.array(scores)
  clean[0] = LOSSES[loss][1][0]
  np.testing.assert_allclose(value, f(jnp.asarray(clean)), **tol(np.float64))
  grad = jax.grad(lambda s: jnp.sum(f(s)))(jnp.asarray(scores))
  assert np.isfinite(grad).all()
  assert (grad[0] == 0).all()


IGNORING = [k for k in LOSSES if k in ("sparse_logits", "sparse_probs", "sparse_focal", "fused")]
IGNORING += ["distillation", "poly1", "nll"]


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", IGNORING)
def test_ignored_example_holding_nan_matches_the_reference(loss, reduction, traced):
  """ignore_index drops the example under every reduction, whichever path it takes."""
  fn, scores, labels, _ = LOSSES[loss]
  scores, labels = np.array(scores), np.array(labels)
  scores[1] = np.nan
  labels[1] = -100

  def f(s):
    return fn(s, labels, ignore_index=-100, reduction=reduction)

  if traced:
    f = jax.jit(f)
  clean = np.array(scores)
  clean[1] = LOSSES[loss][1][1]
  want = REFERENCES[loss](clean, labels, ignore_index=-100, reduction=reduction)
  np.testing.assert_allclose(f(jnp.asarray(scores)), want, rtol=1e-12)
  grad = jax.grad(lambda s: jnp.sum(f(s)))(jnp.asarray(scores))
  assert np.isfinite(grad).all() and (grad[1] == 0).all()


# The losses of logits: a -inf logit is a class of probability 0.
LOGIT_LOSSES = ["sparse_logits", "sparse_focal", "dense_logits", "dense_focal", "binary_logits"]
LOGIT_LOSSES += ["binary_focal", "kl", "jsd", "distillation", "poly1", "nll"]


@pytest.mark.parametrize("traced", [False, True])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", LOGIT_LOSSES)
def test_minus_inf_score_matches_the_reference_and_its_finite_limit(loss, reduction, traced):
  """-inf in a kept example: the reference's value (inf where a target needs that class), and
  where it is finite, the gradient of the limit (-inf replaced by -1e4, whose probability is 0
  in float64)."""
  fn, scores, labels, _ = LOSSES[loss]
  scores = np.array(scores)
  scores[0, 1] = -np.inf  # label 0: not the target class of the sparse losses

  def f(s):
    return fn(s, labels, reduction=reduction)

  if traced:
    f = jax.jit(f)
  want = np.asarray(REFERENCES[loss](scores, labels, reduction=reduction))
  value = f(jnp.asarray(scores))
  np.testing.assert_allclose(value, want, rtol=1e-12)
  if np.all(np.isfinite(want)):
    surrogate = np.maximum(scores, -1e4)
    grad = jax.grad(lambda s: jnp.sum(f(s)))(jnp.asarray(scores))
    want_grad = jax.grad(lambda s: jnp.sum(f(s)))(jnp.asarray(surrogate))
    np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", list(LOSSES))
def test_traced_option_outside_its_domain_is_nan_under_every_reduction(loss, reduction):
  fn, scores, labels, names = LOSSES[loss]
  name = names[0]

  def f(s, option):
    return jnp.sum(fn(s, labels, reduction=reduction, **{name: option}))

  value, grad = jax.jit(jax.value_and_grad(f))(jnp.asarray(scores), jnp.asarray(BAD[name][0]))
  assert np.isnan(value) and np.isnan(grad).any()
  with pytest.raises(ValueError, match=name):
    fn(jnp.asarray(scores), labels, reduction=reduction, **{name: BAD[name][0]})


@pytest.mark.parametrize("value", [np.nan, -np.inf, np.inf])
@pytest.mark.parametrize("loss", [k for k in LOSSES if not k.startswith("binary")])
def test_option_gradients_ignore_a_dropped_example_holding_nan_or_inf(loss, value):
  """Reverse mode, every float option on and traced: a dropped example's NaN or infinite
  scores change no gradient (a zero cotangent times a NaN statistic once made the options'
  gradients NaN). With a softcap, also without it (the cap makes an infinite logit finite)."""
  fn, scores, labels, every = LOSSES[loss]
  where = np.arange(N) != 0
  dirty = np.array(scores)
  dirty[0] = value
  option_sets = [every] + (
    [tuple(k for k in every if k != "softcap")] if "softcap" in every else []
  )
  for names in option_sets:
    options = [jnp.asarray(GOOD[k], jnp.float64) for k in names]

    def f(s, *values, names=names):
      kw = dict(zip(names, values, strict=True))
      return fn(s, labels, where=where, reduction="sum", **kw)

    grads = jax.grad(f, argnums=tuple(range(len(names) + 1)))
    got, want = grads(jnp.asarray(dirty), *options), grads(jnp.asarray(scores), *options)
    for name, g, w in zip(("scores", *names), got, want, strict=True):
      np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15, err_msg=f"{name} of {names}")


def _focal_terms(log_p, gamma):
  """``-(1 - p)^gamma log p`` per class, float64 NumPy; 0 where ``p = 0`` meets ``-inf``."""
  with np.errstate(invalid="ignore"):
    return np.where(np.isinf(log_p), 0.0, -((1 - np.exp(log_p)) ** gamma) * log_p)


_SMOOTHED = {
  "sparse": lambda z, y, t, **kw: xentax.sparse_categorical_cross_entropy_with_logits(z, y, **kw),
  "sparse_focal": lambda z, y, t, **kw: xentax.sparse_categorical_focal_loss_with_logits(
    z, y, gamma=2.0, **kw
  ),
  "categorical": lambda z, y, t, **kw: xentax.categorical_cross_entropy_with_logits(z, t, **kw),
  "categorical_focal": lambda z, y, t, **kw: xentax.categorical_focal_loss_with_logits(
    z, t, gamma=2.0, **kw
  ),
}


@functools.cache
def _smoothing_grads(loss):
  """Jitted ``(value, (d / d eps, d / d class_weights))`` of the summed loss."""
  fn = _SMOOTHED[loss]

  def value(z, y, eps, w):
    kw = {} if loss.endswith("categorical_focal") else {"class_weights": w}
    return fn(
      z,
      y,
      jax.nn.one_hot(y, z.shape[-1], dtype=z.dtype),
      label_smoothing=eps,
      reduction="sum",
      **kw,
    )

  return jax.jit(jax.value_and_grad(value, argnums=(2, 3)))


@pytest.mark.parametrize("loss", list(_SMOOTHED))
@settings(max_examples=15, deadline=None)
@given(
  seed=st.integers(0, 2**16),
  holes=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_smoothing_derivative_at_a_traced_zero_leaves_out_infinite_terms(loss, seed, holes):
  """At a traced ``label_smoothing = 0`` a ``-inf`` logit in a kept row has a term ``0 * inf``,
  taken as 0. Its one-sided derivative in ``eps`` is +inf; every loss returns, as documented,
  the derivative of the finite terms (the sparse losses once left out the row's whole
  smoothing sum, and a class weight's gradient was NaN)."""
  r = np.random.default_rng(seed)
  z = r.normal(size=(3, 4)) * 3
  y = r.integers(0, 4, size=3)
  onehot = np.eye(4)[y]
  z[np.asarray(holes).reshape(3, 4) & (onehot == 0)] = -np.inf  # never on a target
  lse = np.log(np.exp(z).sum(-1, keepdims=True))
  log_p = z - lse  # -inf where z is
  if loss.endswith("focal"):
    terms = _focal_terms(log_p, 2.0)
  else:
    terms = np.where(np.isinf(z), 0.0, -log_p)
  scale = 0.25 if loss == "categorical_focal" else 1.0  # Keras's default alpha
  value, (d_eps, d_w) = _smoothing_grads(loss)(z, y, 0.0, np.ones(4))
  np.testing.assert_allclose(value, scale * np.sum(onehot * terms), **tol(np.float64))
  # d/d eps of sum_c q_c F_c with q = (1 - e) t + e / C, the -inf classes' F_c held at 0.
  want = scale * np.sum((1 / 4 - onehot) * terms)
  np.testing.assert_allclose(d_eps, want, **tol(np.float64, "grad"))
  if np.isinf(z).any():
    # At eps > 0 nothing is held: the loss is +inf, and so is (or NaN) its derivative.
    value, (d_eps, _) = _smoothing_grads(loss)(z, y, 0.1, np.ones(4))
    assert value == np.inf and not np.isfinite(d_eps)
  if not loss.endswith("categorical_focal"):
    # Class weights at eps = 0, reduction "sum": d / d w_c sums the rows whose label is c.
    want = np.array([np.sum(terms[y == c, c]) for c in range(4)])
    np.testing.assert_allclose(d_w, want, **tol(np.float64, "grad"))


def test_nan_label_in_an_ignored_example_does_not_leak():
  z = jnp.asarray(LOGITS).at[1].set(-jnp.inf)
  y = LABELS.copy()
  y[1] = -100
  f = functools.partial(xentax.sparse_categorical_cross_entropy_with_logits, ignore_index=-100)
  value, grad = jax.value_and_grad(lambda z: f(z, y))(z)
  want = ref.sparse_categorical_cross_entropy_with_logits(LOGITS, y, ignore_index=-100)
  np.testing.assert_allclose(value, want, **tol(np.float64))
  assert np.isfinite(grad).all() and (grad[1] == 0).all()


# --- labels checked before the cast -------------------------------------------------------


@pytest.mark.parametrize("value", [2**32 + 1, 2**31 + 5, -(2**31) - 1])
def test_int64_labels_are_checked_before_the_int32_cast(value):
  labels = np.array([0, value], np.int64)
  with jax.enable_x64(False):
    z = jnp.zeros((2, 3), jnp.float32)
    for fn in (
      xentax.sparse_categorical_cross_entropy_with_logits,
      xentax.sparse_categorical_cross_entropy,
      xentax.sparse_categorical_focal_loss_with_logits,
    ):
      with pytest.raises(ValueError, match=f"labels must lie in .*found {value} at position"):
        fn(z, labels)
    with pytest.raises(ValueError, match=f"found {value}"):
      xentax.fused_linear_cross_entropy(jnp.ones((2, 2)), jnp.ones((2, 3)), labels)
    # Dropped, the same label is harmless.
    got = xentax.sparse_categorical_cross_entropy_with_logits(z, labels, where=np.array([1, 0]) > 0)
    np.testing.assert_allclose(got, np.log(3), rtol=1e-6)


@pytest.mark.parametrize("value", [2**32 + 1, -(2**31) - 1])
def test_int64_labels_of_the_new_losses_and_metrics_are_checked_before_the_cast(value):
  labels = np.array([0, value], np.int64)
  with jax.enable_x64(False):
    z = jnp.zeros((2, 3), jnp.float32)
    h, w = jnp.ones((2, 2)), jnp.ones((2, 3))
    calls = [
      lambda: xentax.distillation_loss(z, z, labels),
      lambda: xentax.poly1_cross_entropy_with_logits(z, labels),
      lambda: xentax.nll_loss(z, labels),
      lambda: xentax.causal_lm_cross_entropy_with_logits(z[None], labels[None]),
      lambda: xentax.fused_linear_distillation(h, w, h, w, labels),
      lambda: xentax.metrics.top_k_accuracy(z, labels),
      lambda: xentax.metrics.expected_calibration_error(z, labels),
    ]
    for call in calls:
      with pytest.raises(ValueError, match=f"labels must lie in .*found {value} at position"):
        call()
    # Dropped, the same label is harmless.
    kept = np.array([True, False])
    assert np.isfinite(xentax.distillation_loss(z, z, labels, where=kept))
    assert np.isfinite(xentax.poly1_cross_entropy_with_logits(z, labels, where=kept))


@pytest.mark.parametrize("fn", ["top_k_accuracy", "expected_calibration_error"])
def test_metric_counts_must_be_positive_integers(fn):
  name = "k" if fn == "top_k_accuracy" else "num_bins"
  f = functools.partial(getattr(xentax.metrics, fn), jnp.asarray(LOGITS), LABELS)
  for bad in (1.5, True, "3", None):
    with pytest.raises(TypeError, match=f"{name}="):
      f(**{name: bad})
  for bad in (0, -2, np.int64(0)):
    with pytest.raises(ValueError, match=f"{name}=.*positive"):
      f(**{name: bad})
  np.testing.assert_allclose(f(**{name: np.int32(2)}), f(**{name: 2}))


def test_fused_distillation_refuses_gradients_in_temperature_and_alpha():
  h, w, y = jnp.asarray(HIDDEN), jnp.asarray(WEIGHT), LABELS
  f = xentax.fused_linear_distillation
  for name in ("temperature", "alpha"):
    with pytest.raises(TypeError, match=f"differentiating with respect to {name}"):
      jax.grad(lambda v, name=name: f(h, w, h, w, y, **{name: v}))(0.5)
  # Traced but not differentiated is fine, and equals the dense loss.
  got = jax.jit(lambda t: f(h, w, h, w, y, temperature=t))(2.0)
  want = xentax.distillation_loss(h @ w, h @ w, y, temperature=2.0)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Outside its domain: concrete raises; traced is NaN (loss and gradient).
  with pytest.raises(ValueError, match="temperature"):
    f(h, w, h, w, y, temperature=0.0)
  loss, grad = jax.jit(jax.value_and_grad(lambda h, a: f(h, w, h, w, y, alpha=a)))(h, 1.5)
  assert np.isnan(loss) and np.isnan(grad).any()


# --- options outside their domain ---------------------------------------------------------


@pytest.mark.parametrize(("loss", "name", "i"), OPTION_CASES)
def test_option_outside_its_domain_raises_naming_it(loss, name, i):
  with pytest.raises(ValueError, match=name):
    _call(loss, **{name: BAD[name][i]})


@pytest.mark.parametrize(
  ("loss", "name"), [(loss, name) for loss, spec in LOSSES.items() for name in spec[3]]
)
def test_traced_option_outside_its_domain_gives_nan_loss_and_gradient(loss, name):
  fn, scores, labels, _ = LOSSES[loss]

  def f(s, option):
    return fn(s, labels, **{name: option})

  # One compiled program per loss and option, run at each bad value (they share a shape).
  value_and_grad, checked = jax.jit(jax.value_and_grad(f)), xentax.checked(jax.jit(f))
  for bad in BAD[name]:
    value, grad = value_and_grad(jnp.asarray(scores), jnp.asarray(bad))
    assert np.isnan(value), bad
    assert np.isnan(grad).any(), bad
    with pytest.raises(checkify.JaxRuntimeError, match=f"{name} must be"):
      checked(jnp.asarray(scores), jnp.asarray(bad))


@pytest.mark.parametrize("loss", list(LOSSES))
def test_options_at_their_domain_edges_are_accepted(loss):
  edges = {
    "label_smoothing": 1.0,
    "z_loss": 0.0,
    "gamma": 0.0,
    "alpha": 1.0,
    "beta": 1.0,
    "epsilon": -1.0,
    "sample_weight": np.array([0.0, 1.0, 0.0, 2.0]),
  }
  options = {name: edges.get(name, GOOD[name]) for name in LOSSES[loss][3]}
  _, scores, labels, _ = LOSSES[loss]
  want = REFERENCES[loss](np.asarray(scores), labels, **options)
  np.testing.assert_allclose(_call(loss, **options), want, rtol=1e-12)


@pytest.mark.parametrize(
  ("kwargs", "error", "match"),
  [
    ({"label_smoothing": "0.1"}, TypeError, "label_smoothing"),
    ({"z_loss": True}, TypeError, "z_loss"),
    ({"class_weights": np.ones(4)}, ValueError, r"class_weights has shape \(4,\)"),
    ({"class_weights": ["a", "b", "c"]}, TypeError, "class_weights"),
    ({"ignore_index": 1.5}, TypeError, "ignore_index"),
  ],
)
def test_option_of_the_wrong_type_or_shape_is_a_clear_error(kwargs, error, match):
  with pytest.raises(error, match=match):
    xentax.sparse_categorical_cross_entropy_with_logits(LOGITS, LABELS, **kwargs)


# --- gradients with respect to every float option -----------------------------------------


def _central_difference(f, x, h=1e-6):
  x = np.asarray(x, np.float64)
  out = np.zeros_like(x)
  for i in np.ndindex(x.shape):
    e = np.zeros_like(x)
    e[i] = h
    out[i] = (f(x + e) - f(x - e)) / (2 * h)
  return out


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize(
  ("loss", "name"), [(loss, name) for loss, spec in LOSSES.items() for name in spec[3]]
)
def test_gradient_with_respect_to_each_option_matches_finite_differences(loss, name, reduction):
  fn, scores, labels, names = LOSSES[loss]
  others = {k: GOOD[k] for k in names if k != name}

  def f(option):
    return fn(jnp.asarray(scores), labels, reduction=reduction, **{name: option}, **others)

  got = jax.grad(f)(jnp.asarray(GOOD[name], jnp.float64))
  compiled = jax.jit(f)  # one program for the 2 * size evaluations
  want = _central_difference(lambda v: float(compiled(jnp.asarray(v))), GOOD[name])
  np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", ["label_smoothing", "z_loss"])
def test_gradient_with_respect_to_a_scalar_option_alone_and_at_zero(name):
  # Issue 9: this crashed (zeros_like of a missing class_weights) inside the custom_jvp.
  f = xentax.sparse_categorical_cross_entropy_with_logits

  def g(e):
    return f(jnp.asarray(LOGITS), LABELS, **{name: e})

  h = 1e-6
  for at in (0.0, 0.1):  # one-sided at 0, the edge of the domain
    want = (float(g(at + h)) - float(g(at))) / h if at == 0 else _central_difference(g, at)
    np.testing.assert_allclose(jax.grad(g)(at), want, rtol=1e-5)


def test_focal_gradient_with_respect_to_gamma_at_zero():
  f = xentax.sparse_categorical_focal_loss_with_logits

  def g(gamma):
    return f(jnp.asarray(LOGITS), LABELS, gamma=gamma)

  want = (float(g(1e-6)) - float(g(0.0))) / 1e-6
  np.testing.assert_allclose(jax.grad(g)(0.0), want, rtol=1e-4)


# --- shapes, dtypes and sizes -------------------------------------------------------------


def test_python_lists_are_accepted_as_arrays():
  f = xentax.sparse_categorical_cross_entropy_with_logits
  got = f([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]], [0, 2], class_weights=[1.0, 1.0, 1.0])
  want = f(jnp.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]), jnp.array([0, 2]))
  np.testing.assert_allclose(got, want)
  got = xentax.binary_cross_entropy_with_logits([0.5, -1.0], [1.0, 0.0], weights=[1.0, 2.0])
  assert np.isfinite(got)
  with pytest.raises(TypeError, match="logits/probs is a list that is not a rectangular"):
    f([[1.0, 2.0], [1.0]], [0, 1])
  with pytest.raises(TypeError, match="labels must be integer"):
    f([[1.0, 2.0]], [0.5])


@pytest.mark.parametrize(
  "call",
  [
    lambda: xentax.sparse_categorical_cross_entropy_with_logits(jnp.zeros((2, 0)), [0, 0]),
    lambda: xentax.sparse_categorical_focal_loss_with_logits(jnp.zeros((2, 0)), [0, 0]),
    lambda: xentax.categorical_cross_entropy_with_logits(jnp.zeros((2, 0)), jnp.zeros((2, 0))),
    lambda: xentax.fused_linear_cross_entropy(jnp.ones((2, 3)), jnp.ones((3, 0)), [0, 0]),
  ],
)
def test_zero_size_class_axis_is_a_clear_error(call):
  with pytest.raises(ValueError, match="size 0; a cross-entropy needs at least one class"):
    call()


def test_empty_batch_gives_zero_mean_and_empty_none():
  f = xentax.sparse_categorical_cross_entropy_with_logits
  assert f(jnp.zeros((0, 3)), jnp.zeros((0,), jnp.int32)) == 0
  assert f(jnp.zeros((0, 3)), jnp.zeros((0,), jnp.int32), reduction="none").shape == (0,)


def test_block_size_accepts_numpy_integers_and_rejects_others():
  h, w, y = jnp.ones((2, 3)), jnp.ones((3, 4)), jnp.array([0, 3])
  want = xentax.fused_linear_cross_entropy(h, w, y, block_size=2)
  got = xentax.fused_linear_cross_entropy(h, w, y, block_size=np.int64(2))
  np.testing.assert_allclose(got, want)
  for bad, error in [(0, ValueError), (5, ValueError), (2.0, TypeError), (True, TypeError)]:
    with pytest.raises(error, match="block_size"):
      xentax.fused_linear_cross_entropy(h, w, y, block_size=bad)


# --- property search over the option space ------------------------------------------------

ADVERSARIAL = [np.nan, np.inf, -np.inf, 1e30, -1e30, 1e-30, 0.0, -0.0, 0.5, 1.0, 2.0, -1.0]
SCORE_VALUES = [np.nan, np.inf, -np.inf, 1e30, -1e30, 1e-30, 0.0]
DOMAIN = {
  "label_smoothing": lambda v: 0 <= v <= 1,
  "alpha": lambda v: 0 <= v <= 1,
  "z_loss": lambda v: 0 <= v < np.inf,
  "gamma": lambda v: 0 <= v < np.inf,
}
# the losses that take the options the next test varies
OPTION_LOSSES = (
  "sparse_logits",
  "sparse_focal",
  "dense_logits",
  "dense_focal",
  "binary_logits",
  "binary_focal",
)


@settings(max_examples=25, deadline=None)
@given(
  loss=st.sampled_from(OPTION_LOSSES),
  option=st.sampled_from(["label_smoothing", "z_loss", "gamma", "alpha"]),
  value=st.sampled_from(ADVERSARIAL),
  reduction=st.sampled_from(REDUCTIONS),
  score=st.sampled_from(SCORE_VALUES + [None]),
  traced=st.booleans(),
)
def test_every_option_value_gives_the_reference_nan_or_a_named_error(
  loss, option, value, reduction, score, traced
):
  fn, scores, labels, names = LOSSES[loss]
  if option not in names:
    option = names[0] if names[0] in DOMAIN else None
  kwargs = {} if option is None else {option: value}
  scores = np.array(scores)
  if score is not None:
    scores[0, 0] = score
  in_domain = option is None or DOMAIN[option](value)
  if not in_domain and not traced:
    with pytest.raises(ValueError, match=option):
      fn(jnp.asarray(scores), labels, reduction=reduction, **kwargs)
    return
  if traced:
    got = (
      jax.jit(lambda s, v: fn(s, labels, reduction=reduction, **{option: v}))(
        jnp.asarray(scores), jnp.asarray(value)
      )
      if option is not None
      else fn(jnp.asarray(scores), labels, reduction=reduction)
    )
  else:
    got = fn(jnp.asarray(scores), labels, reduction=reduction, **kwargs)
  got = np.asarray(got)
  if not in_domain:
    assert np.isnan(got).all() if reduction != "none" else np.isnan(got).all(), got
    return
  with np.errstate(all="ignore"):
    want = np.asarray(REFERENCES[loss](scores, labels, reduction=reduction, **kwargs))
  # The reference value where it is a number; NaN (or an infinite loss) where it is not.
  finite = np.isfinite(want)
  np.testing.assert_allclose(got[finite], want[finite], rtol=1e-9, atol=1e-9)
  bad_input = score is not None and np.isnan(score)
  if bad_input:
    assert np.isnan(np.ravel(got)[0]), got


@pytest.mark.parametrize("loss", ["dense_logits", "dense_probs", "dense_focal"])
def test_dense_sample_weight_contract(loss):
  fn, scores, labels, _ = LOSSES[loss]
  with pytest.raises(ValueError, match="sample_weight"):
    fn(jnp.asarray(scores), labels, sample_weight=np.array([1.0, -1.0, 1.0, 1.0]))
  with pytest.raises(ValueError, match="sample_weight"):
    fn(jnp.asarray(scores), labels, sample_weight=np.ones(3))
  f = jax.jit(lambda s, w: fn(s, labels, sample_weight=w, reduction="none"))
  losses = np.asarray(f(jnp.asarray(scores), jnp.array([1.0, -1.0, np.inf, 0.5])))
  assert np.isnan(losses[1]) and np.isnan(losses[2]) and np.all(np.isfinite(losses[[0, 3]]))


@pytest.mark.parametrize("loss", ["sparse_logits", "sparse_probs", "sparse_focal", "fused"])
def test_sample_weight_of_the_wrong_shape_or_type_is_a_clear_error(loss):
  with pytest.raises(ValueError, match=r"sample_weight has shape \(3,\).*per-example"):
    _call(loss, sample_weight=np.ones(3))
  with pytest.raises(TypeError, match="sample_weight"):
    _call(loss, sample_weight=np.array(["a", "b", "c", "d"]))
  # A scalar or a broadcastable weight is fine.
  np.testing.assert_allclose(
    _call(loss, sample_weight=2.0, reduction="sum"), 2 * _call(loss, reduction="sum"), rtol=1e-12
  )


# --- sample weights of the binary losses (one weight per entry) ----------------------------

BINARY_LOSSES = ["binary_logits", "binary_probs", "binary_focal"]
BAD_SAMPLE_WEIGHTS = [np.array([1.0, -1.0, 1.0]), np.array([np.inf, 1.0, 1.0]), np.array(np.nan)]


@pytest.mark.parametrize("i", range(len(BAD_SAMPLE_WEIGHTS)))
@pytest.mark.parametrize("loss", BINARY_LOSSES)
def test_binary_bad_sample_weight_raises_naming_it(loss, i):
  with pytest.raises(ValueError, match="sample_weight"):
    _call(loss, sample_weight=BAD_SAMPLE_WEIGHTS[i])


@pytest.mark.parametrize("loss", BINARY_LOSSES)
def test_binary_sample_weight_of_the_wrong_shape_names_the_shapes(loss):
  with pytest.raises(ValueError, match=r"sample_weight has shape \(2,\).*\(4, 3\)"):
    _call(loss, sample_weight=np.ones(2))
  with pytest.raises(TypeError, match="sample_weight"):
    _call(loss, sample_weight="heavy")


@pytest.mark.parametrize("reduction", ["none", "mean", "sum_over_batch_size"])
@pytest.mark.parametrize("i", range(len(BAD_SAMPLE_WEIGHTS)))
@pytest.mark.parametrize("loss", BINARY_LOSSES)
def test_binary_traced_bad_sample_weight_gives_nan(loss, i, reduction):
  fn, scores, labels, _ = LOSSES[loss]
  weights = BAD_SAMPLE_WEIGHTS[i]
  column = int(np.argmax(~((weights >= 0) & (weights < np.inf)))) if weights.ndim else 0

  def f(s, w):
    out = fn(s, labels, sample_weight=w, reduction=reduction)
    return out[0, column] if reduction == "none" else out

  value, grad = jax.jit(jax.value_and_grad(f))(jnp.asarray(scores), jnp.asarray(weights))
  assert np.isnan(value)
  assert np.isnan(grad).any()
  if reduction == "none" and weights.ndim:  # the entries with good weights are untouched
    out = jax.jit(lambda s, w: fn(s, labels, sample_weight=w, reduction="none"))(scores, weights)
    bad = ~((weights >= 0) & (weights < np.inf))
    assert np.isnan(np.asarray(out)[:, bad]).all() and np.isfinite(np.asarray(out)[:, ~bad]).all()
  with pytest.raises(checkify.JaxRuntimeError, match="sample_weight must be"):
    xentax.checked(jax.jit(f))(jnp.asarray(scores), jnp.asarray(weights))


@pytest.mark.parametrize("loss", BINARY_LOSSES)
def test_binary_bad_sample_weight_on_a_dropped_entry_is_ignored(loss):
  fn, scores, labels, _ = LOSSES[loss]
  where = np.ones((N, C), bool)
  where[:, 1] = False
  weights = np.array([1.0, -1.0, 2.0])

  def f(s, w):
    return fn(s, labels, sample_weight=w, where=where)

  value, grad = jax.jit(jax.value_and_grad(f))(jnp.asarray(scores), jnp.asarray(weights))
  want = fn(scores, labels, sample_weight=np.array([1.0, 0.0, 2.0]), where=where)
  np.testing.assert_allclose(value, want, **tol(np.float64))
  assert np.isfinite(grad).all()


# --- sample_weight of the divergences, nll, poly-1 and causal-LM -------------------------


@pytest.mark.parametrize(
  "call",
  [
    lambda w: xentax.kl_divergence_with_logits(LOGITS, TEACHER, sample_weight=w),
    lambda w: xentax.nll_loss(LOG_PROBS, LABELS, sample_weight=w),
    lambda w: xentax.causal_lm_cross_entropy_with_logits(
      LOGITS[None], LABELS[None], sample_weight=w[None]
    ),
  ],
)
def test_divergence_sample_weight_of_the_wrong_shape_or_type_is_a_clear_error(call):
  with pytest.raises(ValueError, match=r"sample_weight has shape \((1, )?3,?\)"):
    call(np.ones(3))
  with pytest.raises(TypeError, match="sample_weight"):
    call(np.array(["a"] * N))


def test_causal_lm_traced_bad_sample_weight_is_nan_for_that_token_only():
  z = rng.normal(size=(2, N, C))
  y = rng.integers(0, C, (2, N))
  w = np.ones((2, N))
  w[0, 2] = -1.0
  f = jax.jit(
    lambda w: xentax.causal_lm_cross_entropy_with_logits(z, y, sample_weight=w, reduction="none")
  )
  got = np.asarray(f(w))
  assert np.isnan(got[0, 1]) and np.isfinite(np.delete(got.ravel(), 1)).all()
  with pytest.raises(ValueError, match="sample_weight"):
    xentax.causal_lm_cross_entropy_with_logits(z, y, sample_weight=w)


@pytest.mark.parametrize(
  "call",
  [
    lambda z, y: xentax.sparse_categorical_cross_entropy_with_logits(z, y, z_loss=None),
    lambda z, y: xentax.sparse_categorical_cross_entropy_with_logits(z, y, label_smoothing=None),
    lambda z, y: xentax.categorical_cross_entropy_with_logits(z, jnp.eye(3)[y], z_loss=None),
    lambda z, y: xentax.sparse_categorical_focal_loss_with_logits(z, y, gamma=None),
    lambda z, y: xentax.kl_divergence_with_logits(z, z, temperature=None),
    lambda z, y: xentax.poly1_cross_entropy_with_logits(z, y, epsilon=None),
  ],
)
def test_none_for_a_numeric_option_is_a_named_type_error(call):
  """None means "off" only for ``softcap`` and the binary focal ``alpha``; elsewhere it is a
  TypeError naming the option and its domain, not an error from inside jnp."""
  z, y = jnp.zeros((2, 3), jnp.float32), jnp.array([0, 2])
  with pytest.raises(TypeError, match=r"=None is not an option value; pass a number"):
    call(z, y)


def test_reduction_is_checked_before_the_options():
  z = jnp.zeros((2, 3), jnp.float32)
  with pytest.raises(ValueError, match="reduction='bogus'"):
    xentax.jensen_shannon_divergence_with_logits(z, z, beta=2.0, reduction="bogus")
  with pytest.raises(ValueError, match="schedule='bogus'"):
    xentax.fused_linear_cross_entropy(
      jnp.ones((2, 4)), jnp.ones((4, 3)), jnp.array([0, 1]), bias=jnp.ones(2), schedule="bogus"
    )


def _zero_weight_case(loss, z, y, w, gamma, reduction):
  """``loss`` with class weights ``w`` (binary: ``weights`` or focal ``alpha``)."""
  if loss == "sparse":
    return xentax.sparse_categorical_cross_entropy_with_logits(
      z, y, class_weights=w, reduction=reduction
    )
  if loss == "nll":
    return xentax.nll_loss(jax.nn.log_softmax(z), y, class_weights=w, reduction=reduction)
  if loss == "sparse_focal":
    return xentax.sparse_categorical_focal_loss_with_logits(
      z, y, class_weights=w, gamma=gamma, reduction=reduction
    )
  labels = (jnp.arange(z.shape[-1]) == y[:, None]).astype(z.dtype)
  if loss == "binary":
    return xentax.binary_cross_entropy_with_logits(z, labels, weights=w, reduction=reduction)
  alpha = jnp.asarray(w[0])  # binary focal: alpha weighs the positives (labels 1)
  return xentax.binary_focal_loss_with_logits(
    z, labels, gamma=gamma, alpha=alpha, reduction=reduction
  )


@settings(max_examples=12, deadline=None)
@given(
  loss=st.sampled_from(["sparse", "nll", "sparse_focal", "binary", "binary_focal"]),
  seed=st.integers(0, 2**16),
  reduction=st.sampled_from(REDUCTIONS),
  gamma=st.sampled_from([0.0, 0.5, 2.0]),
)
def test_a_weight_of_zero_on_an_infinite_loss_adds_zero(loss, seed, reduction, gamma):
  # The contract's 0 * inf = 0: an infinite term under a weight of 0 (a class weight, the
  # binary `weights`, the focal alpha_t) changes nothing that a finite term there would not.
  r = np.random.default_rng(seed)
  n, c = int(r.integers(2, 6)), int(r.integers(2, 5))
  z, y = r.normal(size=(n, c)) * 2, r.integers(0, c, n)
  w = r.uniform(0.5, 2.0, c)
  if loss == "binary":
    w = np.where(np.arange(c) == y[:, None], 0.0, r.uniform(0.5, 2.0, (n, c)))
  off = y == y[0]  # rows whose target class gets weight 0 and a -inf logit
  if loss == "binary_focal":
    w[0] = 0.0  # alpha = 0: every positive label has weight 0
  elif loss != "binary":
    w[y[0]] = 0.0
  infinite, finite = z.copy(), z.copy()
  infinite[off, y[off]] = -np.inf
  finite[off, y[off]] = 0.0

  def f(z):
    return jnp.sum(_zero_weight_case(loss, z, jnp.asarray(y), jnp.asarray(w), gamma, reduction))

  got, got_grad = jax.value_and_grad(f)(infinite)
  want, want_grad = jax.value_and_grad(f)(finite)
  np.testing.assert_allclose(got, want, **tol("float64"))
  np.testing.assert_allclose(got_grad, want_grad, **tol("float64", "grad"))
