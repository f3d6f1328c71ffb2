"""The suite registry, runner and tables (``xentax.bench._run``) at tiny sizes."""

import json

import jax
import pytest

from tests.bench._tiny import TINY
from xentax import bench, cli
from xentax.bench import _losses, _run
from xentax.bench._records import BenchRecord

pytestmark = pytest.mark.slow  # runs the bench command


def test_bench_command_writes_json_and_tables(tmp_path, monkeypatch, capsys):
  # Fewer compilations than TINY: the suites' own tests cover their sizes and every loss.
  sizes = {**TINY, "losses_grid": [], "classes": (8, (16,)), "fused_blocks": ()}
  monkeypatch.setitem(bench.SIZES, "quick", {**sizes, "fused_memory": (16, 8, (64,))})
  name = "sparse_categorical_cross_entropy_with_logits"
  monkeypatch.setattr(_losses, "LOSSES", {name: _losses.LOSSES[name]})
  out = tmp_path / "bench.json"
  assert cli.main(["bench", "--suite", "all", "--quick", "--out", str(out)]) == 0
  records = json.loads(out.read_text())
  suites = {"reference", "losses", "memory", "classes", "fused", "fused_memory", "training"}
  assert {r["suite"] for r in records} == {
    *suites,
    "fused_grid",
    "parallel",
    "many_classes",
    "retrieval",
  }
  memory = [r for r in records if r["suite"] == "memory"]
  assert [(r["params"]["mode"], r["implementation"]) for r in memory] == [
    ("forward", "optax"),
    ("forward", "xentax"),
    ("value_and_grad", "optax"),
    ("value_and_grad", "xentax"),
  ]
  training = [r for r in records if r["suite"] == "training"]
  assert [r["params"]["batch_size"] for r in training] == [1, 1, 64]
  assert all(r["rates"]["steps_per_s"] > 0 for r in training)
  assert all(r["device"]["jax"] == jax.__version__ for r in records)
  fused = [r for r in records if r["suite"] == "fused"]
  assert fused[0]["ratio"] == 1.0 and fused[0]["baseline"] == "full logits (optax)"
  classes = [r for r in records if r["suite"] == "classes"]
  assert {r["params"]["classes"] for r in classes} == {16}
  assert {r["params"]["mode"] for r in classes} == {"value_and_grad"}
  printed = capsys.readouterr().out
  for suite in ("losses", "memory", "fused_grid", "classes", "fused", "training", "parallel"):
    assert f"### {suite}" in printed
  assert "| within +16 MiB |" in printed
  assert "| ratio to fused | temporaries MiB |" in printed  # the many_classes table
  assert "| ratio to formula | temporaries MiB |" in printed  # the retrieval table


def test_a_new_suite_is_one_registry_entry(monkeypatch):
  def tiny(sizes, repeats):
    return [{"suite": "tiny", "implementation": "x", "median_s": 1e-3, "spread": 0.0}]

  monkeypatch.setitem(bench.SUITES, "tiny", bench.Suite("tiny", tiny, "a test suite"))
  monkeypatch.setitem(bench.SIZES, "quick", TINY)
  records = bench.run(["tiny"], quick=True)
  assert [r.suite for r in records] == ["reference", "reference", "tiny"]
  assert "### tiny" in bench.markdown(records)


def test_check_suites_expands_all_and_keeps_standalone_suites_alone():
  assert bench.check_suites(["all"]) == [name for name in bench.SUITES if name != "targets"]
  assert bench.check_suites(["gpu"]) == ["gpu"]
  with pytest.raises(ValueError, match="runs alone"):
    bench.check_suites(["gpu", "losses"])


def test_unknown_suite_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown suite"):
    bench.run(["nope"], quick=True)


def test_write_json_round_trips_records(tmp_path):
  records = [bench.BenchRecord(suite="s", implementation="i", median_s=0.5, params={"n": 2})]
  path = bench.write_json(records, tmp_path / "b.json")
  assert json.loads(path.read_text())[0]["params"] == {"n": 2}


def test_bench_json_into_a_missing_folder_exits_2_before_running(tmp_path, capsys):
  assert cli.main(["bench", "--quick", "--out", str(tmp_path / "no" / "b.json")]) == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1 and "does not exist" in err


def test_targets_suite_times_every_loss_at_the_target_shapes_only(monkeypatch):
  names = ["kl_divergence_with_logits", "binary_cross_entropy"]
  sizes = {**TINY, "losses": names, "losses_target": [(4, 8), (2, 16)], "losses_naive": False}
  monkeypatch.setitem(bench.SIZES, "quick", sizes)
  records = [r for r in bench.run(["targets"], quick=True) if r.suite != "reference"]
  assert {r.suite for r in records} == {"targets"}
  assert {(r.get("batch"), r.get("classes")) for r in records} == {(4, 8), (2, 16)}
  assert {r.get("loss") for r in records} == set(names)
  assert {r.repeats for r in records} >= {bench.TARGET_REPEATS}
  # binary_cross_entropy's baseline is the naive formula, so it runs even with naive off.
  assert "naive" in {r.implementation for r in records if r.get("loss") == names[1]}
  assert "### targets" in bench.markdown(records)


def test_targets_summary_is_xentax_over_its_baseline_and_over_the_checked_naive():
  def record(impl, mode, median_s, ratio):
    params = {"loss": "toy_loss", "mode": mode, "batch": 2, "classes": 8}
    return BenchRecord(
      suite="targets",
      implementation=impl,
      params=params,
      median_s=median_s,
      ratio=ratio,
      baseline="naive",
    )

  records = [
    record("naive", "forward", 1.0, 1.0),
    record("naive (checked)", "forward", 4.0, 4.0),
    record("xentax", "forward", 2.0, 2.5),
    record("naive", "value_and_grad", 1.0, 1.0),
    record("naive (checked)", "value_and_grad", 2.0, 2.0),
    record("xentax", "value_and_grad", 0.5, 0.5),
  ]
  lines = _run.targets_summary(records)
  assert lines[0] == "| loss (vs) | [2, 8] fwd | [2, 8] v&g |"
  assert lines[2] == "| `toy_loss` (naive) | **2.50** | 0.50 |"
  assert lines[3] == "| `toy_loss` (naive (checked), time over time) | 0.50 | 0.25 |"
