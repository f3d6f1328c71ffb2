"""The report's Training section at smoke scale; it also smoke-runs every experiment.

Each experiment is run at ``"smoke"`` scale (a few steps) so the section's whole path, every
experiment's runner and files included, is exercised within the suite's time budget.
"""

import json

import pytest

from xentax import experiments
from xentax.report import SECTIONS, _training_section

pytestmark = pytest.mark.slow  # smoke-runs every training experiment


def test_training_section_smoke_runs_every_experiment(tmp_path, movielens_cache):
  markdown = _training_section.section(tmp_path, "smoke")
  assert SECTIONS["training"] is _training_section.section
  assert markdown.startswith("## Training")
  assert "smoke scale" in markdown and "Speed ratio" in markdown
  root = tmp_path / "training"
  for name, experiment in experiments.EXPERIMENTS.items():
    if experiment.report_section != "training":  # shown (and tested) by its own section
      assert f"| {name} |" not in markdown and not (root / name).exists()
      continue
    assert f"| {name} |" in markdown
    summary = json.loads((root / name / "summary.json").read_text())
    assert summary["name"] == name and summary["scale"] == "smoke"
    for row in summary["rows"]:
      assert "history" not in row  # per-epoch curves live in metrics.jsonl
      assert 0.0 <= row["test_accuracy"] <= 1.0 and row["test_loss"] > 0
      assert (root / row["curves"]).stat().st_size > 5_000
      assert f"training/{row['curves']}" in markdown
  deck = json.loads((root / "deck_vs_compiled" / "summary.json").read_text())["rows"][0]
  assert deck["extra"]["same_final_loss"] is True and deck["extra"]["speed_ratio"] > 0
  assert (root / "sgd_vs_adam" / "optimizers.png").exists()
  # class imbalance: one row per objective, summarised over seeds, and the recall figure
  imbalance = json.loads((root / "class_imbalance" / "summary.json").read_text())
  assert [r["loss"] for r in imbalance["rows"]] == [
    "cross_entropy",
    "weighted_cross_entropy",
    "focal",
  ]
  for row in imbalance["rows"]:
    recalls = row["extra"]["minority_recall"]
    assert len(recalls) == row["extra"]["seeds"] == 2
    assert row["extra"]["minority_recall_mean"] == sum(recalls) / len(recalls)
  assert (root / "class_imbalance" / "recall.png").stat().st_size > 5_000
  assert "± " in markdown
