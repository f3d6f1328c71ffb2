"""What every training experiment does: scale a config, train it into a folder, keep a row."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from xentax import data as xdata
from xentax import plots
from xentax.experiments._records import RunRecord
from xentax.training import TrainConfig, train

SCALES = ("full", "quick", "smoke")


def scaled(config: TrainConfig, scale: str) -> tuple[TrainConfig, int | None]:
  """The config at ``scale`` and the step cap: quick runs a quarter of the epochs, smoke
  runs one epoch capped at 3 steps (for tests)."""
  if scale == "quick":
    return dataclasses.replace(config, epochs=max(1, math.ceil(config.epochs / 4))), None
  if scale == "smoke":
    return dataclasses.replace(config, epochs=1), 3
  return config, None


def train_run(
  root: Path,
  run_name: str,
  config: TrainConfig,
  scale: str,
  *,
  dataset: xdata.Dataset | None = None,
  bar: float | None = None,
  baselines: dict[str, float] | None = None,
  **extra,
) -> RunRecord:
  """Train ``config`` (at ``scale``) into ``root/run_name`` and return its row.

  Args:
    root: the experiment's folder.
    run_name: the run's folder and row name.
    config: the run at full scale.
    scale: see :func:`scaled`.
    dataset: a dataset to use instead of loading ``config.dataset``.
    bar: a test accuracy the run must reach (recorded as ``bar`` and ``bar_met``).
    baselines: name -> test loss of a reference predictor, drawn on the curves.
    **extra: experiment-specific numbers for the row's ``extra``.
  """
  config, max_steps = scaled(config, scale)
  result = train(
    config,
    dataset=dataset,
    out_dir=root / run_name,
    overwrite=True,
    progress=False,
    max_steps=max_steps,
  )
  curves = root / run_name / "curves.png"
  if baselines:
    s = result.summary
    title = f"{s['model']} on {s['dataset']}: {config.loss}, {config.optimizer}"
    figure = plots.training_curves(
      {run_name: result.history}, title=title, objective=config.loss, baselines=baselines
    )
    plots.save(figure, curves)
  s = result.summary
  row = RunRecord(
    run=run_name,
    model=config.model,
    dataset=s["dataset"],
    loss=config.loss,
    optimizer=config.optimizer,
    epochs=len(result.history),
    test_accuracy=s["final_test_accuracy"],
    test_loss=s["final_test_loss"],
    seconds=s["seconds_total"],
    curves=f"{root.name}/{run_name}/curves.png",
    extra=dict(extra),
    history=result.history,
  )
  if bar is not None:
    row.bar = f"test accuracy >= {bar}"
    row.bar_met = bool(s["final_test_accuracy"] >= bar)
  return row
