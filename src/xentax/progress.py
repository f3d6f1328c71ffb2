"""Progress bars for long jobs (training, gradient checks, benchmarks), on ``rich``.

Design notes:
  A bar is advanced with host-side counts only (steps dispatched, checks done), so showing
  it never waits on the device. ``enabled=False`` gives a bar that does nothing, so callers
  need no branches. ``rich`` is imported when a bar is shown, not when xentax is imported.
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


@contextlib.contextmanager
def progress_bar(total: int, *, enabled: bool = True, label: str = "training", unit: str = "steps"):
  """A ``rich`` bar counting ``unit``; it is advanced with host-side counts only."""
  if not enabled:
    yield _Bar(None, None)
    return
  from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

  progress = Progress(
    TextColumn(label),
    BarColumn(),
    MofNCompleteColumn(),
    TextColumn(unit + " {task.fields[status]}"),
    TimeElapsedColumn(),
    transient=True,
  )
  with progress:
    yield _Bar(progress, progress.add_task(label, total=total, status=""))
