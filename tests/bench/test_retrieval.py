"""The ``retrieval`` suite at tiny sizes: records and their table, not speed."""

import pytest

from xentax.bench import _records, _retrieval, _run

pytestmark = pytest.mark.slow  # compiles and times nine steps


def test_each_loss_is_timed_against_its_formula():
  records = _retrieval.run(64, 8, repeats=1)
  by_name = {r["implementation"]: r for r in records}
  for loss, formula in [
    ("clip_loss", "clip, formula"),
    ("in_batch_softmax_cross_entropy", "in-batch, formula"),
    ("siglip_loss", "siglip, formula"),
  ]:
    assert by_name[formula]["ratio"] == 1.0
    for label in ("chunked", "one block"):
      row = by_name[f"{loss}, {label}"]
      assert row["baseline"] == formula and row["median_s"] > 0
      assert row["baseline_temp_bytes"] == by_name[formula]["temp_bytes"]
  table = _run.markdown([_records.BenchRecord.from_dict(r) for r in records])
  assert "| clip_loss, chunked | 64 x 8 |" in table
