"""The ``parallel`` suite (``xentax.bench._parallel``) at tiny sizes: records, not speed."""

import jax
import pytest

from xentax.bench import _parallel

pytestmark = pytest.mark.slow  # runs the parallel bench suite


def test_parallel_suite_compares_one_device_with_all():
  records = _parallel.run(8, 8 * jax.device_count(), repeats=1)
  assert [r["devices"] for r in records] == [1, jax.device_count()]
  assert records[0]["ratio"] == 1.0
  assert all(r["suite"] == "parallel" and r["median_s"] > 0 for r in records)
