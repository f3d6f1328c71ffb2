"""The large-vocabulary report section and the fused benchmark helpers it uses."""

import jax.numpy as jnp

from xentax.bench import _fused


def test_memory_sweep_shows_fused_flat_and_full_growing():
  records = _fused.memory_sweep(256, 32, [4096, 16384], block_sizes=[512])
  by = {(r["implementation"], r["vocab_size"]): r["temp_bytes"] for r in records}
  assert by[("full logits (optax)", 16384)] >= 256 * 16384 * 4
  assert by[("fused (block 512)", 16384)] <= 1.1 * by[("fused (block 512)", 4096)]
  assert by[("fused (block 512)", 16384)] < by[("full logits (optax)", 16384)] / 4


def test_time_comparison_records_have_ratios_to_the_baseline():
  records = _fused.time_comparison(64, 16, 1024, block_sizes=[256], repeats=2)
  names = [r["implementation"] for r in records]
  assert names == ["full logits (optax)", "fused (auto block)", "fused (block 256)"]
  assert records[0]["ratio_to_full"] == 1.0
  assert all(r["median_s"] > 0 and r["temp_bytes"] is not None for r in records)
  assert all(r["dtype"] == jnp.dtype(jnp.float32).name for r in records)
