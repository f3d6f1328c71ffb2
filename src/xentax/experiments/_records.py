"""The typed results of experiments: one :class:`RunRecord` per training run, one
:class:`ExperimentResult` per experiment (what ``summary.json`` holds).

Design notes:
  The records are plain dataclasses; :mod:`xentax.records` turns them into JSON (the
  per-epoch ``history`` stays out of ``summary.json``: it is in each run's
  ``metrics.jsonl``). Numbers specific to one experiment (a baseline's loss, a minority
  recall) go into ``extra``, whose keys each experiment documents.
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass
class RunRecord:
  """One training run of an experiment, or one objective summarised over seeds.

  Attributes:
    run: the run's name inside its experiment (its folder name).
    model, dataset, loss, optimizer: what was trained, on what, with what.
    epochs: epochs completed.
    test_accuracy, test_loss: final test metrics (test loss: unweighted cross-entropy).
    seconds: wall time of the run, compile included.
    curves: the run's ``curves.png``, relative to the experiments' output folder.
    bar: the claim the run is judged by (e.g. ``"test accuracy >= 0.95"``), if any.
    bar_met: whether the run meets ``bar``.
    extra: experiment-specific numbers (see each experiment's docstring).
    history: one dict per epoch (not written to ``summary.json``).
  """

  run: str
  model: str
  dataset: str
  loss: str
  optimizer: str
  epochs: int
  test_accuracy: float
  test_loss: float
  seconds: float = 0.0
  curves: str | None = None
  bar: str | None = None
  bar_met: bool | None = None
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)
  history: list[dict] = dataclasses.field(
    default_factory=list, repr=False, metadata={"json": False}
  )


@dataclasses.dataclass
class ExperimentResult:
  """What :func:`xentax.experiments.run` returns and writes as ``<name>/summary.json``.

  Attributes:
    name: the experiment.
    scale: ``"full"``, ``"quick"`` or ``"smoke"``.
    rows: its runs.
    info: experiment-level numbers and facts (sizes, baselines, ratios).
    figures: figure name -> PNG path relative to the experiments' output folder.
    seconds: wall time of the whole experiment.
  """

  name: str
  scale: str
  rows: list[RunRecord]
  info: dict[str, Any] = dataclasses.field(default_factory=dict)
  figures: dict[str, str] = dataclasses.field(default_factory=dict)
  seconds: float = 0.0

  def row(self, run: str) -> RunRecord:
    """The row named ``run``.

    Raises:
      KeyError: no such row (the message lists the rows).
    """
    for row in self.rows:
      if row.run == run:
        return row
    raise KeyError(
      f"experiment {self.name!r} has no run {run!r}; it has {[r.run for r in self.rows]}"
    )

  @property
  def bars_met(self) -> bool:
    """Every row with a bar meets it."""
    return all(row.bar_met for row in self.rows if row.bar is not None)
