"""The ``parallel`` suite (``xentax.bench._parallel``) at tiny sizes: records, not speed."""

import itertools

import jax
import pytest

from xentax.bench import _parallel

pytestmark = pytest.mark.slow  # runs the parallel bench suite


def test_parallel_suite_compares_one_device_with_all():
  records = _parallel.run(8, 8 * jax.device_count(), repeats=1)
  assert [r["devices"] for r in records] == [1, jax.device_count()]
  assert records[0]["ratio"] == 1.0
  assert all(r["suite"] == "parallel" and r["median_s"] > 0 for r in records)


def test_fused_layouts_keep_each_devices_share_under_weak_scaling():
  records = _parallel.fused_layouts(16, 8, 64)
  by = {(r["layout"], r["axis_types"], r["devices"]): r for r in records}
  assert {r["devices"] for r in records} == {1, 2, 4, 8}
  for layout, kind in itertools.product(_parallel.LAYOUTS, ("Explicit", "Auto")):
    temps = [by[(layout, kind, n)]["temp_bytes"] for n in (1, 2, 4, 8)]
    assert max(temps) <= 1.05 * min(temps), (layout, kind, temps)  # flat per device
    for n in (1, 2, 4, 8):
      moved = by[(layout, kind, n)]["collectives"]
      assert set(moved) <= {"all-reduce"}, moved  # no gather of any kind
    # Tokens: the largest all-reduce is d weight [D, V]; vocabulary: d hidden [N, D].
    assert by[("tokens", kind, 8)]["collectives"]["all-reduce"][2] == 8 * 64 * 4  # f32 bytes
    assert by[("vocab", kind, 8)]["collectives"]["all-reduce"][2] == 16 * 8 * 4
