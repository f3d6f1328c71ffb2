"""A run's files (config, metrics, summary, curves) and its progress bar."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from rich.progress import (  # noqa: E402
  BarColumn,
  MofNCompleteColumn,
  Progress,
  TextColumn,
  TimeElapsedColumn,
)


def jsonable(value):
  """``value`` with NumPy arrays and scalars turned into lists and Python numbers."""
  if isinstance(value, dict):
    return {str(k): jsonable(v) for k, v in value.items()}
  if isinstance(value, list | tuple):
    return [jsonable(v) for v in value]
  if isinstance(value, np.ndarray) or hasattr(value, "tolist"):
    return jsonable(np.asarray(value).tolist())
  if isinstance(value, float) and not math.isfinite(value):
    return None if math.isnan(value) else (1e308 if value > 0 else -1e308)
  return value


def write_json(path: Path, value) -> None:
  """Write ``value`` as indented JSON."""
  path.write_text(json.dumps(jsonable(value), indent=2) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
  """The records of a JSON-lines file."""
  return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class RunWriter:
  """Writes one run's folder: the config first, a metrics line per epoch, then the summary."""

  def __init__(self, out_dir: str | Path, config: dict):
    self.out_dir = Path(out_dir)
    self.out_dir.mkdir(parents=True, exist_ok=True)
    write_json(self.out_dir / "config.json", config)
    self.metrics_path = self.out_dir / "metrics.jsonl"
    self.metrics_path.write_text("")

  def log(self, record: dict) -> None:
    with self.metrics_path.open("a") as f:
      f.write(json.dumps(jsonable(record)) + "\n")

  def finish(self, summary: dict, *, history: list[dict] | None = None, title: str = "") -> None:
    write_json(self.out_dir / "summary.json", summary)
    if history:
      plot_curves({"train": history}, self.out_dir / "curves.png", title=title)


def plot_curves(runs: dict[str, list[dict]], path: Path, *, title: str = "") -> None:
  """Loss and accuracy against epoch, train (dashed) and test (solid), for one or more runs."""
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
  single = len(runs) == 1
  for i, (name, history) in enumerate(runs.items()):
    epochs = [r["epoch"] for r in history]
    color = f"C{i}"
    prefix = "" if single else f"{name} "
    for ax, key in [(ax_loss, "loss"), (ax_acc, "accuracy")]:
      ax.plot(
        epochs, [r[f"train_{key}"] for r in history], "--", color=color, label=f"{prefix}train"
      )
      ax.plot(epochs, [r[f"test_{key}"] for r in history], "-", color=color, label=f"{prefix}test")
  ax_loss.set_ylabel("cross-entropy (test: unweighted)")
  ax_loss.set_yscale("log")
  ax_acc.set_ylabel("accuracy")
  for ax in (ax_loss, ax_acc):
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


class _Bar:
  def __init__(self, progress: Progress | None, task):
    self.progress, self.task = progress, task

  def advance(self, steps: int) -> None:
    if self.progress is not None:
      self.progress.advance(self.task, steps)

  def update_text(self, text: str) -> None:
    if self.progress is not None:
      self.progress.update(self.task, status=text)


@contextlib.contextmanager
def progress_bar(total_steps: int, *, enabled: bool = True):
  """A ``rich`` bar counting steps; it is advanced with host-side counts only."""
  if not enabled:
    yield _Bar(None, None)
    return
  progress = Progress(
    TextColumn("training"),
    BarColumn(),
    MofNCompleteColumn(),
    TextColumn("steps {task.fields[status]}"),
    TimeElapsedColumn(),
    transient=True,
  )
  with progress:
    yield _Bar(progress, progress.add_task("train", total=total_steps, status=""))
