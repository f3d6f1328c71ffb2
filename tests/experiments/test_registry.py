"""Experiments by name, their scales, their records and ``xentax experiment``."""

import json

import numpy as np
import pytest

from xentax import cli, data, experiments, records

pytestmark = pytest.mark.slow  # runs experiments through the CLI


def test_unknown_experiment_or_scale_is_a_clear_error(tmp_path):
  with pytest.raises(ValueError, match="unknown experiment 'nope'; choose from binary, "):
    experiments.run("nope", tmp_path)
  with pytest.raises(ValueError, match="unknown scale 'huge'; choose from full, quick, smoke"):
    experiments.run("binary", tmp_path, scale="huge")
  assert not any(tmp_path.iterdir())


def test_every_experiment_has_a_family_module_and_a_description():
  for name, experiment in experiments.EXPERIMENTS.items():
    assert experiment.name == name and experiment.description
    assert experiment.runner.__module__.startswith("xentax.experiments._")
    assert experiment.report_section in ("training", "large_vocabularies", "soft_targets")


def test_result_records_serialise_without_history(tmp_path):
  row = experiments.RunRecord(
    run="r",
    model="m",
    dataset="d",
    loss="cross_entropy",
    optimizer="adam",
    epochs=1,
    test_accuracy=0.5,
    test_loss=float("nan"),
    history=[{"epoch": 1}],
  )
  result = experiments.ExperimentResult("e", "smoke", [row], info={"x": np.float32(2.0)})
  records.write_json(tmp_path / "s.json", result)
  written = json.loads((tmp_path / "s.json").read_text())
  assert written["rows"][0]["test_loss"] is None  # NaN -> null
  assert "history" not in written["rows"][0] and written["info"]["x"] == 2.0
  assert result.row("r") is row
  with pytest.raises(KeyError, match=r"no run 'x'; it has \['r'\]"):
    result.row("x")


def test_baselines_are_the_constant_predictors_cross_entropy():
  ds = data.blobs(num_classes=2, imbalance_ratio=4.0, seed=0)
  rate = ds.y_train.mean()
  y = ds.y_test
  expected = -np.mean(y * np.log(rate) + (1 - y) * np.log(1 - rate))
  assert experiments.base_rate_cross_entropy(ds) == pytest.approx(expected)
  counts = np.bincount(ds.y_train, minlength=2) + 1.0
  expected = -np.mean(np.log(counts / counts.sum())[y])
  assert experiments.unigram_cross_entropy(ds) == pytest.approx(expected)


def test_xentax_experiment_command(tmp_path, capsys):
  argv = ["experiment", "mlp_digits", "--scale", "smoke", "--out", str(tmp_path)]
  assert cli.main(argv) == 0
  out = capsys.readouterr().out
  assert "mlp: test accuracy" in out and "test accuracy >= 0.97" in out
  summary = json.loads((tmp_path / "mlp_digits" / "summary.json").read_text())
  assert summary["rows"][0]["bar"] == "test accuracy >= 0.97"
  assert (tmp_path / "mlp_digits" / "mlp" / "curves.png").exists()
  # a second run into the same folder replaces the first (experiments are re-runnable)
  assert cli.main(argv) == 0


def test_xentax_experiment_unknown_name_lists_the_experiments(capsys):
  assert _exit_code(["experiment", "nope"]) == 2
  err = capsys.readouterr().err
  assert "invalid choice: 'nope'" in err and "'large_vocab'" in err
  assert len(err.strip().splitlines()) == 1


def _exit_code(argv):
  try:
    return cli.main(argv)
  except SystemExit as err:
    return err.code
