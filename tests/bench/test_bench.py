"""Smoke tests of every benchmark suite at tiny sizes: shapes of the records, not speed."""

import json

import jax
import jax.numpy as jnp
import pytest

from xentax import cli
from xentax.bench import _fused, _losses, _parallel, _run

TINY = {
  "losses_grid": [(8, 16)],
  "losses_dtypes": [jnp.float32],
  "losses_target": [(8, 32)],
  "fused_time": [(16, 8, 64)],
  "fused_blocks": (32,),
  "fused_memory": (16, 8, (64, 128)),
  "parallel": (8, 64),
  "training_epochs": 1,
  "training_examples": 20,
  "repeats": 1,
  "reference": (8, 64),
}


def test_losses_suite_covers_every_loss_in_both_modes():
  records = _losses.run([(8, 16)], [jnp.float32, jnp.bfloat16], repeats=1)
  assert {r["loss"] for r in records} == set(_losses.LOSSES)
  assert {r["mode"] for r in records} == {"forward", "value_and_grad"}
  for r in records:
    assert r["median_s"] > 0 and r["gbps"] > 0 and r["temp_bytes"] is not None
    assert r["baseline"] == next(iter(_losses.LOSSES[r["loss"]][1]))
  baselines = [r for r in records if r["implementation"] == r["baseline"]]
  assert all(r["ratio"] == 1.0 for r in baselines)


def test_losses_suite_implementations_agree_on_the_value():
  for name, (kind, impls) in _losses.LOSSES.items():
    args = _losses.make_inputs(kind, 6, 5, jnp.float32, copies=1)[0]
    values = {impl: float(fn(*args)) for impl, fn in impls.items() if "smoothing" not in impl}
    first = next(iter(values.values()))
    for impl, value in values.items():
      assert value == pytest.approx(first, rel=1e-4), (name, impl)


def test_fused_and_parallel_suites():
  records = _fused.time_comparison(16, 8, 64, block_sizes=[32], repeats=1)
  assert [r["implementation"] for r in records][0] == "full logits (optax)"
  assert all(r["useful_gflops"] > 0 for r in records)
  records = _parallel.run(8, 8 * jax.device_count(), repeats=1)
  assert [r["devices"] for r in records] == [1, jax.device_count()]


def test_bench_command_writes_json_and_tables(tmp_path, monkeypatch, capsys):
  monkeypatch.setitem(_run.CONFIG, True, TINY)
  out = tmp_path / "bench.json"
  assert cli.main(["bench", "--suite", "all", "--quick", "--out", str(out)]) == 0
  records = json.loads(out.read_text())
  suites = {"reference", "losses", "fused", "fused_memory", "training", "parallel"}
  assert {r["suite"] for r in records} == suites
  training = [r for r in records if r["suite"] == "training"]
  assert [r["batch_size"] for r in training] == [1, 1, 64]
  assert all(r["steps_per_s"] > 0 for r in training)
  assert all(r["jax"] == jax.__version__ for r in records if "jax" in r)
  printed = capsys.readouterr().out
  for suite in ("losses", "fused", "training", "parallel"):
    assert f"### {suite}" in printed


def test_unknown_suite_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown suite"):
    _run.run(["nope"], quick=True)
