"""The Pallas sparse cross-entropy kernels, run by Pallas's interpreter on the CPU.

The same kernels compile for NVIDIA GPUs; ``experiments/benchmarks/gpu_pallas_sparse.py`` runs
these comparisons compiled (the split-row gradient with several segments a row only there:
its programs wait on each other, which the one-at-a-time interpreter cannot run).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests import _reference
from xentax.losses import _pallas_sparse as ps

CONFIGS = {
  "split, one segment": {"segment": 8192},
  "two passes": {"segment": 0},
  "two passes, forward order": {"segment": 0, "reverse": False, "evict": False},
  "two passes, per-lane sums": {"segment": 0, "lanes": True},
}


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


@settings(deadline=None, max_examples=12)
@given(
  n=st.integers(1, 9),
  c=st.integers(1, 70),
  block_cols=st.sampled_from([8, 16, 64]),
  block_rows=st.sampled_from([1, 2]),
  config=st.sampled_from(sorted(CONFIGS)),
  reduction=st.sampled_from(["mean", "sum", "none"]),
  masking=st.sampled_from(["none", "ignore_index", "where"]),
  seed=st.integers(0, 2**16),
)
def test_matches_float64_reference(n, c, block_cols, block_rows, config, reduction, masking, seed):
  rng = np.random.default_rng(seed)
  z = (rng.normal(size=(n, c)) * 4).astype(np.float32)
  labels = rng.integers(0, c, n)
  where = None
  ignore_index = None
  kept = np.ones(n, bool)
  if masking == "ignore_index":
    ignore_index = -100
    labels[rng.random(n) < 0.3] = -100
    kept = labels != -100
  elif masking == "where":
    where = rng.random(n) > 0.3
    kept = where
  if reduction == "mean" and not kept.any():
    kept[0] = True
    labels[0] = 0
    where = None if where is None else kept
  weights = np.arange(1.0, n + 1) if reduction == "none" else np.ones(n)
  cfg = {**CONFIGS[config], "block_cols": block_cols, "block_rows": block_rows}

  def loss(z):
    out = ps.sparse_cross_entropy(
      z,
      jnp.asarray(labels, jnp.int32),
      reduction=reduction,
      where=None if where is None else jnp.asarray(where),
      ignore_index=ignore_index,
      config=cfg,
      interpret=True,
    )
    return jnp.sum(out * weights) if reduction == "none" else out

  value, grad = jax.value_and_grad(loss)(jnp.asarray(z))
  want = _reference.sparse_categorical_cross_entropy_with_logits(
    z, labels, ignore_index=ignore_index, where=where, reduction=reduction
  )
  want = np.sum(want * weights) if reduction == "none" else want
  np.testing.assert_allclose(value, want, rtol=2e-5, atol=1e-5)
  np.testing.assert_allclose(loss(jnp.asarray(z)), want, rtol=2e-5, atol=1e-5)
  want_grad = _grad_reference(z, labels, kept, reduction, weights)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_infinite_and_nan_logits(config):
  """-inf logits drop out of the log-sum-exp; a NaN in a row gives that row NaN."""
  z = np.array(
    [
      [-np.inf, 1.0, -np.inf, 2.0, 0.5, -np.inf, 3.0, -1.0, 0.0],
      [-np.inf] * 8 + [4.0],
      [0.1, np.nan, 0.3, 0.2, 0.0, 1.0, 2.0, 3.0, 4.0],
    ],
    np.float32,
  )
  labels = np.array([3, 8, 0])
  cfg = {**CONFIGS[config], "block_cols": 4}
  out = ps.sparse_cross_entropy(
    jnp.asarray(z), jnp.asarray(labels), reduction="none", config=cfg, interpret=True
  )
  want = _reference.sparse_categorical_cross_entropy_with_logits(
    np.nan_to_num(z, nan=0.0), labels, reduction="none"
  )
  np.testing.assert_allclose(out[:2], want[:2], rtol=1e-6)
  assert np.isnan(out[2])
  grad = jax.grad(
    lambda z: ps.sparse_cross_entropy(z, jnp.asarray(labels[:2]), config=cfg, interpret=True)
  )(jnp.asarray(z[:2]))
  want_grad = _grad_reference(z[:2], labels[:2], np.ones(2, bool), "mean", np.ones(2))
  np.testing.assert_allclose(grad, want_grad, atol=1e-7)


def test_bfloat16_logits_give_float32_loss_and_bfloat16_gradient():
  rng = np.random.default_rng(0)
  z = jnp.asarray(rng.normal(size=(4, 40)) * 3, jnp.bfloat16)
  labels = jnp.asarray(rng.integers(0, 40, 4), jnp.int32)
  value, grad = jax.value_and_grad(
    lambda z: ps.sparse_cross_entropy(z, labels, config={"block_cols": 16}, interpret=True)
  )(z)
  assert value.dtype == jnp.float32 and grad.dtype == jnp.bfloat16
  z64 = np.asarray(z.astype(jnp.float32), np.float64)
  want = _reference.sparse_categorical_cross_entropy_with_logits(z64, np.asarray(labels))
  np.testing.assert_allclose(value, want, rtol=1e-6)
  want_grad = _grad_reference(z64, np.asarray(labels), np.ones(4, bool), "mean", np.ones(4))
  np.testing.assert_allclose(np.asarray(grad, np.float64), want_grad, rtol=1e-2, atol=1e-4)


def test_split_gradient_refuses_waiting_programs_in_the_interpreter():
  z = jnp.zeros((2, 64), jnp.float32)
  with pytest.raises(ValueError, match="segment >= C or segment=0"):
    ps.split_gradient(z, jnp.zeros(2, jnp.int32), jnp.ones(2), segment=16, interpret=True)


@pytest.mark.parametrize(
  ("z_shape", "y_shape", "reduction", "match"),
  [
    ((3, 4, 5), (3,), "mean", "logits must be"),
    ((3, 4), (4,), "mean", "labels must be"),
    ((3, 4), (3,), "avg", "reduction must be"),
  ],
)
def test_bad_arguments(z_shape, y_shape, reduction, match):
  with pytest.raises(ValueError, match=match):
    ps.sparse_cross_entropy(
      jnp.zeros(z_shape), jnp.zeros(y_shape, jnp.int32), reduction=reduction, interpret=True
    )


@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_dropped_rows_holding_nan_or_inf_give_zero_loss_and_gradient(config):
  z = np.random.default_rng(0).normal(size=(4, 6)).astype(np.float32)
  z[1] = np.nan
  z[2] = -np.inf
  labels = np.array([1, -100, 3, 0])
  where = np.array([True, True, False, True])
  cfg = {**CONFIGS[config], "block_cols": 4}

  def loss(z):
    return ps.sparse_cross_entropy(
      z, jnp.asarray(labels), where=where, ignore_index=-100, config=cfg, interpret=True
    )

  value, grad = jax.value_and_grad(loss)(jnp.asarray(z))
  kept = np.array([True, False, False, True])
  clean = np.where(kept[:, None], z, 0.0)
  want = _reference.sparse_categorical_cross_entropy_with_logits(
    clean, np.where(kept, labels, 0), where=kept
  )
  np.testing.assert_allclose(value, want, rtol=1e-6)
  want_grad = _grad_reference(clean, np.where(kept, labels, 0), kept, "mean", np.ones(4))
  np.testing.assert_allclose(grad, want_grad, atol=1e-7)


def test_all_rows_dropped_or_no_rows_give_zero():
  z = jnp.ones((3, 5), jnp.float32)
  value, grad = jax.value_and_grad(
    lambda z: ps.sparse_cross_entropy(z, jnp.zeros(3, jnp.int32), where=False, interpret=True)
  )(z)
  assert value == 0 and np.all(np.asarray(grad) == 0)
  empty = jnp.zeros((0, 5), jnp.float32)
  for reduction, shape in (("mean", ()), ("sum", ()), ("none", (0,))):
    out = ps.sparse_cross_entropy(empty, jnp.zeros(0, jnp.int32), reduction=reduction)
    assert out.shape == shape and np.all(np.asarray(out) == 0)
  grad = jax.grad(lambda z: ps.sparse_cross_entropy(z, jnp.zeros(0, jnp.int32)))(empty)
  assert grad.shape == (0, 5)


def test_a_scalar_where_broadcasts_and_a_label_outside_the_classes_is_nan():
  z = jnp.asarray(np.random.default_rng(1).normal(size=(4, 6)), jnp.float32)
  labels = jnp.asarray([1, 2, 3, 4], jnp.int32)
  every = ps.sparse_cross_entropy(z, labels, where=True, interpret=True)
  np.testing.assert_allclose(every, ps.sparse_cross_entropy(z, labels, interpret=True))
  bad = jnp.asarray([1, 6, 3, -1], jnp.int32)
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 6\)"):  # concrete: an error
    ps.sparse_cross_entropy(z, bad, interpret=True)
  rows = jax.jit(lambda z, y: ps.sparse_cross_entropy(z, y, reduction="none", interpret=True))
  rows = np.asarray(rows(z, bad))
  assert np.isnan(rows[1]) and np.isnan(rows[3]) and np.all(np.isfinite(rows[[0, 2]]))
  value, grad = jax.jit(
    jax.value_and_grad(lambda z, y: ps.sparse_cross_entropy(z, y, interpret=True))
  )(z, bad)
  assert np.isnan(value) and np.isnan(grad).any()
  with pytest.raises(TypeError, match="where must be a boolean mask"):
    ps.sparse_cross_entropy(z, labels, where=jnp.ones(4), interpret=True)
  with pytest.raises(TypeError, match="labels must be integer class indices"):
    ps.sparse_cross_entropy(z, labels.astype(jnp.float32), interpret=True)
