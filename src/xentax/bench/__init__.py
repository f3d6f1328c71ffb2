"""Benchmarks: measure losses side by side on the machine at hand."""

from xentax.bench._measure import Timing as Timing
from xentax.bench._measure import compile_ahead as compile_ahead
from xentax.bench._measure import device_info as device_info
from xentax.bench._measure import memory_bytes as memory_bytes
from xentax.bench._measure import peak_device_bytes as peak_device_bytes
from xentax.bench._measure import time_side_by_side as time_side_by_side
from xentax.bench._run import STANDALONE_SUITES as STANDALONE_SUITES
from xentax.bench._run import SUITES as SUITES
from xentax.bench._run import markdown as markdown
from xentax.bench._run import run as run
from xentax.bench._run import write_json as write_json

__all__ = [
  "SUITES",
  "STANDALONE_SUITES",
  "markdown",
  "run",
  "write_json",
  "Timing",
  "compile_ahead",
  "device_info",
  "memory_bytes",
  "peak_device_bytes",
  "time_side_by_side",
]
