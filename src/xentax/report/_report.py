"""Assemble the report from its sections.

Design notes:
  A section is a function ``section(out_dir, quick) -> markdown`` that writes its own
  figures into ``out_dir``. Later work adds sections to :data:`SECTIONS`; the report keeps
  their order and records the time each took.
"""

from __future__ import annotations

import datetime
import platform
import time
from collections.abc import Callable
from pathlib import Path

import jax

import xentax
from xentax.report import (
  _bench_section,
  _gradcheck_section,
  _large_vocab_section,
  _training_section,
  _worked_examples,
)

Section = Callable[[Path, bool], str]

SECTIONS: dict[str, Section] = {
  "worked_examples": _worked_examples.section,
  "gradient_verification": _gradcheck_section.section,
  "training": _training_section.section,
  "large_vocabularies": _large_vocab_section.section,
  "benchmarks": _bench_section.section,
}


def reproduce(
  out_dir: str | Path = "results", *, quick: bool = False, only: list[str] | None = None
) -> Path:
  """Run every section and write ``out_dir/REPORT.md``; returns its path."""
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  names = list(SECTIONS) if not only else only
  unknown = [name for name in names if name not in SECTIONS]
  if unknown:
    raise ValueError(f"unknown report section(s) {unknown}; choose from {list(SECTIONS)}")
  device = jax.devices()[0]
  parts = [
    "# xentax report",
    "",
    f"Generated {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC} by `xentax reproduce`"
    f" (xentax {xentax.__version__}, jax {jax.__version__}, python {platform.python_version()},"
    f" device: {device.platform} {device.device_kind}).",
    "",
  ]
  timings = []
  for name in names:
    start = time.perf_counter()
    parts.append(SECTIONS[name](out_dir, quick))
    timings.append((name, time.perf_counter() - start))
  parts += ["## Run time", "", "| section | seconds |", "|---|---|"]
  parts += [f"| {name} | {seconds:.1f} |" for name, seconds in timings]
  path = out_dir / "REPORT.md"
  path.write_text("\n".join(parts) + "\n")
  return path
