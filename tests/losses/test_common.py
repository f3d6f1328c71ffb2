"""Shared loss machinery (``xentax.losses._common``) against float64 NumPy."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from tests._tolerances import tol
from xentax.losses import _common, _reduce, _rows, _validate

# ---------------------------------------------------------------- dtypes


@pytest.mark.parametrize(
  ("dtype", "want"),
  [
    (jnp.float64, jnp.float64),
    (jnp.float32, jnp.float32),
    (jnp.bfloat16, jnp.float32),
    (jnp.float16, jnp.float32),
    (jnp.int32, jnp.float32),
  ],
)
def test_compute_dtype(dtype, want):
  assert _common.compute_dtype(jnp.zeros(2, dtype)) == want


def test_is_static_zero():
  assert _common.is_static_zero(0) and _common.is_static_zero(0.0)
  assert not _common.is_static_zero(1e-3)
  # Arrays (and traced values) are not static: changing them must not recompile.
  assert not _common.is_static_zero(jnp.zeros(()))
  assert not _common.is_static_zero(np.zeros(()))
  seen = []
  jax.jit(lambda x: seen.append(_common.is_static_zero(x)) or x)(0.0)
  assert seen == [False]


# ---------------------------------------------------------------- reduce_losses


def _np_reduce(losses, valid, denominator, reduction):
  kept = np.where(valid, losses, 0.0)
  if reduction == "none":
    return kept
  if reduction == "sum":
    return kept.sum()
  d = valid.sum() if denominator is None else np.where(valid, denominator, 0.0).sum()
  return kept.sum() / d if d else 0.0


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_reduce_losses_matches_numpy(reduction, weighted):
  rng = np.random.default_rng(0)
  losses = rng.uniform(0, 3, size=(4, 3))
  valid = rng.uniform(size=(4, 3)) > 0.3
  denominator = rng.uniform(0.5, 2, size=(4, 3)) if weighted else None
  got = _reduce.reduce_losses(
    jnp.asarray(losses), valid=jnp.asarray(valid), denominator=denominator, reduction=reduction
  )
  np.testing.assert_allclose(got, _np_reduce(losses, valid, denominator, reduction), rtol=1e-12)


def _np_weighted_reduce(losses, valid, denominator, sample_weight, reduction):
  """Written from the docstring's formulas, one example at a time."""
  numerator, denom, count = 0.0, 0.0, 0
  out = np.zeros_like(losses)
  for n in np.ndindex(losses.shape):
    if not valid[n]:
      continue
    s = sample_weight[n]
    out[n] = 0.0 if s == 0 else s * losses[n]
    numerator += out[n]
    denom += s * (1.0 if denominator is None else denominator[n])
    count += 1
  if reduction == "none":
    return out
  if reduction == "sum":
    return numerator
  d = count if reduction == "sum_over_batch_size" else denom
  return numerator / d if d else 0.0


@pytest.mark.parametrize("reduction", _reduce.REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_reduce_losses_with_sample_weights_matches_numpy(reduction, weighted):
  rng = np.random.default_rng(2)
  losses = rng.uniform(0, 3, size=(5, 3))
  losses[0, 0] = np.inf  # a zero weight drops it
  valid = rng.uniform(size=(5, 3)) > 0.3
  sample_weight = rng.uniform(0, 2, size=(5, 3))
  sample_weight[0, 0] = 0.0
  denominator = rng.uniform(0.5, 2, size=(5, 3)) if weighted else None
  got = _reduce.reduce_losses(
    jnp.asarray(losses),
    valid=jnp.asarray(valid),
    denominator=denominator,
    sample_weight=jnp.asarray(sample_weight),
    reduction=reduction,
  )
  want = _np_weighted_reduce(losses, valid, denominator, sample_weight, reduction)
  np.testing.assert_allclose(got, want, rtol=1e-12)


def test_reduce_losses_sample_weight_gradient_matches_finite_differences():
  rng = np.random.default_rng(3)
  losses = jnp.asarray(rng.uniform(0, 3, size=6))
  valid = jnp.asarray([True, True, False, True, True, True])
  w = jnp.asarray(rng.uniform(0.5, 2, size=6))
  for reduction in ("sum", "mean", "sum_over_batch_size"):
    f = functools.partial(_weighted_total, losses=losses, valid=valid, reduction=reduction)
    grad = jax.grad(f)(w)
    h = 1e-6
    for i in range(6):
      e = jnp.zeros(6).at[i].set(h)
      fd = (f(w + e) - f(w - e)) / (2 * h)
      np.testing.assert_allclose(grad[i], fd, atol=1e-7)


def _weighted_total(w, *, losses, valid, reduction):
  return _reduce.reduce_losses(losses, valid=valid, sample_weight=w, reduction=reduction)


def test_sample_weights_validation():
  from xentax.losses import _validate

  f64 = jnp.float64
  w = _validate.sample_weights("f", [1.0, 2.0], (3, 2), f64)
  np.testing.assert_array_equal(w, [[1.0, 2.0]] * 3)
  assert _validate.sample_weights("f", None, (3,), f64) is None
  with pytest.raises(ValueError, match=r"f: sample_weight must be finite and >= 0; found -1"):
    _validate.sample_weights("f", np.array([1.0, -1.0]), (2,), f64)
  with pytest.raises(ValueError, match=r"f: sample_weight has shape \(3,\).*per-example shape"):
    _validate.sample_weights("f", np.ones(3), (2,), f64)
  with pytest.raises(TypeError, match="f: sample_weight"):
    _validate.sample_weights("f", "heavy", (2,), f64)
  # Traced: a bad weight becomes NaN for that example only.
  traced = jax.jit(lambda v: _validate.sample_weights("f", v, (3,), f64))
  np.testing.assert_array_equal(np.isnan(traced(jnp.array([1.0, -2.0, jnp.inf]))), [0, 1, 1])


def test_reduce_losses_dropped_nan_does_not_leak_into_value_or_gradient():
  losses = jnp.array([1.0, jnp.nan, jnp.inf, 2.0])
  valid = jnp.array([True, False, False, True])
  for reduction in ("sum", "mean"):
    value, grad = jax.value_and_grad(
      lambda x, r=reduction: _reduce.reduce_losses(x, valid=valid, reduction=r)
    )(losses)
    assert float(value) == (3.0 if reduction == "sum" else 1.5)
    kept_grad = 1.0 if reduction == "sum" else 0.5
    np.testing.assert_array_equal(grad, [kept_grad, 0, 0, kept_grad])


def test_reduce_losses_mean_of_nothing_is_zero_with_zero_gradient():
  losses = jnp.array([1.0, 2.0])
  valid = jnp.zeros(2, bool)
  value, grad = jax.value_and_grad(
    lambda x: _reduce.reduce_losses(x, valid=valid, denominator=x, reduction="mean")
  )(losses)
  assert float(value) == 0.0
  np.testing.assert_array_equal(grad, [0.0, 0.0])


def test_reduce_losses_zero_weight_mean_is_zero_not_nan():
  got = _reduce.reduce_losses(
    jnp.array([1.0, 2.0]),
    valid=jnp.array([True, True]),
    denominator=jnp.zeros(2),
    reduction="mean",
  )
  assert float(got) == 0.0


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_reduce_losses_over_a_sharded_batch_is_global(reduction):
  rng = np.random.default_rng(1)
  losses = rng.uniform(size=8)
  valid = np.array([True, False, True, True, False, True, True, True])
  weights = rng.uniform(0.5, 2, size=8)
  # Auto axes: shard_map places the plain inputs itself.
  mesh = jax.make_mesh((4,), ("batch",), axis_types=(jax.sharding.AxisType.Auto,))
  reduce = jax.shard_map(
    functools.partial(_reduce_sharded, reduction=reduction),
    mesh=mesh,
    in_specs=(P("batch"), P("batch"), P("batch")),
    out_specs=P(),
  )
  got = reduce(jnp.asarray(losses), jnp.asarray(valid), jnp.asarray(weights))
  np.testing.assert_allclose(got, _np_reduce(losses, valid, weights, reduction), rtol=1e-12)


def _reduce_sharded(losses, valid, weights, *, reduction):
  return _reduce.reduce_losses(
    losses, valid=valid, denominator=weights, reduction=reduction, axis_name="batch"
  )


def test_check_reduction_names_the_choices():
  with pytest.raises(ValueError, match=r"f: reduction='avg' is not supported.*'mean'"):
    _reduce.check_reduction("f", "avg")


# ---------------------------------------------------------------- logsumexp


def _np_logsumexp(x):
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.logaddexp.reduce(x, axis=-1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logsumexp_matches_numpy(dtype):
  x = np.random.default_rng(2).normal(size=(5, 7)) * 30
  x[0] += 1000.0  # would overflow exp without the max shift
  x[1] -= 1000.0  # would underflow
  got = _rows.logsumexp(jnp.asarray(x, dtype))
  assert got.dtype == dtype
  np.testing.assert_allclose(got, _np_logsumexp(x.astype(dtype).astype(np.float64)), **tol(dtype))


def test_logsumexp_other_axis():
  x = np.random.default_rng(3).normal(size=(3, 4, 2))
  np.testing.assert_allclose(
    _rows.logsumexp(jnp.asarray(x), axis=1),
    _np_logsumexp(np.moveaxis(x, 1, -1)),
    rtol=1e-12,
  )


def test_logsumexp_edge_rows():
  inf, nan = np.inf, np.nan
  x = jnp.array(
    [
      [-inf, -inf, -inf],  # empty row: -inf, not NaN
      [-inf, 0.0, -inf],  # one finite entry
      [1.0, inf, 0.0],  # +inf dominates
      [1.0, nan, 0.0],  # NaN stays NaN
      [nan, -inf, -inf],
    ]
  )
  got = np.asarray(_rows.logsumexp(x))
  assert got[0] == -inf
  assert got[1] == 0.0
  assert got[2] == inf
  assert np.isnan(got[3]) and np.isnan(got[4])


def test_logsumexp_gradient_is_softmax_and_zero_on_empty_rows():
  x = np.array([[1.0, 2.0, -jnp.inf], [-jnp.inf, -jnp.inf, -jnp.inf]])

  def finite_total(v):
    lse = _rows.logsumexp(v)
    return jnp.sum(jnp.where(jnp.isfinite(lse), lse, 0.0))

  grad = jax.grad(finite_total)(jnp.asarray(x))
  softmax = np.exp(x[0] - _np_logsumexp(x[0]))
  np.testing.assert_allclose(grad[0], softmax, rtol=1e-12)
  np.testing.assert_array_equal(grad[1], np.zeros(3))


# ---------------------------------------------------------------- clamped logs


def test_clamped_log_and_log1m_match_numpy():
  p = np.array([0.0, 1e-50, 1e-10, 0.3, 0.999999, 1.0])
  with np.errstate(divide="ignore"):
    want_log = np.maximum(np.log(p), -100.0)
    want_log1m = np.maximum(np.log1p(-p), -100.0)
  np.testing.assert_allclose(_common.clamped_log(jnp.asarray(p)), want_log, rtol=1e-12)
  np.testing.assert_allclose(_common.clamped_log1m(jnp.asarray(p)), want_log1m, rtol=1e-12)


def test_clamped_logs_keep_nan_and_have_finite_gradients():
  assert np.isnan(_common.clamped_log(jnp.array(jnp.nan)))
  assert np.isnan(_common.clamped_log1m(jnp.array(jnp.nan)))
  # At the clamp the gradient is 0 (not inf * 0 = NaN); elsewhere 1 / p and -1 / (1 - p).
  d_log = jax.vmap(jax.grad(_common.clamped_log))(jnp.array([0.0, 0.25]))
  d_log1m = jax.vmap(jax.grad(_common.clamped_log1m))(jnp.array([1.0, 0.25]))
  np.testing.assert_allclose(d_log, [0.0, 4.0], rtol=1e-12)
  np.testing.assert_allclose(d_log1m, [0.0, -1 / 0.75], rtol=1e-12)


# ---------------------------------------------------------------- safe_mul


def test_safe_mul_value_and_gradient():
  coef = jnp.array([0.0, 0.0, 2.0, 0.5])
  x = jnp.array([jnp.inf, 3.0, 4.0, -jnp.inf])
  np.testing.assert_array_equal(_common.safe_mul(coef, x), [0.0, 0.0, 8.0, -jnp.inf])
  d_coef, d_x = jax.grad(lambda c, v: jnp.sum(_common.safe_mul(c, v)), argnums=(0, 1))(coef, x)
  # d / d coef is x where x is finite (exact, also at coef = 0); the 0 * inf entry gives 0.
  np.testing.assert_array_equal(d_coef[1:3], [3.0, 4.0])
  assert d_coef[0] == 0.0
  np.testing.assert_array_equal(d_x, [0.0, 0.0, 2.0, 0.5])


# ---------------------------------------------------------------- value checks


def test_check_values_concrete_raises_with_position_and_count():
  values = np.array([[0.1, 2.0], [-1.0, 0.5]])
  bad = (values < 0) | (values > 1)
  with pytest.raises(ValueError, match=r"f: x bad; found 2.0 at position \(0, 1\) \(2 bad entries"):
    _validate.check_values("f", "x bad", values, bad)
  _validate.check_values("f", "x bad", values, np.zeros_like(bad))  # nothing flagged: no error


def test_check_values_traced_does_not_raise():
  v = jnp.array([2.0])
  with pytest.raises(ValueError, match="x bad"):  # the same value, concrete, is flagged
    _validate.check_values("f", "x bad", v, v > 1)
  out = jax.jit(lambda v: (_validate.check_values("f", "x bad", v, v > 1), v))(v)
  assert out[0] is None
  np.testing.assert_array_equal(out[1], v)


def test_check_probabilities_flags_kept_entries_and_reports_the_input_layout():
  p = np.array([[0.2, 0.8], [1.5, -0.5], [0.3, 0.7]])
  valid = np.array([True, False, True])
  bad = _validate.check_probabilities("f", jnp.asarray(p), jnp.asarray(valid), axis=-1)
  np.testing.assert_array_equal(bad, np.zeros((3, 2), bool))  # the bad row is dropped
  p[2, 1] = 1.2
  # Class axis last here; the caller's axis is 0, so the position is (class, example).
  message = r"f: probs must lie in \[0, 1\]; found 1.2 at position \(1, 2\)"
  with pytest.raises(ValueError, match=message):
    _validate.check_probabilities("f", jnp.asarray(p), jnp.asarray(valid), axis=0)
  traced = jax.jit(lambda q: _validate.check_probabilities("f", q, jnp.asarray(valid), -1))(p)
  np.testing.assert_array_equal(traced, [[False, False], [False, False], [False, True]])
  nan_row = jax.jit(lambda q: _validate.check_probabilities("f", q, jnp.ones(1, bool), -1))(
    jnp.array([[jnp.nan, 0.5]])
  )
  assert not nan_row.any()  # NaN is left to propagate, not flagged


def test_nan_where():
  out = _common.nan_where(jnp.array([True, False]), jnp.float32)
  assert out.dtype == jnp.float32
  assert np.isnan(out[0]) and out[1] == 0.0


# ---------------------------------------------------------------- shapes and masks


def test_broadcast_mask():
  np.testing.assert_array_equal(_validate.broadcast_mask("f", None, (2,)), [True, True])
  np.testing.assert_array_equal(
    _validate.broadcast_mask("f", np.array([True, False]), (3, 2)), [[True, False]] * 3
  )
  with pytest.raises(TypeError, match="f: where must be a boolean mask"):
    _validate.broadcast_mask("f", np.array([1, 0]), (2,))
  with pytest.raises(ValueError, match=r"f: where has shape \(3,\).*\(2,\)"):
    _validate.broadcast_mask("f", np.ones(3, bool), (2,))


def test_normalize_axis_and_example_shape():
  assert _validate.normalize_axis("f", -1, 3) == 2
  with pytest.raises(ValueError, match="axis=3 is out of range"):
    _validate.normalize_axis("f", 3, 3)
  with pytest.raises(ValueError, match="must have a class axis"):
    _validate.normalize_axis("f", 0, 0)
  assert _validate.check_example_shape("f", (2, 5, 3), 1, np.zeros((2, 3))) == (2, 3)
  message = r"labels have shape \(2, 5\).*need labels of shape \(2, 3\)"
  with pytest.raises(ValueError, match=message):
    _validate.check_example_shape("f", (2, 5, 3), 1, np.zeros((2, 5)))


def test_class_weight_vector_and_sum():
  w = _validate.class_weight_vector("f", [1, 2, 3], 3, jnp.float32)
  assert w.dtype == jnp.float32
  with pytest.raises(ValueError, match=r"class_weights has shape \(2,\); it must be \(3,\)"):
    _validate.class_weight_vector("f", [1.0, 2.0], 3, jnp.float32)
  assert float(_common.class_weight_sum(None, 7, jnp.float32)) == 7.0
  assert float(_common.class_weight_sum(w, 3, jnp.float32)) == 6.0


def test_row_pieces_split_long_rows_on_the_cpu_only():
  on_cpu = jax.default_backend() == "cpu"
  assert _rows.row_pieces(32768) == 1
  assert _rows.row_pieces(65536) == (2 if on_cpu else 1)
  assert _rows.row_pieces(131072) == (4 if on_cpu else 1)
  assert _rows.row_pieces(3 * 16384) == (2 if on_cpu else 1)
  assert _rows.row_pieces(32771) == 1  # a prime: no equal pieces, one long row


@pytest.mark.parametrize("pieces", [1, 2, 4])
def test_row_reduce_of_split_rows_is_the_row_reduction(pieces):
  x = np.random.default_rng(0).normal(size=(3, 2, 16))
  split = _rows.split_rows(jnp.asarray(x), pieces)
  assert split.shape == ((3, 2, 16) if pieces == 1 else (3, 2, pieces, 16 // pieces))
  np.testing.assert_allclose(_rows.row_reduce(split, pieces), x.sum(-1), **tol("float64"))
  np.testing.assert_array_equal(_rows.row_reduce(split, pieces, jnp.max), x.max(-1))
  assert _rows.split_rows(None, pieces) is None
