"""Measuring compiled functions (``xentax.bench._measure``): timing, memory, device."""

import time

import jax
import jax.numpy as jnp
import pytest

from xentax import bench


def test_timing_spread():
  timing = bench.Timing(compile_s=0.0, median_s=2.0, min_s=1.0, max_s=4.0, repeats=3)
  assert timing.spread == 1.5
  assert bench.Timing(0.0, 0.0, 0.0, 0.0, 1).spread == 0.0


def test_compile_ahead_and_memory_bytes():
  x = jnp.ones((16, 32), jnp.float32)
  compiled, seconds = bench.compile_ahead(lambda v: jnp.exp(v) @ v.T, x)
  assert seconds > 0
  assert jnp.allclose(compiled(x), jnp.exp(x) @ x.T)
  memory = bench.memory_bytes(compiled)
  assert memory["argument_bytes"] == x.nbytes
  assert memory["output_bytes"] == 16 * 16 * 4
  assert memory["temp_bytes"] >= 0


def test_device_info_names_the_device_and_versions():
  info = bench.device_info()
  assert info["platform"] == jax.devices()[0].platform
  assert info["device_count"] == jax.device_count()
  assert info["jax"] == jax.__version__


def test_time_side_by_side_times_each_function_on_its_own_inputs():
  calls = {"a": [], "b": []}

  def recorder(name):
    def fn(x):
      calls[name].append(float(x))
      return x

    return fn

  timings = bench.time_side_by_side(
    {"a": recorder("a"), "b": recorder("b")},
    {"a": [(jnp.array(1.0),), (jnp.array(2.0),)], "b": [(jnp.array(3.0),)]},
    repeats=3,
    warmup=1,
    compile_seconds={"a": 0.5},
    max_spread=None,
    min_sample_s=0,
  )
  assert set(timings) == {"a", "b"}
  assert timings["a"].repeats == 3 and timings["a"].compile_s == 0.5
  assert timings["a"].min_s <= timings["a"].median_s <= timings["a"].max_s
  # warm-up + (untimed + timed) per repeat; copies rotate with the repeat index.
  assert len(calls["a"]) == 1 + 2 * 3
  assert set(calls["a"]) == {1.0, 2.0} and set(calls["b"]) == {3.0}


def test_noisy_timings_are_remeasured_and_then_warned_about():
  calls = []

  class Noisy:
    def __call__(self):
      calls.append(1)
      import time

      time.sleep(0.02 if len(calls) % 4 == 3 else 0.0)  # every other timed call
      return jnp.zeros(())

  with pytest.warns(bench.BenchWarning, match="too noisy"):
    timings = bench.time_side_by_side(
      {"noisy": Noisy()}, [()], repeats=4, max_spread=0.5, min_sample_s=0
    )
  assert timings["noisy"].repeats == 8  # re-measured with twice the repeats


def test_short_calls_are_timed_in_groups_and_reported_per_call():
  calls = []

  def sleeper():
    calls.append(1)
    time.sleep(0.002)
    return jnp.zeros(())

  timings = bench.time_side_by_side(
    {"f": sleeper}, [()], repeats=3, warmup=1, max_spread=None, min_sample_s=0.02
  )
  group = timings["f"].calls
  assert 1 < group <= 10  # ceil(20 ms / the warm-up call's 2 ms or more)
  assert len(calls) == 1 + 3 * (1 + group)  # warm-up, then (untimed + a group) per repeat
  assert 0.002 <= timings["f"].median_s < 0.02  # per call, not per group


def test_peak_device_bytes_is_an_int_or_unknown():
  peak = bench.peak_device_bytes()
  assert peak is None or (isinstance(peak, int) and peak >= 0)
