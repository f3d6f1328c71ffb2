"""The ``many_classes`` suite at tiny sizes: records, not speed."""

import pytest

from xentax.bench import _many_classes

pytestmark = pytest.mark.slow  # compiles and times four steps


def test_each_implementation_is_timed_against_the_fused_full_softmax():
  records = _many_classes.run(32, 16, 1024, sampled=(8, 64), repeats=1)
  names = [r["implementation"] for r in records]
  assert names == [
    "fused full softmax",
    "sampled softmax, S = 8",
    "sampled softmax, S = 64",
    "adaptive softmax",
  ]
  assert records[0]["ratio"] == 1.0
  for r in records:
    assert r["suite"] == "many_classes" and r["median_s"] > 0 and r["temp_bytes"] is not None


def test_the_adaptive_layout_follows_torchs_div_value():
  cutoffs, tails = _many_classes.adaptive_layout(512, 131072)
  assert cutoffs == [2048, 16384]
  assert tails == [(128, 14336), (32, 114688)]
