"""The ``xentax`` command line: user mistakes, Ctrl-C, run folders, flags from TrainConfig."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

import xentax
from xentax import cli
from xentax.records import read_jsonl
from xentax.training import TrainConfig

pytestmark = pytest.mark.slow  # runs the CLI end to end (training runs, subprocesses)


def _run(argv):
  try:
    return cli.main(argv)
  except SystemExit as err:  # argparse's own errors and --help
    return err.code


TRAIN = ["train", "--model", "softmax_regression", "--dataset", "iris", "--epochs", "2"]


@pytest.mark.parametrize(
  ("argv", "message"),
  [
    (["train", "--model", "nope"], "invalid choice: 'nope' (choose from 'logistic_regression'"),
    (["train", "--dataset", "mnist"], "invalid choice: 'mnist' (choose from 'blobs'"),
    (["train", "--loss", "hinge"], "invalid choice: 'hinge' (choose from 'cross_entropy'"),
    (["train", "--optimizer", "lbfgs"], "invalid choice: 'lbfgs' (choose from 'sgd'"),
    (["train", "--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    (["train", "--epochs", "0"], "epochs must be an integer >= 1; got 0"),
    (["train", "--batch-size", "-3"], "batch_size must be an integer >= 1; got -3"),
    (["train", "--lr", "0"], "lr (learning rate) must be a finite number > 0; got 0.0"),
    (["train", "--lr", "nan"], "lr (learning rate) must be a finite number > 0; got nan"),
    (["train", "--devices", "0"], "devices must be an integer >= 1 or unset; got 0"),
    (
      ["train", "--model", "next_word_mlp", "--dataset", "digits"],
      "model 'next_word_mlp' does not fit dataset 'digits' (a multiclass task);"
      " next_word_mlp takes next_word, synthetic_next_word",
    ),
    (
      ["train", "--model", "cnn", "--dataset", "iris"],
      "model 'cnn' needs an image dataset; 'iris' is not one: choose from digits, cat_not_cat",
    ),
    (
      ["train", "--model", "logistic_regression", "--dataset", "digits"],
      "model 'logistic_regression' does not fit dataset 'digits'",
    ),
    (["gradcheck", "--loss", "hinge"], "invalid choice: 'hinge' (choose from"),
    (["gradcheck", "--dtype", "float16"], "invalid choice: 'float16'"),
    (["bench", "--suite", "speed"], "invalid choice: 'speed' (choose from 'losses'"),
    (["bench", "--suite", "gpu", "all"], "the gpu suite runs alone; got suites gpu, all"),
    (["bench", "--cpu-devices", "0"], "--cpu-devices must be >= 1; got 0"),
    (["reproduce", "--only", "nope"], "invalid choice: 'nope' (choose from 'worked_examples'"),
    (["experiment", "nope"], "invalid choice: 'nope' (choose from 'binary'"),
  ],
)
def test_a_user_mistake_exits_2_with_one_line_and_creates_nothing(
  argv, message, tmp_path, capsys, monkeypatch
):
  monkeypatch.chdir(tmp_path)
  assert _run(argv) == 2
  captured = capsys.readouterr()
  assert message in captured.err
  assert len(captured.err.strip().splitlines()) == 1, captured.err
  assert "Traceback" not in captured.err and captured.out == ""
  assert not any(tmp_path.iterdir())  # no run folder, no report folder


def test_a_gradcheck_that_checks_nothing_exits_2(tmp_path, capsys):
  # clip_loss runs in float64 and float32 only: nothing checked is not a pass.
  path = tmp_path / "checks.json"
  assert _run(["gradcheck", "--dtype", "bfloat16", "--loss", "clip_loss", "--json", str(path)]) == 2
  assert "no check of clip_loss at dtype bfloat16" in capsys.readouterr().err
  assert not path.exists()


def test_output_paths_that_cannot_be_written_exit_2(tmp_path, capsys):
  missing = tmp_path / "missing" / "checks.json"
  assert _run(["gradcheck", "--loss", "binary_cross_entropy", "--json", str(missing)]) == 2
  assert f"--json {missing}: folder {missing.parent} does not exist" in capsys.readouterr().err
  a_file = tmp_path / "file"
  a_file.write_text("x")
  assert _run([*TRAIN, "--out", str(a_file)]) == 2
  assert "is a file, not a folder" in capsys.readouterr().err
  assert _run(["reproduce", "--out", str(a_file / "sub")]) == 2
  assert "cannot create or write into" in capsys.readouterr().err
  if os.geteuid() != 0:  # root writes anywhere
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert _run([*TRAIN, "--out", str(locked / "run")]) == 2
    assert "cannot write into" in capsys.readouterr().err


def test_a_non_empty_run_folder_is_refused_unless_overwrite_which_clears_it(tmp_path, capsys):
  out = tmp_path / "run"
  assert _run([*TRAIN, "--out", str(out)]) == 0
  (out / "stale.png").write_text("old figure")
  assert _run([*TRAIN, "--out", str(out)]) == 2
  assert "is not empty; pass --overwrite" in capsys.readouterr().err
  assert (out / "stale.png").exists()
  assert _run([*TRAIN, "--epochs", "3", "--out", str(out), "--overwrite"]) == 0
  assert not (out / "stale.png").exists()
  assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2, 3]
  # --overwrite never clears a folder that is not a run folder
  other = tmp_path / "other"
  other.mkdir()
  (other / "notes.txt").write_text("mine")
  assert _run([*TRAIN, "--out", str(other), "--overwrite"]) == 2
  assert "not a run folder" in capsys.readouterr().err and (other / "notes.txt").exists()


def test_ctrl_c_exits_130_and_keeps_the_curves_so_far(tmp_path, capsys, monkeypatch):
  from xentax.training import _objectives

  real = _objectives.evaluate
  calls = []

  def interrupt_on_third_epoch(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:
      raise KeyboardInterrupt
    return real(*args, **kwargs)

  monkeypatch.setattr(_objectives, "evaluate", interrupt_on_third_epoch)
  out = tmp_path / "run"
  assert _run([*TRAIN, "--epochs", "5", "--out", str(out)]) == 130
  assert "interrupted" in capsys.readouterr().err
  summary = json.loads((out / "summary.json").read_text())
  assert summary["status"] == "interrupted" and summary["epochs_completed"] == 2
  assert summary["curves"]["epoch"] == [1, 2] and len(summary["curves"]["test_loss"]) == 2
  assert len(read_jsonl(out / "metrics.jsonl")) == 2
  assert (out / "curves.png").stat().st_size > 5_000
  assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # atomic writes only


def test_train_writes_config_metrics_summary_and_curves(tmp_path, capsys):
  out = tmp_path / "run"
  argv = [*TRAIN[:-1], "3", "--optimizer", "momentum", "--lr", "0.05", "--out", str(out)]
  assert cli.main(argv) == 0
  config = json.loads((out / "config.json").read_text())
  assert config["optimizer"] == "momentum" and config["lr"] == 0.05
  records = read_jsonl(out / "metrics.jsonl")
  assert [r["epoch"] for r in records] == [1, 2, 3]
  summary = json.loads((out / "summary.json").read_text())
  assert summary["final_test_accuracy"] == records[-1]["test_accuracy"]
  assert (out / "curves.png").stat().st_size > 5_000
  assert "test accuracy" in capsys.readouterr().out


def test_train_flags_are_the_config_fields_with_their_defaults(capsys):
  assert _run(["train", "--help"]) == 0
  text = capsys.readouterr().out
  for field in dataclasses.fields(TrainConfig):
    if field.name.endswith("_options"):
      continue
    flag = "--" + field.name.replace("_", "-")
    assert flag in text, flag
  assert "(default: softmax_regression)" in text and "(default: 20)" in text
  assert "mlp: sgd 0.1" in text  # the learning-rate table


def test_mlp_with_sgd_uses_its_own_learning_rate(tmp_path):
  out = tmp_path / "run"
  argv = ["train", "--model", "mlp", "--optimizer", "sgd", "--epochs", "3", "--out", str(out)]
  assert cli.main(argv) == 0
  assert json.loads((out / "config.json").read_text())["lr"] == 0.1
  # Adam's 1e-3 left SGD near chance (0.1); its own rate learns within 3 epochs
  assert json.loads((out / "summary.json").read_text())["final_test_accuracy"] > 0.8


def test_help_and_version_start_no_jax():
  code = (
    "import sys, contextlib, io\n"
    "from xentax import cli\n"
    "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
    "  try: cli.main(['--help'])\n"
    "  except SystemExit: pass\n"
    "assert 'reproduce' in out.getvalue()\n"
    "heavy = [m for m in ('jax', 'matplotlib', 'sklearn', 'flax', 'optax') if m in sys.modules]\n"
    "print(heavy)\n"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "[]"


def test_console_script_version():
  out = subprocess.run(
    [sys.executable, "-m", "xentax.cli", "--version"], capture_output=True, text=True, check=True
  )
  assert out.stdout.strip() == f"xentax {xentax.__version__}"
