"""The distillation and calibration experiments at smoke scale: records, figures, numbers."""

import jax.numpy as jnp
import numpy as np
import pytest

import xentax
from xentax import experiments
from xentax.experiments import _soft_targets

pytestmark = pytest.mark.slow  # runs the soft-target experiments


@pytest.fixture(scope="module")
def results(tmp_path_factory):
  root = tmp_path_factory.mktemp("soft_targets")
  return root, {
    name: experiments.run(name, root, scale="smoke") for name in ("distillation", "calibration")
  }


def test_soft_target_experiments_are_registered_for_their_report_section():
  for name in ("distillation", "calibration"):
    assert experiments.EXPERIMENTS[name].report_section == "soft_targets"
  assert all(_soft_targets.SEEDS[s] >= 3 for s in ("full", "quick"))


def test_distillation_rows_are_means_over_seeds_and_the_figure_is_written(results):
  root, by_name = results
  result = by_name["distillation"]
  assert [r.run for r in result.rows] == ["teacher", "student_hard_labels", "student_distilled"]
  for row in result.rows:
    acc = row.extra["accuracy"]
    assert len(acc) == _soft_targets.SEEDS["smoke"] == row.extra["seeds"]
    np.testing.assert_allclose(row.test_accuracy, np.mean(acc))
    np.testing.assert_allclose(row.extra["accuracy_std"], np.std(acc))
    assert all(0.1 < a <= 1.0 for a in acc)  # better than chance on 10 classes
  rows = {r.run: r.test_accuracy for r in result.rows}
  np.testing.assert_allclose(
    result.info["gain"], rows["student_distilled"] - rows["student_hard_labels"]
  )
  assert (root / result.figures["accuracy"]).stat().st_size > 0
  assert (root / "distillation" / "summary.json").exists()


def test_calibration_reports_ece_before_and_after_temperature_scaling(results):
  root, by_name = results
  result = by_name["calibration"]
  assert [r.run for r in result.rows] == ["cross_entropy", "label_smoothing_0.1", "focal_gamma_2"]
  for row in result.rows:
    e = row.extra
    for key in ("ece_before", "ece_after", "temperature"):
      assert len(e[key]) == e["seeds"]
      np.testing.assert_allclose(e[f"{key}_mean"], np.mean(e[key]))
    assert all(0 <= v <= 1 for v in e["ece_before"] + e["ece_after"])
    assert all(t > 0 for t in e["temperature"])
  assert (root / result.figures["reliability"]).stat().st_size > 0


def test_fit_trains_softmax_regression_to_a_known_separable_problem():
  # Two well-separated clusters: a few Adam steps must reach 100% accuracy.
  rng = np.random.default_rng(0)
  x = np.concatenate([rng.normal(-3, 0.5, (20, 2)), rng.normal(3, 0.5, (20, 2))])
  y = np.repeat([0, 1], 20)
  import jax

  params = _soft_targets.init_params(jax.random.key(0), (2, 2))

  def loss(z, y, t):
    return xentax.sparse_categorical_cross_entropy_with_logits(z, y)

  params, values = _soft_targets.fit(params, x, y, loss, steps=50, lr=0.1)
  assert values[-1] < values[0]
  assert _soft_targets.accuracy(_soft_targets.logits_of(params, jnp.asarray(x)), y) == 1.0
