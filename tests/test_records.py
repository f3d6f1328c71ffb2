"""xentax.records: the one JSON serialiser, and atomic writes."""

import dataclasses
import json
import os

import numpy as np
import pytest

from xentax import records


@dataclasses.dataclass
class _Record:
  name: str
  values: np.ndarray
  hidden: list = dataclasses.field(default_factory=list, metadata={"json": False})


def test_jsonable_handles_dataclasses_numpy_and_non_finite_floats():
  value = {
    "r": _Record("a", np.arange(3, dtype=np.int32), hidden=[1]),
    "x": np.float32(1.5),
    "bad": [float("nan"), float("inf"), -float("inf")],
    "t": (1, 2),
  }
  out = records.jsonable(value)
  assert out == {
    "r": {"name": "a", "values": [0, 1, 2]},
    "x": 1.5,
    "bad": [None, 1e308, -1e308],
    "t": [1, 2],
  }
  json.dumps(out, allow_nan=False)  # strict JSON


def test_writes_are_atomic_and_leave_no_temporary(tmp_path):
  path = tmp_path / "s.json"
  records.write_json(path, {"a": 1})
  assert records.read_json(path) == {"a": 1}
  records.write_jsonl(tmp_path / "m.jsonl", [{"e": 1}, {"e": 2}])
  assert records.read_jsonl(tmp_path / "m.jsonl") == [{"e": 1}, {"e": 2}]

  class Unserialisable:
    def __str__(self):
      raise RuntimeError("boom")

  with pytest.raises(RuntimeError):
    records.write_json(path, {"a": Unserialisable()})
  assert records.read_json(path) == {"a": 1}  # the old file is intact
  assert sorted(os.listdir(tmp_path)) == ["m.jsonl", "s.json"]


def test_a_failed_rename_keeps_the_old_file(tmp_path, monkeypatch):
  path = tmp_path / "r.txt"
  records.write_text(path, "old")

  def failing_replace(src, dst):
    raise OSError("disk full")

  monkeypatch.setattr(os, "replace", failing_replace)
  with pytest.raises(OSError, match="disk full"):
    records.write_text(path, "new")
  assert path.read_text() == "old" and os.listdir(tmp_path) == ["r.txt"]
