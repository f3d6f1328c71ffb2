"""Progress bars for long jobs (training, gradient checks, benchmarks), on ``rich``.

Design notes:
  A bar is advanced with host-side counts only (steps dispatched, checks done), so showing
  it never waits on the device. ``enabled=False`` gives a bar that does nothing, so callers
  need no branches. ``rich`` is imported when a bar is shown, not when xentax is imported;
  without it (the light install: ``rich`` comes with the ``research`` extra) no bar is shown.
  This module imports nothing from xentax: it sits on the bottom floor.
"""

from __future__ import annotations

import contextlib


class _Bar:
  def __init__(self, progress, task):
    self.progress, self.task = progress, task

  def advance(self, steps: int) -> None:
    if self.progress is not None:
      self.progress.advance(self.task, steps)

  def update_text(self, text: str) -> None:
    if self.progress is not None:
      self.progress.update(self.task, status=text)


def _rich_progress():
  """``rich.progress``, or None without ``rich`` (the light install)."""
  try:
    from rich import progress
  except ModuleNotFoundError:
    return None
  return progress


@contextlib.contextmanager
def progress_bar(total: int, *, enabled: bool = True, label: str = "training", unit: str = "steps"):
  """A ``rich`` bar counting ``unit``; it is advanced with host-side counts only."""
  rich_progress = _rich_progress() if enabled else None
  if rich_progress is None:
    yield _Bar(None, None)
    return

  progress = rich_progress.Progress(
    rich_progress.TextColumn(label),
    rich_progress.BarColumn(),
    rich_progress.MofNCompleteColumn(),
    rich_progress.TextColumn(unit + " {task.fields[status]}"),
    rich_progress.TimeElapsedColumn(),
    transient=True,
  )
  with progress:
    yield _Bar(progress, progress.add_task(label, total=total, status=""))
