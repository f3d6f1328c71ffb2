"""The ``fused`` suite (``xentax.bench._fused``) at tiny sizes: records, not speed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xentax.bench import _fused

pytestmark = pytest.mark.slow  # runs the fused bench suite


def test_time_comparison_records():
  records = _fused.time_comparison(16, 8, 64, block_sizes=[32, 128], repeats=1)
  names = [r["implementation"] for r in records]
  assert names[0] == "full logits (optax)"
  assert "fused (block 32)" in names and "fused (block 128)" not in names  # 128 > V
  assert records[0]["ratio_to_full"] == 1.0
  assert all(r["useful_gflops"] > 0 for r in records)


def test_implementations_agree_on_loss_and_gradients():
  hidden, weight, labels = _fused.random_inputs(16, 8, 64, copies=1)[0]
  impls = _fused.implementations([32], tokens=True)
  assert list(impls)[0] == "full logits (optax)" and "fused tokens (auto chunk)" in impls
  grad = jax.value_and_grad(_fused.full_logits_loss, argnums=(0, 1))
  want_value, want_grads = grad(hidden, weight, labels)
  for name, fn in impls.items():
    if "all options" in name:
      continue
    value, grads = jax.value_and_grad(fn, argnums=(0, 1))(hidden, weight, labels)
    np.testing.assert_allclose(value, want_value, rtol=1e-5, err_msg=name)
    for got, want in zip(grads, want_grads, strict=True):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6, err_msg=name)


def test_memory_sweep_compiles_without_running():
  records = _fused.memory_sweep(16, 8, (64, 128), block_sizes=(32,), dtype=jnp.float32)
  assert {r["vocab_size"] for r in records} == {64, 128}
  assert all(r["temp_bytes"] is not None and r["compile_s"] > 0 for r in records)
  assert {r["dtype"] for r in records} == {"float32"}


def test_all_options_rows_agree_across_schedules():
  hidden, weight, labels = _fused.random_inputs(16, 8, 64, copies=1)[0]
  impls = _fused.implementations([], tokens=True)
  tokens = jax.value_and_grad(impls["fused tokens (all options)"], argnums=(0, 1))
  vocab = jax.value_and_grad(impls["fused vocab (all options)"], argnums=(0, 1))
  (v1, g1), (v2, g2) = tokens(hidden, weight, labels), vocab(hidden, weight, labels)
  np.testing.assert_allclose(v1, v2, rtol=1e-5)
  for a, b in zip(g1, g2, strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_memory_grid_compares_the_defaults_with_full_logits():
  rows = _fused.memory_grid([(8, 4, 16)])
  assert [r["mode"] for r in rows] == ["forward", "value_and_grad"]
  for r in rows:
    assert r["over_baseline_bytes"] == r["temp_bytes"] - r["baseline_temp_bytes"]
    assert r["baseline"] == "full logits (xentax sparse)"
