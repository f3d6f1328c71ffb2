"""Records on disk: the one JSON serialiser of xentax, and atomic file writes.

Design notes:
  Benchmarks, experiments and gradient checks return typed records (dataclasses); runs
  write ``config.json``, ``metrics.jsonl`` and ``summary.json``. All of them go through
  :func:`jsonable`, so a record is turned into JSON in exactly one way: dataclasses become
  dicts (fields whose metadata says ``{"json": False}`` are left out), NumPy arrays and
  scalars become lists and numbers, NaN becomes ``null`` and infinities +-1e308 (JSON has
  neither).

  Every file is written to a temporary name in its folder and then renamed over the
  target (``os.replace`` is atomic on POSIX and Windows), so a crash or Ctrl-C leaves
  either the old file or the new one, never half of one.

  This module imports nothing from xentax: it sits on the bottom floor, next to
  ``losses`` and ``data``, so every floor may use it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
  """``value`` as plain JSON types (see the module notes for the rules)."""
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    return {
      f.name: jsonable(getattr(value, f.name))
      for f in dataclasses.fields(value)
      if f.metadata.get("json", True)
    }
  if isinstance(value, dict):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [jsonable(v) for v in value]
  if isinstance(value, np.ndarray) or hasattr(value, "tolist"):
    return jsonable(np.asarray(value).tolist())
  if isinstance(value, float) and not math.isfinite(value):
    return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
  if isinstance(value, str | int | float | bool) or value is None:
    return value
  return str(value)  # dtypes, paths, devices: their readable name


def write_text(path: str | Path, text: str) -> Path:
  """Write ``text`` to ``path`` atomically (a temporary file in the same folder, renamed)."""
  path = Path(path)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  try:
    tmp.write_text(text)
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)
  return path


def write_bytes(path: str | Path, data: bytes) -> Path:
  """Write ``data`` to ``path`` atomically."""
  path = Path(path)
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  try:
    tmp.write_bytes(data)
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)
  return path


def dumps(value: Any, *, indent: int | None = 2) -> str:
  """``value`` (a record, a list of records, a dict...) as JSON text."""
  return json.dumps(jsonable(value), indent=indent)


def write_json(path: str | Path, value: Any) -> Path:
  """Write ``value`` as indented JSON, atomically."""
  return write_text(path, dumps(value) + "\n")


def write_jsonl(path: str | Path, records: list) -> Path:
  """Write one JSON line per record, atomically (the whole file each time)."""
  return write_text(path, "".join(dumps(r, indent=None) + "\n" for r in records))


def read_json(path: str | Path) -> Any:
  """The JSON value in ``path``."""
  return json.loads(Path(path).read_text())


def read_jsonl(path: str | Path) -> list[dict]:
  """The records of a JSON-lines file."""
  return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
