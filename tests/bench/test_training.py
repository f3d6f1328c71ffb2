"""The ``training`` suite (``xentax.bench._training``) at tiny sizes: records, not speed."""

import pytest

from xentax.bench import _training

pytestmark = pytest.mark.slow  # runs the training bench suite


def test_training_suite_records_each_loop():
  records = _training.run(epochs=1, examples=20, repeats=1)
  assert [r["batch_size"] for r in records] == [1, 1, 64]
  assert records[0]["implementation"] == "deck per-example loop (eager)"
  assert records[0]["ratio"] == 1.0
  for r in records:
    assert r["suite"] == "training" and r["examples"] == 20
    assert r["steps_per_s"] > 0
    steps = -(-20 // r["batch_size"])
    assert abs(r["examples_per_s"] - r["steps_per_s"] * 20 / steps) <= 1e-9 * r["examples_per_s"]
