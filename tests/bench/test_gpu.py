"""The gpu suite on CPU at tiny sizes: records, counts, guards; not speed."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import xentax
from xentax import cli
from xentax.bench import _gpu, _run

pytestmark = pytest.mark.slow  # runs the GPU bench suite on the CPU

TINY = {
  "matmul": (32, 16, 24),
  "copy": (16, 64),
  "fused": [(16, 8, 64), (8, 8, 32)],
  "fused_dtype": "bfloat16",
  "sparse": (8, 64),
  "sparse_dtypes": ("bfloat16", "float32"),
  "repeats": 1,
  "budget_s": 60.0,
  "full_logits_max_fraction": 0.4,
}


@pytest.fixture
def tiny(monkeypatch):
  monkeypatch.setitem(_gpu.CONFIG, True, TINY)


def _by_kind(records, kind):
  return [r for r in records if r.get("kind") == kind]


def test_quick_command_writes_every_figure(tiny, tmp_path, capsys):
  out = tmp_path / "gpu.json"
  argv = ["bench", "--suite", "gpu", "--device", "cpu", "--quick", "--out", str(out)]
  assert cli.main(argv) == 0
  records = json.loads(out.read_text())
  header = records[0]
  assert header["kind"] == "run" and header["status"] == "complete"
  assert header["jax"] == jax.__version__ and header["device_kind"] == jax.devices()[0].device_kind
  bad = [r for r in records[1:] if r["status"] != "ok"]
  assert not bad, bad

  reference = _by_kind(records, "reference")
  assert len([r for r in reference if "tflops" in r]) == 2
  assert len([r for r in reference if "gbps" in r]) == 1
  assert all(r["median_s"] > 0 and r.get("tflops", r.get("gbps")) > 0 for r in reference)

  fused = _by_kind(records, "fused")
  shapes = {(r["num_tokens"], r["dim"], r["vocab_size"]) for r in fused}
  assert shapes == set(TINY["fused"])
  for r in fused:
    for key in ("median_s", "tflops", "useful_tflops", "pct_of_matmul_rate", "ratio_to_full"):
      assert r[key] > 0, key
    assert r["grad_bound_bytes"] == r["num_tokens"] * r["dim"] * 2 + r["dim"] * r["vocab_size"] * 2
    assert r["temp_bytes"] is not None
  full = [r for r in fused if r["implementation"] == "full logits (optax)"]
  assert [r["matmuls"] for r in full] == [3.0, 3.0]
  assert all(r["ratio_to_full"] == 1.0 for r in full)

  sparse = _by_kind(records, "sparse")
  assert {(r["dtype"], r["mode"], r["implementation"]) for r in sparse} == {
    (d, m, i)
    for d in ("bfloat16", "float32")
    for m in ("forward", "value_and_grad")
    for i in ("xentax", "optax")
  }
  for r in sparse:
    assert r["gbps"] > 0 and r["pct_of_copy"] > 0 and r["ratio_to_optax"] > 0
    assert r["bytes_moved"] == (1 if r["mode"] == "forward" else 2) * 8 * 64 * (
      2 if r["dtype"] == "bfloat16" else 4
    )

  (summary,) = _by_kind(records, "summary")
  assert summary["fused_pct_of_matmul"] > 0
  assert summary["sparse_forward_float32_pct_of_copy"] > 0
  markdown = (tmp_path / "gpu.md").read_text()
  printed = capsys.readouterr().out
  for text in (markdown, printed):
    assert "% of matmul rate" in text and "% of copy" in text and "Summary" in text


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_matmul_flops_counts_what_each_loss_executes(dtype):
  n, d, v = 16, 8, 64
  hidden, weight, labels = _gpu.fused_inputs(n, d, v, dtype, seed=0)
  one = 2 * n * d * v

  def fused(h, w, y):
    return xentax.fused_linear_cross_entropy(h, w, y, block_size=16)

  grad = jax.value_and_grad(fused, argnums=(0, 1))
  full = jax.value_and_grad(_gpu._full_logits, argnums=(0, 1))
  assert _gpu.matmul_flops(full, hidden, weight, labels) == (3 * one, True)
  # The vocabulary-blocked schedule recomputes each block's logits in the backward pass.
  assert _gpu.matmul_flops(grad, hidden, weight, labels) == (4 * one, True)
  assert _gpu.matmul_flops(fused, hidden, weight, labels) == (one, True)


def test_matmul_flops_counts_loop_trip_counts_and_flags_while_loops():
  a = jnp.ones((4, 5), jnp.float32)
  b = jnp.ones((5, 6), jnp.float32)

  def scanned(a, b):
    return jax.lax.fori_loop(0, 7, lambda i, c: c + a @ b, jnp.zeros((4, 6)))

  def unbounded(a, b, n):
    return jax.lax.fori_loop(0, n, lambda i, c: c + a @ b, jnp.zeros((4, 6)))

  assert _gpu.matmul_flops(scanned, a, b) == (7 * 2 * 4 * 5 * 6, True)
  assert _gpu.matmul_flops(unbounded, a, b, 3) == (2 * 4 * 5 * 6, False)


def test_full_logits_skipped_when_its_logits_exceed_the_memory_share(tiny, monkeypatch):
  monkeypatch.setattr(_gpu, "device_memory_bytes", lambda: 16 * 64 * 4)  # < 1 / 0.4 of logits
  records = _gpu.fused_case(16, 8, 64, "bfloat16", repeats=1, max_fraction=0.4)
  (full,) = [r for r in records if r["implementation"] == "full logits (optax)"]
  assert full["status"] == "skipped (memory)" and full["logits_bytes"] == 16 * 64 * 4
  fused = [r for r in records if r["implementation"] != "full logits (optax)"]
  assert fused and all(r["median_s"] > 0 and r["ratio_to_full"] is None for r in fused)


def test_peak_fields_from_device_memory_stats(monkeypatch):
  stats = iter(
    [
      {"bytes_in_use": 100, "peak_bytes_in_use": 150},
      {"bytes_in_use": 100, "peak_bytes_in_use": 400},
    ]
  )
  monkeypatch.setattr(_gpu, "_memory_stats", lambda: next(stats))
  fields = _gpu.run_once_for_peak(lambda x: x + 1, (jnp.ones(3),))
  assert fields == {
    "bytes_in_use_before": 100,
    "peak_bytes_in_use": 400,
    "peak_is_this_case": True,
    "peak_over_inputs": 300,
  }


def test_a_failing_case_is_recorded_and_the_rest_still_run(tiny, monkeypatch, tmp_path):
  def broken(*args, **kwargs):
    raise RuntimeError("out of memory (simulated)")

  monkeypatch.setattr(_gpu, "copy_reference", broken)
  records = _gpu.run(quick=True, out=tmp_path / "gpu.json")
  (error,) = [r for r in records if r["status"] == "error"]
  assert error["case"] == "copy reference" and "simulated" in error["error"]
  sparse = _by_kind(records, "sparse")
  assert len(sparse) == 8 and all(r["pct_of_copy"] is None for r in sparse)
  assert json.loads((tmp_path / "gpu.json").read_text())[-1]["kind"] == "summary"
  assert "simulated" in (tmp_path / "gpu.md").read_text()


def test_time_budget_skips_the_remaining_cases(tiny, tmp_path):
  records = _gpu.run(quick=True, out=tmp_path / "gpu.json", budget_s=0.0)
  skipped = [r for r in records if r["kind"] == "skipped"]
  assert len(skipped) == 2 + len(TINY["fused"]) + len(TINY["sparse_dtypes"])
  assert all(r["status"] == "skipped (time)" for r in skipped)
  assert records[0]["status"] == "complete"


def test_schedules_are_read_from_the_fused_signature(monkeypatch):
  calls, original = [], xentax.fused_linear_cross_entropy

  def with_schedule(
    hidden,
    weight,
    labels,
    *,
    schedule: "Literal['auto', 'tokens', 'vocab']" = "auto",  # noqa: F821
  ):
    calls.append(schedule)
    return original(hidden, weight, labels)

  monkeypatch.setattr(xentax, "fused_linear_cross_entropy", with_schedule)
  assert _gpu.fused_schedules() == ["tokens", "vocab"]
  impls = _gpu.fused_implementations()
  assert list(impls) == ["fused (default)", "fused (schedule=tokens)", "fused (schedule=vocab)"]
  h, w, y = _gpu.fused_inputs(4, 3, 5, jnp.float32, seed=0)
  impls["fused (schedule=vocab)"](h, w, y)
  impls["fused (default)"](h, w, y)
  assert calls == ["vocab", "auto"]


def test_sparse_case_matches_optax_value():
  logits, labels = _gpu.sparse_inputs(8, 64, jnp.float32, seed=0)
  expected = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
  np.testing.assert_allclose(
    _gpu.sparse_implementations()["xentax"](logits, labels), expected, rtol=1e-5
  )
  assert _gpu.sparse_implementations()["optax"](logits, labels) == pytest.approx(float(expected))


def test_gpu_suite_runs_alone():
  with pytest.raises(ValueError, match="gpu suite runs alone"):
    _run.check_suites(["gpu", "losses"])
  with pytest.raises(ValueError, match="gpu suite runs alone"):
    _run.check_suites(["gpu", "all"])  # "all" leaves gpu out; together they are refused


def test_a_failing_sparse_mode_leaves_the_other_measured(monkeypatch):
  original = _gpu._sparse_mode

  def broken_grad(mode, *args, **kwargs):
    if mode == "value_and_grad":
      raise RuntimeError("simulated")
    return original(mode, *args, **kwargs)

  monkeypatch.setattr(_gpu, "_sparse_mode", broken_grad)
  records = _gpu.sparse_case(8, 64, "float32", repeats=1)
  assert [(r["mode"], r.get("status", "ok")) for r in records] == [
    ("forward", "ok"),
    ("forward", "ok"),
    ("value_and_grad", "error"),
  ]
