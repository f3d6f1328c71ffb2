"""Class imbalance: plain cross-entropy vs balanced class weights vs focal loss, over seeds.

Design notes:
  The 2-class blobs have a 1:20 ratio, so a test split holds only about 15 minority
  examples and one seed's minority recall moves in steps of 1/15. Each objective is
  therefore trained on several seeds (each seed draws its own blobs, split and
  initialisation) and reported as the mean and standard deviation over seeds; the bar asks
  that the best reweighting objective beats plain CE on the *mean* minority recall by more
  than the plain runs' own spread.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xentax import data as xdata
from xentax import plots
from xentax.experiments._common import train_run
from xentax.experiments._records import ExperimentResult, RunRecord
from xentax.training import TrainConfig

OBJECTIVES = ("cross_entropy", "weighted_cross_entropy", "focal")
SEEDS = {"full": 5, "quick": 5, "smoke": 2}


def class_imbalance(root: Path, scale: str) -> ExperimentResult:
  """Each objective on 2-class 1:20 blobs, over ``SEEDS[scale]`` seeds.

  One row per objective: ``test_accuracy`` and ``test_loss`` are means over seeds;
  ``extra`` has ``minority_recall`` (per seed), ``minority_recall_mean``,
  ``minority_recall_std``, ``accuracy_std``, ``recall`` (``[seeds][classes]``) and
  ``minority_test_examples`` (per seed). Figure ``recall``: per-class recall by objective.
  """
  seeds = range(SEEDS[scale])
  datasets = [xdata.blobs(num_classes=2, imbalance_ratio=20.0, seed=seed) for seed in seeds]
  minority = datasets[0].info["minority_class"]
  rows, recalls = [], {}
  for loss in OBJECTIVES:
    runs = []
    for seed, ds in zip(seeds, datasets, strict=True):
      config = TrainConfig(
        dataset="blobs_imbalanced", loss=loss, epochs=30, lr=0.05, batch_size=64, seed=seed
      )
      runs.append(train_run(root / loss, f"seed_{seed}", config, scale, dataset=ds))
    recall = [run.history[-1]["test_recall"] for run in runs]
    recalls[loss] = recall
    minority_recall = [r[minority] for r in recall]
    accuracy = [run.test_accuracy for run in runs]
    rows.append(
      RunRecord(
        run=loss,
        model=runs[0].model,
        dataset=runs[0].dataset,
        loss=loss,
        optimizer=runs[0].optimizer,
        epochs=runs[0].epochs,
        test_accuracy=float(np.mean(accuracy)),
        test_loss=float(np.mean([run.test_loss for run in runs])),
        seconds=sum(run.seconds for run in runs),
        curves=f"{root.name}/{loss}/seed_0/curves.png",
        extra={
          "seeds": len(runs),
          "minority_recall": minority_recall,
          "minority_recall_mean": float(np.mean(minority_recall)),
          "minority_recall_std": float(np.std(minority_recall)),
          "accuracy_std": float(np.std(accuracy)),
          "recall": recall,
          "minority_test_examples": [int(np.sum(ds.y_test == minority)) for ds in datasets],
        },
      )
    )
  plain = rows[0].extra
  best = max(rows[1:], key=lambda r: r.extra["minority_recall_mean"])
  rows[0].bar = "weighted or focal beats plain CE on mean minority recall by more than its std"
  rows[0].bar_met = bool(
    best.extra["minority_recall_mean"]
    > plain["minority_recall_mean"] + plain["minority_recall_std"]
  )
  figure = plots.per_class_recall(
    recalls,
    class_names=[f"class {c}" + (" (minority)" if c == minority else "") for c in range(2)],
    title=f"2-class blobs 1:20: test recall over {len(seeds)} seeds",
  )
  plots.save(figure, root / "recall.png")
  return ExperimentResult(
    "class_imbalance",
    scale,
    rows,
    info={"minority_class": minority, "class_sizes": datasets[0].info["class_sizes"]},
    figures={"recall": f"{root.name}/recall.png"},
  )
