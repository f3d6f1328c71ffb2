"""KL, generalised JSD and distillation on logits: references, -inf, transforms, errors."""

import functools

import chex
import hypothesis.extra.numpy as hnp
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
from xentax import gradcheck
from xentax.losses import _rows

rng = np.random.default_rng(0)
S = rng.normal(size=(6, 5)) * 2
T = rng.normal(size=(6, 5)) * 2
Y = rng.integers(0, 5, 6)
WHERE = np.array([True, False, True, True, False, True])


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_kl_matches_reference(reduction, temperature):
  got = xentax.kl_divergence_with_logits(
    S, T, temperature=temperature, where=WHERE, reduction=reduction
  )
  want = ref.kl_divergence_with_logits(
    S, T, temperature=temperature, where=WHERE, reduction=reduction
  )
  np.testing.assert_allclose(got, want, **tol("float64"))


def test_kl_axis_and_batch_dims():
  s, t = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 3))
  got = xentax.kl_divergence_with_logits(s, t, axis=1, reduction="none")
  assert got.shape == (2, 3)
  np.testing.assert_allclose(
    got, ref.kl_divergence_with_logits(s, t, axis=1, reduction="none"), **tol("float64")
  )


def test_kl_hand_computed():
  # p_t = (e/(1+e), 1/(1+e)), p_s reversed: KL = (p - q) * (log p - log q) summed = 0.4621...
  a = np.e / (1 + np.e)
  want = a * np.log(a / (1 - a)) + (1 - a) * np.log((1 - a) / a)
  got = xentax.kl_divergence_with_logits(np.array([[0.0, 1.0]]), np.array([[1.0, 0.0]]))
  np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 1.0])
@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_jsd_matches_reference(beta, reduction):
  got = xentax.jensen_shannon_divergence_with_logits(
    S, T, beta=beta, temperature=1.5, where=WHERE, reduction=reduction
  )
  want = ref.jensen_shannon_divergence_with_logits(
    S, T, beta=beta, temperature=1.5, where=WHERE, reduction=reduction
  )
  np.testing.assert_allclose(got, want, **tol("float64"))


def test_jsd_traced_beta_is_the_formula():
  f = jax.jit(lambda b: xentax.jensen_shannon_divergence_with_logits(S, T, beta=b))
  np.testing.assert_allclose(
    f(0.3), ref.jensen_shannon_divergence_with_logits(S, T, beta=0.3), **tol("float64")
  )


@pytest.mark.parametrize("masked", [False, True])
def test_jsd_traced_beta_at_zero_and_one_is_zero_with_the_endpoint_slopes(masked):
  # The formula at beta = 0 or 1 is KL(Q || Q) or KL(P || P) = 0, for every s and t; its
  # slope in beta there is KL(P || Q) and -KL(Q || P) (infinite where one side has no mass).
  s, t = S[:4].copy(), T[:4].copy()
  if masked:
    t[:, 1] = -np.inf  # the teacher has no mass on class 1, the student has
  f = xentax.jensen_shannon_divergence_with_logits
  for beta in (0.0, 1.0):
    value, grads = jax.value_and_grad(lambda s, t, b: f(s, t, beta=b), argnums=(0, 1, 2))(
      s, t, jnp.asarray(beta)
    )
    np.testing.assert_allclose(value, 0.0, atol=1e-15)
    np.testing.assert_allclose(grads[0], 0.0, atol=1e-15)
    np.testing.assert_allclose(grads[1], 0.0, atol=1e-15)
    if not masked:
      kl = xentax.kl_divergence_with_logits
      slope = kl(s, t) if beta == 0.0 else -kl(t, s)
      np.testing.assert_allclose(grads[2], slope, **tol("float64", "grad"))


def test_distillation_with_a_weight_of_zero_on_an_infinite_term():
  s, t, y = S[:3].copy(), T[:3].copy(), Y[:3].copy()
  s[:, 1] = -np.inf  # the teacher's mass on class 1 makes the KL infinite
  y[:] = 0
  kw = dict(temperature=2.0, reduction="none")
  ce = xentax.sparse_categorical_cross_entropy_with_logits(s, y, reduction="none")
  got, grad = jax.value_and_grad(
    lambda s: xentax.distillation_loss(s, t, y, alpha=0.0, **kw).sum()
  )(s)
  np.testing.assert_allclose(got, ce.sum(), **tol("float64"))
  want = jax.grad(
    lambda s: xentax.sparse_categorical_cross_entropy_with_logits(s, y, reduction="sum")
  )(s)
  np.testing.assert_allclose(grad, want, **tol("float64", "grad"))
  t[:, 1] = -np.inf  # now the KL is finite and the label on class 1 makes the CE infinite
  y[:] = 1
  kl = xentax.kl_divergence_with_logits(s, t, **kw)
  got = xentax.distillation_loss(s, t, y, alpha=1.0, **kw)
  np.testing.assert_allclose(got, 4.0 * kl, **tol("float64"))


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("alpha", [0.0, 0.4, 1.0])
def test_distillation_matches_reference(reduction, alpha):
  y = Y.copy()
  y[2] = -100
  kw = dict(temperature=3.0, alpha=alpha, ignore_index=-100, where=WHERE, reduction=reduction)
  got = xentax.distillation_loss(S, T, y, **kw)
  np.testing.assert_allclose(got, ref.distillation_loss(S, T, y, **kw), **tol("float64"))


def test_distillation_is_the_mix_of_its_two_terms():
  kl = xentax.kl_divergence_with_logits(S, T, temperature=2.0)
  ce = xentax.sparse_categorical_cross_entropy_with_logits(S, Y)
  got = xentax.distillation_loss(S, T, Y, temperature=2.0, alpha=0.3)
  np.testing.assert_allclose(got, 0.3 * 4.0 * kl + 0.7 * ce, **tol("float64"))


def test_float32_and_bfloat16():
  want = ref.kl_divergence_with_logits(S, T)
  got32 = xentax.kl_divergence_with_logits(S.astype(np.float32), T.astype(np.float32))
  assert got32.dtype == jnp.float32
  np.testing.assert_allclose(got32, want, **tol("float32"))
  got16 = xentax.kl_divergence_with_logits(
    jnp.asarray(S, jnp.bfloat16), jnp.asarray(T, jnp.bfloat16)
  )
  assert got16.dtype == jnp.float32
  np.testing.assert_allclose(got16, want, **tol("bfloat16"))


# -inf on both sides: a class the teacher gives no mass contributes 0; no NaN anywhere.
S_INF = np.array([[0.0, -np.inf, 1.0, -np.inf], [2.0, 0.5, -1.0, 0.0]])
T_INF = np.array([[1.0, -np.inf, -np.inf, 0.0], [-np.inf, 0.5, 1.0, -np.inf]])


@pytest.mark.parametrize(
  "fn",
  [
    xentax.kl_divergence_with_logits,
    xentax.jensen_shannon_divergence_with_logits,
    lambda s, t: xentax.distillation_loss(
      s, t, np.array([0, 1]), temperature=2.0, teacher_gradient=True
    ),
  ],
)
def test_inf_logits_forward_reverse_and_forward_mode_are_nan_free(fn):
  s = S_INF.copy()
  s[0, 3] = 0.5  # the teacher has mass on class 3: the student must too, or KL = inf
  value = fn(s, T_INF)
  grads = jax.grad(fn, argnums=(0, 1))(s, T_INF)
  tangent = jax.jvp(fn, (s, T_INF), (np.ones_like(s), np.ones_like(T_INF)))[1]
  # The -inf limit: a logit of -1e4 has probability exp(-1e4) = 0 in float64, so value,
  # gradients and tangent equal those at finite logits with -inf replaced by -1e4 (where
  # the gradient is 0: no probability mass moves there).
  s_fin, t_fin = np.maximum(s, -1e4), np.maximum(T_INF, -1e4)
  np.testing.assert_allclose(value, fn(s_fin, t_fin), rtol=1e-12)
  for got, want in zip(grads, jax.grad(fn, argnums=(0, 1))(s_fin, t_fin), strict=True):
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
  want_tangent = jax.jvp(fn, (s_fin, t_fin), (np.ones_like(s), np.ones_like(T_INF)))[1]
  np.testing.assert_allclose(tangent, want_tangent, rtol=1e-12, atol=1e-15)


def test_inf_logits_match_reference_and_gradients():
  s = S_INF.copy()
  s[0, 3] = 0.5
  np.testing.assert_allclose(
    xentax.kl_divergence_with_logits(s, T_INF), ref.kl_divergence_with_logits(s, T_INF)
  )
  g_s, g_t = jax.grad(xentax.kl_divergence_with_logits, argnums=(0, 1))(s, T_INF)
  np.testing.assert_allclose(g_s, gradcheck.kl_divergence_with_logits_grad(s, T_INF), atol=1e-15)
  np.testing.assert_allclose(
    g_t, gradcheck.kl_divergence_with_logits_teacher_grad(s, T_INF), atol=1e-15
  )
  # Classes both sides rule out get exactly zero gradient.
  assert g_s[0, 1] == 0 and g_t[0, 1] == 0


def test_teacher_mass_where_student_has_none_is_infinite():
  s = np.array([[0.0, -np.inf]])
  assert xentax.kl_divergence_with_logits(s, np.array([[0.0, 0.0]])) == np.inf


def test_dropped_rows_may_hold_nan():
  s, t = S.copy(), T.copy()
  s[1], t[4] = np.nan, -np.inf
  got = xentax.kl_divergence_with_logits(s, t, where=WHERE)
  np.testing.assert_allclose(got, ref.kl_divergence_with_logits(S, T, where=WHERE))
  g = jax.grad(xentax.kl_divergence_with_logits, argnums=(0, 1))(s, t, where=WHERE)
  assert all(np.all(np.isfinite(x)) for x in g)
  assert np.all(g[0][1] == 0) and np.all(g[1][4] == 0)


def test_gradients_both_sides_match_closed_forms():
  for reduction in ("none", "sum", "mean"):
    kw = dict(temperature=1.7, where=WHERE, reduction=reduction)

    def f(s, t, kw=kw):
      return jnp.sum(xentax.kl_divergence_with_logits(s, t, **kw))

    g_s, g_t = jax.grad(f, argnums=(0, 1))(S, T)
    np.testing.assert_allclose(
      g_s, gradcheck.kl_divergence_with_logits_grad(S, T, **kw), **tol("float64", "grad")
    )
    np.testing.assert_allclose(
      g_t, gradcheck.kl_divergence_with_logits_teacher_grad(S, T, **kw), **tol("float64", "grad")
    )
  y = Y.copy()
  y[0] = -100
  kw = dict(temperature=2.0, alpha=0.7, ignore_index=-100, where=WHERE)
  np.testing.assert_allclose(
    jax.grad(xentax.distillation_loss)(S, T, y, **kw),
    gradcheck.distillation_loss_grad(S, T, y, **kw),
    **tol("float64", "grad"),
  )


@pytest.mark.parametrize(
  "fn",
  [
    xentax.kl_divergence_with_logits,
    lambda s, t: xentax.jensen_shannon_divergence_with_logits(s, t, beta=0.3, temperature=2.0),
    lambda s, t: xentax.distillation_loss(
      s, t, Y, temperature=2.0, alpha=0.6, teacher_gradient=True
    ),
  ],
)
def test_check_grads_float64_both_modes(fn):
  check_grads(jax.jit(fn), (S, T), order=2, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


def test_the_teacher_is_a_constant_unless_teacher_gradient():
  def loss(s, t, **kw):
    return xentax.distillation_loss(s, t, Y, temperature=2.0, alpha=0.6, **kw)

  g_s, g_t = jax.grad(loss, argnums=(0, 1))(S, T)
  assert np.all(g_t == 0)
  stopped = jax.grad(lambda t: loss(S, jax.lax.stop_gradient(t), teacher_gradient=True))(T)
  assert np.all(stopped == 0)
  g_s_joint, g_t_joint = jax.grad(functools.partial(loss, teacher_gradient=True), (0, 1))(S, T)
  np.testing.assert_allclose(g_s, g_s_joint, **tol("float64", "grad"))
  # alpha T^2 KL(teacher || student): the teacher's closed form, scaled.
  want = 0.6 * 2.0**2 * gradcheck.kl_divergence_with_logits_teacher_grad(S, T, temperature=2.0)
  np.testing.assert_allclose(g_t_joint, want, **tol("float64", "grad"))
  with pytest.raises(TypeError, match="teacher_gradient=1 must be True or False"):
    loss(S, T, teacher_gradient=1)


def test_jit_vmap_and_retrace_guard():
  @jax.jit
  @chex.assert_max_traces(n=1)
  def f(s, t, temperature):
    return xentax.kl_divergence_with_logits(s, t, temperature=temperature, reduction="none")

  chex.clear_trace_counter()
  a = f(S, T, 1.0)
  b = f(S, T, 2.0)  # a traced temperature does not recompile
  np.testing.assert_allclose(a, ref.kl_divergence_with_logits(S, T, reduction="none"))
  np.testing.assert_allclose(
    b, ref.kl_divergence_with_logits(S, T, temperature=2.0, reduction="none")
  )
  per_row = jax.vmap(lambda s, t: xentax.kl_divergence_with_logits(s, t))(S, T)
  np.testing.assert_allclose(per_row, a, **tol("float64"))


def test_matches_optax_kl_divergence_with_log_targets():
  optax = pytest.importorskip("optax")
  log_q = jax.nn.log_softmax(S)
  log_p = jax.nn.log_softmax(T)
  want = jnp.mean(optax.losses.kl_divergence_with_log_targets(log_q, log_p))
  np.testing.assert_allclose(xentax.kl_divergence_with_logits(S, T), want, **tol("float64"))


def test_bad_inputs():
  with pytest.raises(ValueError, match="student_logits has shape"):
    xentax.kl_divergence_with_logits(S, T[:3])
  with pytest.raises(TypeError, match="teacher_logits must be a floating-point"):
    xentax.kl_divergence_with_logits(S, Y[:, None] * np.ones((1, 5), int))
  with pytest.raises(ValueError, match="reduction='avg'"):
    xentax.kl_divergence_with_logits(S, T, reduction="avg")
  with pytest.raises(ValueError, match="beta=1.5"):
    xentax.jensen_shannon_divergence_with_logits(S, T, beta=1.5)
  with pytest.raises(ValueError, match="distillation_loss: labels must lie in"):
    xentax.distillation_loss(S, T, np.full(6, 7))
  with pytest.raises(TypeError, match="labels must be integer"):
    xentax.distillation_loss(S, T, Y.astype(float))
  with pytest.raises(ValueError, match="axis=2"):
    xentax.kl_divergence_with_logits(S, T, axis=2)


rows = hnp.arrays(
  np.float64, (3, 4), elements=st.floats(-20, 20, allow_nan=False, allow_infinity=False)
)


@jax.jit
def _divergence_properties(s, t, temperature):
  """The values the property compares, in one compiled call (temperature traced)."""
  kl = xentax.kl_divergence_with_logits
  jsd = xentax.jensen_shannon_divergence_with_logits
  return (
    kl(s, t, temperature=temperature, reduction="none"),
    kl(s, s, temperature=temperature, reduction="none"),
    jsd(s, t, reduction="none"),
    jsd(t, s, reduction="none"),
    # Shifting either side's logits by a constant changes nothing.
    kl(s + 3.0, t - 2.0, temperature=temperature),
  )


@settings(max_examples=12, deadline=None, derandomize=True)
@given(rows, rows, st.floats(0.5, 4.0))
def test_properties(s, t, temperature):
  kl, self_kl, jsd_st, jsd_ts, shifted = _divergence_properties(s, t, temperature)
  assert np.all(np.asarray(kl) >= -1e-12)
  np.testing.assert_allclose(self_kl, 0.0, atol=1e-12)
  np.testing.assert_allclose(jsd_st, jsd_ts, rtol=1e-9, atol=1e-12)
  assert np.all(np.asarray(jsd_st) <= np.log(2) + 1e-12)
  np.testing.assert_allclose(shifted, np.mean(kl), rtol=1e-9, atol=1e-9)


# --- sample_weight ------------------------------------------------------------------------
SW = rng.uniform(0.0, 2.0, 6)
SW[3] = 0.0  # a zero weight drops its example
REDUCTIONS = ["none", "sum", "mean", "sum_over_batch_size"]
Y_IGN = Y.copy()
Y_IGN[2] = -100

DIVERGENCES = {
  "kl": (xentax.kl_divergence_with_logits, ref.kl_divergence_with_logits, {"temperature": 1.5}),
  "jsd": (
    xentax.jensen_shannon_divergence_with_logits,
    ref.jensen_shannon_divergence_with_logits,
    {"beta": 0.3, "temperature": 1.5},
  ),
  "jsd_beta0": (
    xentax.jensen_shannon_divergence_with_logits,
    ref.jensen_shannon_divergence_with_logits,
    {"beta": 0.0},
  ),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name", list(DIVERGENCES))
def test_sample_weight_matches_reference(name, reduction):
  fn, ref_fn, kw = DIVERGENCES[name]
  kw = dict(kw, where=WHERE, sample_weight=SW, reduction=reduction)
  np.testing.assert_allclose(fn(S, T, **kw), ref_fn(S, T, **kw), **tol("float64"))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_distillation_sample_weight_matches_reference(reduction):
  kw = dict(
    temperature=2.0, alpha=0.4, ignore_index=-100, where=WHERE, sample_weight=SW,
    reduction=reduction,
  )  # fmt: skip
  got = xentax.distillation_loss(S, T, Y_IGN, **kw)
  np.testing.assert_allclose(got, ref.distillation_loss(S, T, Y_IGN, **kw), **tol("float64"))


def test_sample_weight_mean_conventions():
  # Keras: "mean" divides by the kept weights, "sum_over_batch_size" by the kept count.
  kl = np.asarray(xentax.kl_divergence_with_logits(S, T, reduction="none"))
  got = xentax.kl_divergence_with_logits(S, T, sample_weight=SW)
  np.testing.assert_allclose(got, np.sum(SW * kl) / np.sum(SW), rtol=1e-12)
  got = xentax.kl_divergence_with_logits(S, T, sample_weight=SW, reduction="sum_over_batch_size")
  np.testing.assert_allclose(got, np.sum(SW * kl) / 6, rtol=1e-12)


def test_sample_weight_zero_drops_an_infinite_row():
  s = S.copy()
  s[3, 0] = -np.inf  # the teacher has mass there: row 3's KL is inf, but its weight is 0
  got = xentax.kl_divergence_with_logits(s, T, sample_weight=SW)
  want = ref.kl_divergence_with_logits(s, T, sample_weight=SW)
  assert np.isfinite(got)
  np.testing.assert_allclose(got, want, **tol("float64"))


@pytest.mark.parametrize(
  "fn",
  [
    lambda s, t, w: xentax.kl_divergence_with_logits(s, t, temperature=1.5, sample_weight=w),
    lambda s, t, w: xentax.jensen_shannon_divergence_with_logits(s, t, beta=0.3, sample_weight=w),
    lambda s, t, w: xentax.distillation_loss(
      s, t, Y, temperature=2.0, sample_weight=w, teacher_gradient=True
    ),
  ],
)
def test_sample_weight_gradients_fwd_and_rev(fn):
  # Gradient with respect to the weights (and the logits) against finite differences.
  check_grads(jax.jit(fn), (S, T, SW + 0.1), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


def test_sample_weight_jit_vmap():
  f = jax.jit(lambda s, t, w: xentax.kl_divergence_with_logits(s, t, sample_weight=w))
  np.testing.assert_allclose(
    f(S, T, SW), ref.kl_divergence_with_logits(S, T, sample_weight=SW), **tol("float64")
  )
  batched = jax.vmap(
    lambda s, t, w: xentax.kl_divergence_with_logits(s, t, sample_weight=w, reduction="sum")
  )(S[None].repeat(2, 0), T[None].repeat(2, 0), np.stack([SW, 2 * SW]))
  want = ref.kl_divergence_with_logits(S, T, sample_weight=SW, reduction="sum")
  np.testing.assert_allclose(batched, [want, 2 * want], **tol("float64"))


def test_kept_row_with_nan_is_nan_and_fast_path_matches_guarded():
  s = S.copy()
  s[0, 2] = np.nan
  got = xentax.kl_divergence_with_logits(s, T, reduction="none")
  assert np.isnan(got[0]) and np.all(np.isfinite(got[1:]))
  g_s, g_t = jax.grad(lambda a, b: xentax.kl_divergence_with_logits(a, b), argnums=(0, 1))(s, T)
  assert np.all(np.isnan(g_s[0])) and np.all(np.isfinite(g_s[1:]))
  # A -inf in one row sends every row through the guarded form: same values as the fast one.
  t = T.copy()
  t[5, 1] = -np.inf
  mixed = xentax.kl_divergence_with_logits(S, t, reduction="none")
  fast = xentax.kl_divergence_with_logits(S, T, reduction="none")
  np.testing.assert_allclose(mixed[:5], fast[:5], **tol("float64"))
  np.testing.assert_allclose(mixed, ref.kl_divergence_with_logits(S, t, reduction="none"))


@settings(max_examples=15, deadline=None)
@given(
  rows,
  rows,
  # Subnormal weights are zero on XLA:CPU (it flushes them), not in NumPy: left out.
  hnp.arrays(np.float64, (3,), elements=st.floats(0, 3, allow_subnormal=False)),
  st.sampled_from(REDUCTIONS),
)
def test_sample_weight_property(s, t, w, reduction):
  got = xentax.kl_divergence_with_logits(s, t, sample_weight=w, reduction=reduction)
  want = ref.kl_divergence_with_logits(s, t, sample_weight=w, reduction=reduction)
  np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)


def test_long_rows_reduced_in_pieces_match_reference_values_and_gradients():
  # Rows longer than 32768 are reduced in pieces on the CPU; check that path, with a dropped
  # row and a -inf teacher logit (which takes the guarded fallback) among them.
  num_classes = 3 * 16384
  assert jax.default_backend() != "cpu" or _rows.row_pieces(num_classes) == 2
  r = np.random.default_rng(1)
  s, t = r.normal(size=(3, num_classes)) * 2, r.normal(size=(3, num_classes)) * 2
  where = np.array([True, False, True])
  kw = dict(temperature=1.5, where=where, reduction="none")
  for teacher in (t, np.where(np.arange(num_classes) == 7, -np.inf, t)):
    np.testing.assert_allclose(
      xentax.kl_divergence_with_logits(s, teacher, **kw),
      ref.kl_divergence_with_logits(s, teacher, **kw),
      **tol("float64"),
    )
    np.testing.assert_allclose(
      xentax.jensen_shannon_divergence_with_logits(s, teacher, beta=0.3, **kw),
      ref.jensen_shannon_divergence_with_logits(s, teacher, beta=0.3, **kw),
      **tol("float64"),
    )
  kw["reduction"] = "mean"
  g_s, g_t = jax.grad(xentax.kl_divergence_with_logits, argnums=(0, 1))(s, t, **kw)
  np.testing.assert_allclose(
    g_s, gradcheck.kl_divergence_with_logits_grad(s, t, **kw), **tol("float64", "grad")
  )
  np.testing.assert_allclose(
    g_t, gradcheck.kl_divergence_with_logits_teacher_grad(s, t, **kw), **tol("float64", "grad")
  )
  grad_jsd = jax.grad(xentax.jensen_shannon_divergence_with_logits)(s, t, beta=0.3, **kw)
  np.testing.assert_allclose(
    grad_jsd,
    gradcheck.jensen_shannon_divergence_with_logits_grad(s, t, beta=0.3, **kw),
    **tol("float64", "grad"),
  )


def test_a_subnormal_sample_weight_is_zero_where_the_backend_flushes_it():
  """The documented platform behaviour: XLA:CPU flushes subnormals, so such weights drop
  their examples (a mean over nothing kept is 0)."""
  s, t = np.zeros((3, 4)), np.ones((3, 4))
  t[0, 0] = 0.0
  w = np.full(3, np.finfo(np.float64).tiny / 2)
  got = xentax.kl_divergence_with_logits(s, t, sample_weight=w, reduction="mean")
  if jax.default_backend() == "cpu":
    assert float(got) == 0.0
