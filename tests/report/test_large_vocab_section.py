"""The large-vocabulary report section renders fused-suite records and the experiment."""

import jax.numpy as jnp
import pytest

from xentax import bench, experiments
from xentax.bench import _fused
from xentax.report import _large_vocab_section

pytestmark = pytest.mark.slow  # builds a report section


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


def _run(name, temp, loss_temp, seconds):
  return experiments.RunRecord(
    run=name,
    model="next_word_mlp",
    dataset="synthetic",
    loss=name,
    optimizer="adam",
    epochs=0,
    test_accuracy=0.1,
    test_loss=4.7,
    curves="large_vocab/loss_curves.png",
    extra={
      "final_train_loss": 4.5,
      "temp_bytes": temp,
      "loss_temp_bytes": loss_temp,
      "median_step_s": seconds,
      "step_spread": 0.1,
    },
  )


def test_render_tabulates_memory_timing_and_both_runs():
  result = experiments.ExperimentResult(
    "large_vocab",
    "full",
    [_run("fused", 250_000, 16_900_000, 0.15), _run("full", 134_200_000, 134_200_000, 0.3)],
    info={
      "vocab_size": 32768,
      "batch_size": 512,
      "steps": 40,
      "block_size": 4096,
      "data": "synthetic tokens",
      "logits_bytes": 512 * 32768 * 4,
      "test_tokens": 2048,
      "unigram_test_loss": 5.5,
      "max_abs_loss_diff": 9.5e-7,
      "step_time_ratio": 0.5,
    },
    figures={"loss_curves": "large_vocab/loss_curves.png"},
  )
  shape = {"num_tokens": 8192, "dim": 4096}
  records = [
    bench.BenchRecord("fused_memory", name, {**shape, "vocab_size": v}, temp_bytes=mb * 10**6)
    for name, v, mb in [
      ("full logits (optax)", 131072, 12885),
      ("fused (auto block)", 131072, 300),
      ("full logits (optax)", 32768, 3221),
      ("fused (auto block)", 32768, 290),
    ]
  ]
  records.append(
    bench.BenchRecord(
      "fused",
      "fused (auto block)",
      {"num_tokens": 1024, "dim": 256, "vocab_size": 8192},
      median_s=0.02,
      spread=0.1,
      ratio=1.2,
      temp_bytes=10**6,
      rates={"useful_gflops": 3.0},
    )
  )
  text = _large_vocab_section.render(records, result)
  assert "| full logits (optax) | 3221 | 12885 |" in text
  assert "| fused (auto block) | 290 | 300 |" in text
  assert "fused temporaries <= 512 MB: 300 MB, **met**" in text
  assert "| fused (auto block) | 1024 x 256 x 8192 | 0.020 | 10% | 1.20 | 3.0 | 1 |" in text
  assert "| train-step temporaries (MB) | 0.2 | 134.2 |" in text
  assert "| loss value-and-grad temporaries (MB) | 16.9 | 134.2 |" in text
  assert "| median step time (s) | 0.150 | 0.300 |" in text
  assert "max |fused - full| over the 40 steps = 9.5e-07" in text
  assert "Step time fused / full = 0.50" in text
  assert "= 67 MB" in text and "V = 32768" in text
  assert "![fused vs full-logits loss curves](training/large_vocab/loss_curves.png)" in text
