"""The report's Training section in quick mode; it also smoke-runs every experiment.

Each experiment is run at ``"smoke"`` scale (a few steps) so the section's whole path, every
experiment's runner and files included, is exercised within the suite's time budget.
"""

import json

from xentax.report import _report, _training_section
from xentax.training import experiments


def test_training_section_quick_smoke_runs_every_experiment(tmp_path, monkeypatch):
  real_run = experiments.run
  monkeypatch.setattr(
    experiments, "run", lambda name, root, scale: real_run(name, root, scale="smoke")
  )
  markdown = _training_section.section(tmp_path, quick=True)
  assert "training" in _report.SECTIONS
  assert markdown.startswith("## Training")
  assert "quick scale" in markdown and "Speed ratio" in markdown
  root = tmp_path / "training"
  for name, experiment in experiments.EXPERIMENTS.items():
    if experiment.report_section != "training":  # shown (and tested) by its own section
      assert f"| {name} |" not in markdown and not (root / name).exists()
      continue
    assert f"| {name} |" in markdown
    summary = json.loads((root / name / "summary.json").read_text())
    for row in summary["rows"]:
      assert 0.0 <= row["test_accuracy"] <= 1.0 and row["test_loss"] > 0
      assert (root / row["curves"]).stat().st_size > 5_000
      assert f"training/{row['curves']}" in markdown
  deck = json.loads((root / "deck_vs_compiled" / "summary.json").read_text())["rows"][0]
  assert deck["same_final_loss"] is True and deck["speed_ratio"] > 0
  assert (root / "sgd_vs_adam" / "optimizers.png").exists()
