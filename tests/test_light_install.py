"""The losses need only jax and numpy; a command that needs the research extra says how to get it.

Each test runs a fresh interpreter in which the research extra's packages cannot be imported.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xentax.cli import RESEARCH_MODULES

pytestmark = pytest.mark.slow  # fresh interpreters: packaging, not a loss

SRC = Path(__file__).parents[1] / "src"
BLOCK = f"""
import importlib.abc, sys
class Blocker(importlib.abc.MetaPathFinder):
  def find_spec(self, name, path, target=None):
    if name.split(".")[0] in {RESEARCH_MODULES!r}:
      raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, Blocker())
"""


def _run(code: str):
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
  return subprocess.run(
    [sys.executable, "-c", BLOCK + code], env=env, capture_output=True, text=True, timeout=300
  )


def test_the_losses_metrics_gradcheck_and_parallel_need_no_research_package():
  out = _run(
    "import jax.numpy as jnp, xentax\n"
    "from xentax import gradcheck, metrics, parallel\n"
    "z, y = jnp.array([[0.0, 1.0]]), jnp.array([1])\n"
    "print(round(float(xentax.sparse_categorical_cross_entropy_with_logits(z, y)), 5))\n"
    "print(float(metrics.top_k_accuracy(z, y)))\n"
    "print(gradcheck.logits_grad('sparse_categorical_cross_entropy_with_logits', z, y).shape)\n"
  )
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.split() == ["0.31326", "1.0", "(1,", "2)"]


def test_a_command_without_the_research_extra_exits_2_with_the_install_line():
  for command in (["train", "--help"], ["bench"], ["reproduce", "--quick"]):
    out = _run(f"from xentax import cli; sys.exit(cli.main({command!r}))")
    assert out.returncode == 2, (command, out.stderr[-3000:])
    assert out.stderr.strip().endswith("pip install 'xentax[research]'"), out.stderr


def test_the_gradcheck_command_runs_without_the_research_extra():
  out = _run("from xentax import cli; sys.exit(cli.main(['gradcheck', '--loss', 'nll_loss']))")
  assert out.returncode == 0, out.stderr[-3000:]
  assert "0 failed" in out.stdout
