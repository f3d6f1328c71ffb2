"""The Pallas sparse cross-entropy kernels (``implementation="pallas"``), run by Pallas's
interpreter on the CPU, against the XLA path and a float64 NumPy reference.

The same kernels compile for NVIDIA GPUs (``experiments/benchmarks/gpu_pallas_sparse.py`` runs
these comparisons compiled; the split-row gradient with several segments a row runs only
there: its programs wait on each other, which the one-at-a-time interpreter cannot run).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import export

import xentax
from tests import _reference
from xentax.losses import _engine
from xentax.losses import _pallas_sparse as ps

LOSS = xentax.sparse_categorical_cross_entropy_with_logits
CONFIGS = {
  "split, one segment": {"segment": 8192},
  "two passes": {"segment": 0},
  "two passes, forward order": {"segment": 0, "reverse": False, "evict": False},
}


def _summed(out, reduction):
  """A scalar whose gradient reaches every row with its own weight (``"none"``)."""
  return jnp.sum(out * jnp.arange(1.0, out.size + 1)) if reduction == "none" else out


def _options(rng, n, c, dtype=jnp.float32):
  return dict(
    class_weights=jnp.asarray(rng.uniform(0.5, 2.0, c), jnp.float32),
    label_smoothing=jnp.float32(0.15),
    z_loss=jnp.float32(0.02),
    softcap=jnp.float32(6.0),
    sample_weight=jnp.asarray(rng.uniform(0.5, 2.0, n), jnp.float32),
  )


def _value_and_grads(implementation, z, labels, reduction, options, **fixed):
  """The loss and its gradients with respect to the logits and every float option."""

  def loss(z, options):
    out = LOSS(z, labels, reduction=reduction, implementation=implementation, **options, **fixed)
    return _summed(out, reduction)

  return jax.value_and_grad(loss, argnums=(0, 1))(z, options)


def _assert_same(kernel, xla, rtol, atol):
  (value_k, (grad_k, opts_k)), (value_x, (grad_x, opts_x)) = kernel, xla
  np.testing.assert_allclose(value_k, value_x, rtol=rtol, atol=atol)
  assert grad_k.dtype == grad_x.dtype
  np.testing.assert_allclose(
    np.asarray(grad_k, np.float32), np.asarray(grad_x, np.float32), rtol=rtol, atol=atol
  )
  for name in opts_x:
    np.testing.assert_allclose(opts_k[name], opts_x[name], rtol=rtol, atol=atol, err_msg=name)


def _odd_case(rng, n, c, dtype):
  """Logits with -inf on some non-target classes, a dropped row holding NaN."""
  z = rng.normal(size=(n, c)) * 3
  labels = rng.integers(0, c, n)
  masked = (rng.random((n, c)) < 0.2) & (np.arange(c) != labels[:, None])
  z[masked] = -np.inf
  where = np.ones(n, bool)
  if n > 1:
    where[1] = False
    z[1, 0] = np.nan
  return jnp.asarray(z, dtype), jnp.asarray(labels, jnp.int32), jnp.asarray(where)


F32, BF16 = (jnp.float32, (2e-5, 2e-6)), (jnp.bfloat16, (2e-2, 2e-3))


@pytest.mark.parametrize(
  ("dtype", "tol", "reduction"),
  [
    (*F32, "mean"),
    (*BF16, "none"),
    pytest.param(*F32, "none", marks=pytest.mark.slow),
    pytest.param(*BF16, "mean", marks=pytest.mark.slow),
  ],
)
def test_every_option_matches_the_xla_path(dtype, tol, reduction):
  """Values and every gradient (logits, class weights, smoothing, z-loss, softcap, sample
  weights), 37 classes over chunks of 16, -inf logits, a dropped row."""
  rng = np.random.default_rng(0)
  z, labels, where = _odd_case(rng, 5, 37, dtype)
  options = _options(rng, 5, 37)
  with ps.tiling({"block_cols": 16, "segment": 0}):
    kernel = _value_and_grads("pallas", z, labels, reduction, options, where=where)
  xla = _value_and_grads("xla", z, labels, reduction, options, where=where)
  _assert_same(kernel, xla, *tol)


@pytest.mark.slow
@settings(deadline=None, max_examples=6)
@given(
  n=st.integers(1, 7),
  c=st.integers(1, 70),
  block_cols=st.sampled_from([8, 16, 64]),
  config=st.sampled_from(sorted(CONFIGS)),
  reduction=st.sampled_from(["mean", "sum", "none"]),
  names=st.sets(
    st.sampled_from(["class_weights", "label_smoothing", "z_loss", "softcap", "sample_weight"])
  ),
  masking=st.sampled_from(["none", "ignore_index", "where"]),
  dtype=st.sampled_from([jnp.float32, jnp.bfloat16]),
  seed=st.integers(0, 2**16),
)
def test_options_and_tilings_match_the_xla_path(
  n, c, block_cols, config, reduction, names, masking, dtype, seed
):
  rng = np.random.default_rng(seed)
  z, labels, where = _odd_case(rng, n, c, dtype)
  options = {k: v for k, v in _options(rng, n, c).items() if k in names}
  fixed = {}
  if masking == "where":
    fixed["where"] = where
  elif masking == "ignore_index":
    labels = jnp.where(jnp.asarray(rng.random(n) < 0.3), -100, labels)
    z = jnp.where(jnp.isnan(z), 0.0, z).astype(dtype)
    fixed["ignore_index"] = -100
  else:
    z = jnp.where(jnp.isnan(z), 0.0, z).astype(dtype)
  with ps.tiling({**CONFIGS[config], "block_cols": block_cols}):
    kernel = _value_and_grads("pallas", z, labels, reduction, options, **fixed)
  xla = _value_and_grads("xla", z, labels, reduction, options, **fixed)
  rtol, atol = (2e-5, 5e-6) if dtype == jnp.float32 else (2e-2, 2e-3)
  _assert_same(kernel, xla, rtol, atol * (n if reduction == "none" else 1))  # row n weighs n + 1


def _grad_reference(z, labels, kept, reduction, weights):
  """Closed form: d/dz of sum_n w_n l_n is w_n (softmax(z_n) - onehot(y_n)) on kept rows."""
  z = np.asarray(z, np.float64)
  m = z.max(1, keepdims=True)
  p = np.exp(z - m)
  p /= p.sum(1, keepdims=True)
  rows = np.flatnonzero(kept)
  p[rows, labels[rows]] -= 1.0
  scale = np.where(kept, weights, 0.0)
  if reduction == "mean":
    scale = scale / kept.sum()
  return p * scale[:, None]


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(CONFIGS))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_float64_reference(config, reduction):
  rng = np.random.default_rng(3)
  n, c = 6, 45
  z = (rng.normal(size=(n, c)) * 4).astype(np.float32)
  labels = rng.integers(0, c, n)
  labels[2] = -100
  kept = labels != -100
  weights = np.arange(1.0, n + 1) if reduction == "none" else np.ones(n)

  def loss(z):
    out = LOSS(
      z, jnp.asarray(labels), ignore_index=-100, reduction=reduction, implementation="pallas"
    )
    return jnp.sum(out * weights) if reduction == "none" else out

  with ps.tiling({**CONFIGS[config], "block_cols": 16}):
    value, grad = jax.value_and_grad(loss)(jnp.asarray(z))
  want = _reference.sparse_categorical_cross_entropy_with_logits(
    z, labels, ignore_index=-100, reduction=reduction
  )
  want = np.sum(want * weights) if reduction == "none" else want
  np.testing.assert_allclose(value, want, rtol=2e-5, atol=1e-5)
  want_grad = _grad_reference(z, labels, kept, reduction, weights)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_infinite_and_nan_logits():
  """-inf logits drop out of the log-sum-exp; a NaN in a kept row gives that row NaN."""
  z = np.array(
    [
      [-np.inf, 1.0, -np.inf, 2.0, 0.5, -np.inf, 3.0, -1.0, 0.0],
      [-np.inf] * 8 + [4.0],
      [0.1, np.nan, 0.3, 0.2, 0.0, 1.0, 2.0, 3.0, 4.0],
    ],
    np.float32,
  )
  labels = np.array([3, 8, 0])
  with ps.tiling({"block_cols": 4, "segment": 0}):
    out = LOSS(jnp.asarray(z), jnp.asarray(labels), reduction="none", implementation="pallas")
  want = _reference.sparse_categorical_cross_entropy_with_logits(
    np.nan_to_num(z, nan=0.0), labels, reduction="none"
  )
  np.testing.assert_allclose(out[:2], want[:2], rtol=1e-6)
  assert np.isnan(out[2])


def test_dropped_and_bad_rows():
  """A dropped row holding NaN or inf: loss and gradient 0. A traced bad label: NaN."""
  z = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
  z[1] = np.nan
  z[2] = -np.inf
  labels = jnp.asarray([1, -100, 3, 0])
  where = jnp.asarray([True, True, False, True])
  loss = lambda z: LOSS(z, labels, where=where, ignore_index=-100, implementation="pallas")  # noqa: E731
  value, grad = jax.value_and_grad(loss)(jnp.asarray(z))
  kept = np.array([True, False, False, True])
  clean = np.where(kept[:, None], z, 0.0)
  want = _reference.sparse_categorical_cross_entropy_with_logits(
    clean, np.where(kept, labels, 0), where=kept
  )
  np.testing.assert_allclose(value, want, rtol=1e-6)
  want_grad = _grad_reference(clean, np.where(kept, labels, 0), kept, "mean", np.ones(4))
  np.testing.assert_allclose(grad, want_grad, atol=1e-7)
  bad = jnp.asarray([1, 6, 3, -1], jnp.int32)
  z = jnp.asarray(np.nan_to_num(z))
  rows = np.asarray(
    jax.jit(lambda z, y: LOSS(z, y, reduction="none", implementation="pallas"))(z, bad)
  )
  assert np.isnan(rows[1]) and np.isnan(rows[3]) and np.all(np.isfinite(rows[[0, 2]]))
  value, grad = jax.jit(jax.value_and_grad(lambda z, y: LOSS(z, y, implementation="pallas")))(
    z, bad
  )
  assert np.isnan(value) and np.isnan(grad[1]).all() and np.isfinite(grad[0]).all()


@pytest.mark.slow
def test_all_rows_dropped_or_no_rows_give_zero():
  z = jnp.ones((3, 5), jnp.float32)
  value, grad = jax.value_and_grad(
    lambda z: LOSS(z, jnp.zeros(3, jnp.int32), where=False, implementation="pallas")
  )(z)
  assert value == 0 and np.all(np.asarray(grad) == 0)
  one = LOSS(z[:1], jnp.zeros(1, jnp.int32), implementation="pallas")
  np.testing.assert_allclose(one, np.log(5.0), rtol=1e-6)


@pytest.mark.slow
def test_batch_axes_and_class_axis():
  """``[B, T, C]`` logits, or the class axis elsewhere: rows flattened, shape kept."""
  rng = np.random.default_rng(1)
  z = jnp.asarray(rng.normal(size=(2, 3, 11)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, 11, (2, 3)))
  for axis, logits in ((-1, z), (1, jnp.moveaxis(z, -1, 1))):
    out = LOSS(logits, labels, axis=axis, reduction="none", implementation="pallas")
    want = LOSS(logits, labels, axis=axis, reduction="none", implementation="xla")
    assert out.shape == (2, 3)
    np.testing.assert_allclose(out, want, rtol=1e-6)


def test_implementation_argument():
  z = jnp.zeros((2, 4), jnp.float32)
  y = jnp.zeros(2, jnp.int32)
  with pytest.raises(ValueError, match="implementation must be 'auto', 'xla' or 'pallas'"):
    LOSS(z, y, implementation="triton")
  with pytest.raises(ValueError, match="float64 inputs need implementation='xla'"):
    LOSS(z.astype(jnp.float64), y, implementation="pallas")
  if jax.default_backend() == "cpu":  # "auto" is XLA here: no Pallas call in the program
    assert "pallas" not in str(jax.make_jaxpr(lambda z: LOSS(z, y))(z))
  assert "pallas_call" in str(jax.make_jaxpr(lambda z: LOSS(z, y, implementation="pallas"))(z))
  assert _engine.KERNELS[("sparse_categorical_cross_entropy_with_logits", "cuda")] == "pallas"


@pytest.mark.slow
def test_split_gradient_refuses_waiting_programs_in_the_interpreter():
  z = jnp.zeros((2, 64), jnp.float32)
  ones = jnp.ones(2)
  coef = ps.Coefficients(ones, ones * 0, ones, None, ones)
  with pytest.raises(ValueError, match="segment >= C or segment=0"):
    ps.split_gradient(z, jnp.zeros(2, jnp.int32), coef, segment=16, interpret=True)


@pytest.mark.slow
@pytest.mark.parametrize("options", ["plain", "every option"])
def test_kernels_lower_for_cuda(options):
  """Each kernel lowers to a Triton call for an NVIDIA GPU, here on the CPU (``jax.export``)."""
  z = jax.ShapeDtypeStruct((64, 1000), jnp.bfloat16)
  y = jax.ShapeDtypeStruct((64,), jnp.int32)
  extra = (
    {}
    if options == "plain"
    else dict(class_weights=jnp.ones(1000), label_smoothing=0.1, z_loss=1e-4, softcap=30.0)
  )
  checks = [export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]
  for reduction in ("mean", "none"):

    def fn(z, y, reduction=reduction):
      out = LOSS(z, y, reduction=reduction, implementation="pallas", **extra)
      return _summed(out, reduction)

    for program in (fn, jax.value_and_grad(fn)):
      with jax.default_device(jax.devices("cpu")[0]):
        exported = export.export(jax.jit(program), platforms=["cuda"], disabled_checks=checks)(z, y)
      assert "__gpu$xla.gpu.triton" in exported.mlir_module()


def test_edge_cases_found_in_review():
  """A traced zero smoothing beside a -inf logit, float16 under loss scaling, an empty batch,
  a +inf logit: as the XLA path."""
  rng = np.random.default_rng(4)
  z = rng.normal(size=(3, 10)).astype(np.float32)
  z[0, 5] = -np.inf
  y = jnp.asarray([1, 2, 3])
  weights = jnp.asarray(rng.uniform(0.5, 2.0, 10), jnp.float32)

  def by_weights(impl):
    def fn(w):
      eps = jnp.float32(0.0)
      return LOSS(z, y, class_weights=w, label_smoothing=eps, implementation=impl)

    return jax.grad(fn)(weights)

  np.testing.assert_allclose(by_weights("pallas"), by_weights("xla"), rtol=1e-6)
  half = jnp.asarray(np.where(np.arange(10) == 0, 0.0, -20.0), jnp.float16)[None].repeat(2, 0)
  scaled = {
    impl: jax.grad(lambda z, impl=impl: 65536.0 * LOSS(z, y[:2], implementation=impl))(half)
    for impl in ("xla", "pallas")
  }
  assert scaled["pallas"].dtype == jnp.float16
  np.testing.assert_allclose(scaled["pallas"], scaled["xla"], rtol=1e-3)
  empty = jnp.zeros((0, 5), jnp.float32)
  value, grad = jax.value_and_grad(lambda z: LOSS(z, jnp.zeros(0, int), implementation="pallas"))(
    empty
  )
  assert value == 0 and grad.shape == (0, 5)
  plus = jnp.asarray([[0.0, np.inf, 1.0]], jnp.float32)
  assert LOSS(plus, jnp.asarray([0]), implementation="pallas") == np.inf
