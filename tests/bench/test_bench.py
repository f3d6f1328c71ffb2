"""Smoke tests of every benchmark suite at tiny sizes: shapes of the records, not speed."""

import json

import jax
import jax.numpy as jnp
import pytest

from xentax import bench, cli
from xentax.bench import _fused, _losses, _parallel

TINY = {
  "reference": (8, 64),
  "repeats": 1,
  "losses_grid": [(8, 16)],
  "losses_dtypes": ("float32",),
  "losses_target": [(8, 32)],
  "classes": (8, (16, 32)),
  "fused_time": [(16, 8, 64)],
  "fused_blocks": (32,),
  "fused_memory": (16, 8, (64, 128)),
  "parallel": (8, 64),
  "training_epochs": 1,
  "training_examples": 20,
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
  monkeypatch.setitem(bench.SIZES, "quick", TINY)
  out = tmp_path / "bench.json"
  assert cli.main(["bench", "--suite", "all", "--quick", "--out", str(out)]) == 0
  records = json.loads(out.read_text())
  suites = {"reference", "losses", "classes", "fused", "fused_memory", "training", "parallel"}
  assert {r["suite"] for r in records} == suites
  training = [r for r in records if r["suite"] == "training"]
  assert [r["params"]["batch_size"] for r in training] == [1, 1, 64]
  assert all(r["rates"]["steps_per_s"] > 0 for r in training)
  assert all(r["device"]["jax"] == jax.__version__ for r in records)
  fused = [r for r in records if r["suite"] == "fused"]
  assert fused[0]["ratio"] == 1.0 and fused[0]["baseline"] == "full logits (optax)"
  classes = [r for r in records if r["suite"] == "classes"]
  assert {r["params"]["classes"] for r in classes} == {16, 32}
  assert {r["params"]["mode"] for r in classes} == {"value_and_grad"}
  printed = capsys.readouterr().out
  for suite in ("losses", "classes", "fused", "training", "parallel"):
    assert f"### {suite}" in printed


def test_bench_record_sorts_a_suites_row():
  row = {"suite": "s", "implementation": "i", "median_s": 1.0, "gbps": 2.0, "jax": "v", "n": 3}
  record = bench.BenchRecord.from_dict(row)
  assert record.params == {"n": 3} and record.rates == {"gbps": 2.0}
  assert record.device == {"jax": "v"} and record.median_s == 1.0
  assert record.get("n") == 3 and record.get("gbps") == 2.0 and record.get("missing") is None


def test_a_new_suite_is_one_registry_entry(monkeypatch):
  def tiny(sizes, repeats):
    return [{"suite": "tiny", "implementation": "x", "median_s": 1e-3, "spread": 0.0}]

  monkeypatch.setitem(bench.SUITES, "tiny", bench.Suite("tiny", tiny, "a test suite"))
  monkeypatch.setitem(bench.SIZES, "quick", TINY)
  records = bench.run(["tiny"], quick=True)
  assert [r.suite for r in records] == ["reference", "reference", "tiny"]
  assert "### tiny" in bench.markdown(records)


def test_noisy_timings_are_remeasured_and_then_warned_about():
  calls = []

  class Noisy:
    def __call__(self):
      calls.append(1)
      import time

      time.sleep(0.02 if len(calls) % 4 == 3 else 0.0)  # every other timed call
      return jnp.zeros(())

  with pytest.warns(bench.BenchWarning, match="too noisy"):
    timings = bench.time_side_by_side({"noisy": Noisy()}, [()], repeats=4, max_spread=0.5)
  assert timings["noisy"].repeats == 8  # re-measured with twice the repeats


def test_unknown_suite_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown suite"):
    bench.run(["nope"], quick=True)


def test_bench_json_into_a_missing_folder_exits_2_before_running(tmp_path, capsys):
  assert cli.main(["bench", "--quick", "--out", str(tmp_path / "no" / "b.json")]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "does not exist" in err


def test_the_size_table_has_every_key_at_both_scales():
  for scale in ("quick", "full"):
    assert set(bench.SIZES[scale]) == set(TINY), scale
  target = bench.TARGETS["losses"]
  assert (target["batch"], target["classes"]) in bench.SIZES["quick"]["losses_target"]
  tokens, dim, vocabs = bench.SIZES["quick"]["fused_memory"]
  assert bench.TARGETS["fused_memory"]["vocab_size"] in vocabs
