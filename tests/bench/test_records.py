"""The typed benchmark record (``xentax.bench._records``)."""

import dataclasses
import json

from xentax import bench, records


def test_bench_record_sorts_a_suites_row():
  row = {"suite": "s", "implementation": "i", "median_s": 1.0, "gbps": 2.0, "jax": "v", "n": 3}
  record = bench.BenchRecord.from_dict(row)
  assert record.params == {"n": 3} and record.rates == {"gbps": 2.0}
  assert record.device == {"jax": "v"} and record.median_s == 1.0
  assert record.get("n") == 3 and record.get("gbps") == 2.0 and record.get("missing") is None


def test_from_dict_passes_a_record_through_and_get_prefers_fields():
  record = bench.BenchRecord(suite="s", implementation="i", ratio=0.5, params={"ratio": 9})
  assert bench.BenchRecord.from_dict(record) is record
  assert record.get("ratio") == 0.5  # the field, not the parameter of the same name
  assert record.get("absent", 7) == 7


def test_a_record_round_trips_through_its_dict():
  row = {"suite": "s", "implementation": "i", "temp_bytes": 10, "platform": "cpu", "dtype": "f4"}
  record = bench.BenchRecord.from_dict(row)
  again = bench.BenchRecord(**json.loads(records.dumps(dataclasses.asdict(record))))
  assert again == record


def test_a_record_read_back_from_json_sorts_into_the_same_record(tmp_path):
  record = bench.BenchRecord(
    suite="s", implementation="i", temp_bytes=10, params={"n": 2}, rates={"gbps": 1.0}
  )
  record = dataclasses.replace(record, device={"platform": "cpu"})
  path = bench.write_json([record], tmp_path / "b.json")
  assert bench.BenchRecord.from_dict(json.loads(path.read_text())[0]) == record
