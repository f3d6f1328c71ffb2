"""Experiments by name and ``xentax train``.

Every experiment is smoke-run (a few steps) by ``tests/report/test_training_section.py``.
"""

import json

import pytest

from xentax import cli
from xentax.training import experiments, read_jsonl


def test_unknown_experiment_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="unknown experiment"):
    experiments.run("nope", tmp_path)


def test_xentax_train_writes_config_metrics_summary_and_curves(tmp_path, capsys):
  out = tmp_path / "run"
  argv = ["train", "--model", "softmax_regression", "--dataset", "iris", "--epochs", "3"]
  assert cli.main([*argv, "--optimizer", "momentum", "--lr", "0.05", "--out", str(out)]) == 0
  config = json.loads((out / "config.json").read_text())
  assert config["optimizer"] == "momentum" and config["lr"] == 0.05
  records = read_jsonl(out / "metrics.jsonl")
  assert [r["epoch"] for r in records] == [1, 2, 3]
  summary = json.loads((out / "summary.json").read_text())
  assert summary["final_test_accuracy"] == records[-1]["test_accuracy"]
  assert (out / "curves.png").stat().st_size > 5_000
  assert "test accuracy" in capsys.readouterr().out
