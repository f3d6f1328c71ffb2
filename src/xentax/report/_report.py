"""Assemble the report from its sections, writing ``REPORT.md`` after each one.

Design notes:
  A section is a function ``section(out_dir, scale) -> markdown`` that runs the public
  benchmark, experiment or gradcheck API it shows and renders the records; it writes its
  figures into ``out_dir``. :func:`reproduce` rewrites ``REPORT.md`` (atomically) after
  every section, so a crash or Ctrl-C leaves a report of the sections done so far (and a
  line saying which one stopped), and prints each section's name and time as it goes.
"""

from __future__ import annotations

import datetime
import platform
import time
from collections.abc import Callable
from pathlib import Path

import xentax
from xentax import records
from xentax.report import (
  _bench_section,
  _gradcheck_section,
  _large_vocab_section,
  _soft_targets_section,
  _training_section,
  _worked_examples,
)

Section = Callable[[Path, str], str]

SECTIONS: dict[str, Section] = {
  "worked_examples": _worked_examples.section,
  "gradient_verification": _gradcheck_section.section,
  "training": _training_section.section,
  "large_vocabularies": _large_vocab_section.section,
  "soft_targets": _soft_targets_section.section,
  "benchmarks": _bench_section.section,
}


def check_sections(only: list[str] | None) -> list[str]:
  """The sections to run (all when ``only`` is empty); ValueError for an unknown name."""
  names = list(SECTIONS) if not only else list(only)
  unknown = [name for name in names if name not in SECTIONS]
  if unknown:
    raise ValueError(
      f"unknown report section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}"
    )
  return names


def _header() -> list[str]:
  import jax

  device = jax.devices()[0]
  return [
    "# xentax report",
    "",
    f"Generated {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M UTC} by `xentax reproduce`"
    f" (xentax {xentax.__version__}, jax {jax.__version__}, python {platform.python_version()},"
    f" device: {device.platform} {device.device_kind}).",
    "",
  ]


def _timings(timings: list[tuple[str, float]]) -> list[str]:
  lines = ["## Run time", "", "| section | seconds |", "|---|---|"]
  lines += [f"| {name} | {seconds:.1f} |" for name, seconds in timings]
  total = sum(seconds for _, seconds in timings)
  return lines + [f"| total | {total:.1f} |", ""]


def reproduce(
  out_dir: str | Path = "results",
  *,
  quick: bool = False,
  only: list[str] | None = None,
  scale: str | None = None,
) -> Path:
  """Run the sections and write ``out_dir/REPORT.md``, section by section; returns its path.

  Args:
    out_dir: the report's folder (created).
    quick: shorthand for ``scale="quick"``.
    only: run only these sections, in this order.
    scale: ``"full"``, ``"quick"`` or ``"smoke"`` (tests); overrides ``quick``.

  Raises:
    ValueError: an unknown section or scale (before anything runs).
  """
  names = check_sections(only)
  scale = scale or ("quick" if quick else "full")
  if scale not in ("full", "quick", "smoke"):
    raise ValueError(f"unknown scale {scale!r}; choose from full, quick, smoke")
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  path = out_dir / "REPORT.md"
  head = _header()
  parts: list[str] = []
  timings: list[tuple[str, float]] = []
  for i, name in enumerate(names, 1):
    print(f"[{i}/{len(names)}] {name} ...", flush=True)
    start = time.perf_counter()
    try:
      parts.append(SECTIONS[name](out_dir, scale))
    except BaseException as err:
      stopped = "interrupted" if isinstance(err, KeyboardInterrupt) else f"failed: {err!r}"
      note = [f"**Section `{name}` {stopped}; the sections above are complete.**", ""]
      records.write_text(path, "\n".join(head + parts + note + _timings(timings)) + "\n")
      raise
    seconds = time.perf_counter() - start
    timings.append((name, seconds))
    print(f"[{i}/{len(names)}] {name} done in {seconds:.1f} s", flush=True)
    records.write_text(path, "\n".join(head + parts + _timings(timings)) + "\n")
  return path
