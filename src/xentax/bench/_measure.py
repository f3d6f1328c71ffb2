"""Measuring compiled JAX functions: compile time, steady-state time, memory, device.

Design notes:
  * Functions are compiled ahead of time (``jit(f).lower(*args).compile()``), so compile
    time is reported separately and never pollutes the steady-state numbers.
  * Implementations of one configuration are timed side by side, interleaved repeat by
    repeat, so drift on a shared machine affects all of them alike; reports use ratios
    to a baseline from the same run.
  * Inputs are rotated between a few copies so that no cache can serve a repeat, and each
    timed call follows an untimed call of the same function, so one implementation's
    allocations do not slow down the next one's timed call.
  * A call shorter than ``min_sample_s`` is timed as several calls back to back (dispatched
    asynchronously, one wait at the end), so a sub-millisecond loss is measured by its
    throughput rather than by the jitter of one dispatch and wake-up.
  * Memory comes from ``compiled.memory_analysis()`` (exact temporaries, also on CPU, also
    without running) and, where the backend has it, ``device.memory_stats()``.
"""

from __future__ import annotations

import dataclasses
import math
import platform
import re
import statistics
import time
import warnings
from collections.abc import Callable, Sequence

import jax
import jaxlib

# A spread ((max - min) / median) above this makes a ratio untrustworthy: re-measure once.
MAX_SPREAD = 1.0
# Calls shorter than this are timed in groups of back-to-back calls (at most MAX_CALLS).
MIN_SAMPLE_S = 0.02
MAX_CALLS = 64


class BenchWarning(UserWarning):
  """A measurement stayed too noisy to trust its ratio, even after re-measuring."""


@dataclasses.dataclass(frozen=True)
class Timing:
  """Steady-state times of one compiled function, in seconds."""

  compile_s: float
  median_s: float
  min_s: float
  max_s: float
  repeats: int
  samples: tuple[float, ...] = ()  # seconds per call of each sample, in round order
  calls: int = 1  # back-to-back calls per sample

  def ratios_to(self, baseline: Timing) -> list[float]:
    """Per-round ratios to ``baseline`` (timed in the same rounds, interleaved)."""
    return [a / b for a, b in zip(self.samples, baseline.samples, strict=True)]

  @property
  def spread(self) -> float:
    """(max - min) / median: the relative spread of the repeats."""
    return (self.max_s - self.min_s) / self.median_s if self.median_s else 0.0


def device_info() -> dict:
  device = jax.devices()[0]
  return {
    "platform": device.platform,
    "device_kind": device.device_kind,
    "device_count": jax.device_count(),
    "jax": jax.__version__,
    "jaxlib": jaxlib.__version__,
    "python": platform.python_version(),
    "machine": platform.machine(),
  }


def compile_ahead(fn: Callable, *args):
  """``(compiled, seconds)`` for ``jax.jit(fn)`` at the shapes of ``args``."""
  start = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - start


def memory_bytes(compiled) -> dict:
  """Temporary, argument and output bytes of a compiled function (None if unknown)."""
  analysis = compiled.memory_analysis()
  if analysis is None:
    return {"temp_bytes": None, "argument_bytes": None, "output_bytes": None}
  return {
    "temp_bytes": int(analysis.temp_size_in_bytes),
    "argument_bytes": int(analysis.argument_size_in_bytes),
    "output_bytes": int(analysis.output_size_in_bytes),
  }


def peak_device_bytes() -> int | None:
  """Peak bytes in use on the first device since start-up, where the backend reports it."""
  stats = jax.devices()[0].memory_stats()
  if not stats:
    return None
  return stats.get("peak_bytes_in_use")


def time_side_by_side(
  compiled: dict[str, Callable],
  arg_sets: Sequence[tuple] | dict[str, Sequence[tuple]],
  *,
  repeats: int = 5,
  warmup: int = 1,
  compile_seconds: dict[str, float] | None = None,
  max_spread: float | None = MAX_SPREAD,
  min_sample_s: float = MIN_SAMPLE_S,
) -> dict[str, Timing]:
  """Time several compiled functions on the same inputs, interleaved repeat by repeat.

  When a function's spread exceeds ``max_spread`` (another process took the cores, say),
  all of them are timed again with twice the repeats; if one is still too noisy, a
  :class:`BenchWarning` names it and its spread stays in the record.

  Args:
    compiled: name -> compiled function.
    arg_sets: a few copies of the arguments; repeat ``r`` uses ``arg_sets[r % len]``. A
      dict gives each function its own copies (the same data placed differently, say).
    repeats: timed calls per function.
    warmup: untimed calls per function first.
    compile_seconds: name -> compile time, copied into the timings.
    max_spread: re-measure above this spread (None: never).
    min_sample_s: a function whose last warm-up call took less is timed as
      ``ceil(min_sample_s / t)`` calls back to back per sample (at most ``MAX_CALLS``; 0:
      always one call). Each sample is then the group's time over its number of calls.

  Returns:
    name -> :class:`Timing`.
  """
  if not isinstance(arg_sets, dict):
    arg_sets = {name: arg_sets for name in compiled}
  calls = {}
  for name, fn in compiled.items():
    elapsed = float("inf")
    for i in range(warmup):
      start = time.perf_counter()
      jax.block_until_ready(fn(*arg_sets[name][i % len(arg_sets[name])]))
      elapsed = time.perf_counter() - start
    calls[name] = _calls_per_sample(elapsed, min_sample_s)
  timings = _timings(_samples(compiled, arg_sets, repeats, calls), compile_seconds or {}, calls)
  if max_spread is None or repeats < 2:
    return timings
  if any(t.spread > max_spread for t in timings.values()):
    samples = _samples(compiled, arg_sets, 2 * repeats, calls)
    timings = _timings(samples, compile_seconds or {}, calls)
    noisy = {name: t.spread for name, t in timings.items() if t.spread > max_spread}
    if noisy:
      spreads = ", ".join(f"{name} {spread:.0%}" for name, spread in noisy.items())
      warnings.warn(
        f"timings too noisy to trust their ratios after re-measuring with {2 * repeats}"
        f" repeats (spread {spreads}); is another process using the device?",
        BenchWarning,
        stacklevel=2,
      )
  return timings


def _calls_per_sample(elapsed: float, min_sample_s: float) -> int:
  if not elapsed > 0:
    return MAX_CALLS
  return max(1, min(MAX_CALLS, math.ceil(min_sample_s / elapsed)))


def _samples(compiled, arg_sets, repeats, calls) -> dict[str, list[float]]:
  samples: dict[str, list[float]] = {name: [] for name in compiled}
  for r in range(repeats):
    names = list(compiled) if r % 2 == 0 else list(reversed(compiled))
    for name in names:
      args = arg_sets[name][r % len(arg_sets[name])]
      # One untimed call first, so the allocator state left by the previous implementation
      # (a neighbour that freed a large buffer, say) does not land in this one's time.
      jax.block_until_ready(compiled[name](*args))
      start = time.perf_counter()
      for _ in range(calls[name]):
        out = compiled[name](*args)
      jax.block_until_ready(out)
      samples[name].append((time.perf_counter() - start) / calls[name])
  return samples


def _timings(samples, compile_seconds, calls) -> dict[str, Timing]:
  return {
    name: Timing(
      compile_s=compile_seconds.get(name, float("nan")),
      median_s=statistics.median(times),
      min_s=min(times),
      max_s=max(times),
      repeats=len(times),
      samples=tuple(times),
      calls=calls[name],
    )
    for name, times in samples.items()
  }


COLLECTIVES = ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute")
_ITEMSIZE = {"f64": 8, "s64": 8, "u64": 8, "f32": 4, "s32": 4, "u32": 4, "bf16": 2, "f16": 2}


def collective_bytes(compiled) -> dict:
  """``{kind: (count, bytes, largest bytes)}`` of the collectives in a compiled program's HLO,
  one device's operands (a tuple-shaped collective counts once, with every member)."""
  found = {kind: [0, 0, 0] for kind in COLLECTIVES}
  for line in compiled.as_text().splitlines():
    for kind in COLLECTIVES:
      match = re.search(rf"=\s*(.*?)\s{kind}(?:-start)?\(", line)
      if match:
        sizes = [
          _ITEMSIZE.get(dtype, 1) * math.prod(int(d) for d in dims.split(",") if d)
          for dtype, dims in re.findall(r"([a-z]+\d*)\[([\d,]*)\]", match.group(1))
        ]
        entry = found[kind]
        entry[0] += 1
        entry[1] += sum(sizes)
        entry[2] = max(entry[2], max(sizes, default=0))
  return {kind: tuple(entry) for kind, entry in found.items()}
