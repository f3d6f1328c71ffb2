"""xentax.plots: figures on matplotlib.figure.Figure, no pyplot state, labelled axes."""

import subprocess
import sys

from xentax import plots

HISTORY = [
  {
    "epoch": e,
    "train_loss": 1 / e,
    "test_loss": 1.2 / e,
    "train_accuracy": 0.5,
    "test_accuracy": 0.6,
  }
  for e in (1, 2, 3)
]


def test_training_curves_name_the_objective_and_draw_baselines(tmp_path):
  fig = plots.training_curves(
    {"run": HISTORY}, title="mlp on digits", objective="focal", baselines={"unigram": 0.9}
  )
  ax_loss, ax_acc = fig.axes
  assert "train: focal" in ax_loss.get_ylabel() and "test: cross-entropy" in ax_loss.get_ylabel()
  assert fig._suptitle.get_text() == "mlp on digits"
  baseline = [line for line in ax_loss.get_lines() if line.get_label().startswith("unigram")]
  assert len(baseline) == 1 and list(baseline[0].get_ydata()) == [0.9, 0.9]
  ticks = [t for t in ax_loss.get_xticks() if 1 <= t <= 3]
  assert all(float(t).is_integer() for t in ticks)  # integer epoch ticks
  path = plots.save(fig, tmp_path / "c.png")
  assert path.read_bytes()[:4] == b"\x89PNG"


def test_per_class_recall_plots_mean_and_each_seed(tmp_path):
  fig = plots.per_class_recall(
    {"ce": [[1.0, 0.4], [1.0, 0.6]], "focal": [[0.9, 0.8], [0.95, 0.7]]},
    class_names=["class 0", "class 1 (minority)"],
    title="blobs",
  )
  (ax,) = fig.axes
  heights = sorted(round(p.get_height(), 3) for p in ax.patches)
  assert heights == [0.5, 0.75, 0.925, 1.0]
  plots.save(fig, tmp_path / "r.png")


def test_importing_xentax_plots_touches_no_pyplot_or_backend():
  code = (
    "import sys, matplotlib\n"
    "before = matplotlib.get_backend() if 'matplotlib.pyplot' in sys.modules else None\n"
    "from xentax import plots\n"
    "print('matplotlib.pyplot' in sys.modules)\n"
  )
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
  assert out.stdout.strip() == "False"
