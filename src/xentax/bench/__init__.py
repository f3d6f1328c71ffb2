"""Benchmarks: measure losses side by side on the machine at hand."""

from xentax.bench._gpu import run as run_gpu
from xentax.bench._gpu_markdown import markdown as gpu_markdown
from xentax.bench._many_classes import adaptive_layout as adaptive_layout
from xentax.bench._measure import BenchWarning as BenchWarning
from xentax.bench._measure import Timing as Timing
from xentax.bench._measure import compile_ahead as compile_ahead
from xentax.bench._measure import device_info as device_info
from xentax.bench._measure import memory_bytes as memory_bytes
from xentax.bench._measure import peak_device_bytes as peak_device_bytes
from xentax.bench._measure import time_side_by_side as time_side_by_side
from xentax.bench._records import BenchRecord as BenchRecord
from xentax.bench._run import STANDALONE_SUITES as STANDALONE_SUITES
from xentax.bench._run import SUITES as SUITES
from xentax.bench._run import TARGET_REPEATS as TARGET_REPEATS
from xentax.bench._run import Suite as Suite
from xentax.bench._run import check_suites as check_suites
from xentax.bench._run import markdown as markdown
from xentax.bench._run import run as run
from xentax.bench._run import write_json as write_json
from xentax.bench._sizes import SIZES as SIZES
from xentax.bench._sizes import TARGETS as TARGETS

__all__ = [
  "SIZES",
  "STANDALONE_SUITES",
  "SUITES",
  "TARGETS",
  "TARGET_REPEATS",
  "BenchRecord",
  "BenchWarning",
  "Suite",
  "Timing",
  "adaptive_layout",
  "check_suites",
  "compile_ahead",
  "device_info",
  "markdown",
  "memory_bytes",
  "peak_device_bytes",
  "gpu_markdown",
  "run",
  "run_gpu",
  "time_side_by_side",
  "write_json",
]
