"""A run's folder (config, metrics, summary, curves) and its progress bar.

Design notes:
  A run folder holds ``config.json`` (written first), ``metrics.jsonl`` (a line per
  epoch, rewritten as each epoch ends), ``summary.json`` (``"status"``: ``"ok"``,
  ``"diverged"`` or ``"interrupted"``) and ``curves.png``. Every file is written atomically
  (:mod:`xentax.records`), so an interrupted run leaves whole files. A folder that already
  holds files is refused unless ``overwrite``, which clears it first (no stale figure of
  an earlier run survives), and only if it is a run folder (it has a ``config.json``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from xentax import plots, records

RUN_FILES = ("config.json", "metrics.jsonl", "summary.json", "curves.png")


def check_run_dir(out_dir: str | Path, *, overwrite: bool = False) -> None:
  """Raise if ``out_dir`` cannot take a new run (it creates and deletes nothing).

  Raises:
    FileExistsError: ``out_dir`` is a file, or a non-empty folder and not ``overwrite``,
      or not a run folder (no ``config.json``) although ``overwrite``.
    PermissionError: ``out_dir`` (or the nearest folder above it that exists) is not
      writable.
  """
  path = Path(out_dir)
  if path.exists() and not path.is_dir():
    raise FileExistsError(f"--out {path} is a file, not a folder")
  if path.is_dir() and any(path.iterdir()):
    if not overwrite:
      raise FileExistsError(
        f"--out {path} is not empty; pass --overwrite to replace its run, or choose another folder"
      )
    if not (path / "config.json").exists():
      raise FileExistsError(
        f"--out {path} holds files but no config.json, so it is not a run folder; --overwrite"
        " only clears run folders: choose an empty or new folder"
      )
  existing = path
  while not existing.exists():
    existing = existing.parent
  if not os.access(existing, os.W_OK | os.X_OK):
    raise PermissionError(f"--out {path}: cannot write into {existing}")


def prepare_run_dir(out_dir: str | Path, *, overwrite: bool = False) -> Path:
  """Check ``out_dir`` (:func:`check_run_dir`), clear it if ``overwrite``, create it."""
  path = Path(out_dir)
  check_run_dir(path, overwrite=overwrite)
  if path.is_dir() and overwrite:
    for child in path.iterdir():
      if child.is_dir() and not child.is_symlink():
        shutil.rmtree(child)
      else:
        child.unlink()
  path.mkdir(parents=True, exist_ok=True)
  return path


class RunWriter:
  """Writes one run's folder: the config first, the metrics after each epoch, the summary."""

  def __init__(self, out_dir: str | Path, config: dict, *, overwrite: bool = False):
    self.out_dir = prepare_run_dir(out_dir, overwrite=overwrite)
    records.write_json(self.out_dir / "config.json", config)
    self.metrics_path = self.out_dir / "metrics.jsonl"
    self.lines: list[dict] = []
    records.write_jsonl(self.metrics_path, self.lines)

  def log(self, record: dict) -> None:
    self.lines.append(record)
    records.write_jsonl(self.metrics_path, self.lines)

  def finish(
    self,
    summary: dict,
    *,
    history: list[dict] | None = None,
    title: str = "",
    objective: str = "cross_entropy",
  ) -> None:
    records.write_json(self.out_dir / "summary.json", summary)
    if history:
      figure = plots.training_curves({"run": history}, title=title, objective=objective)
      plots.save(figure, self.out_dir / "curves.png")
