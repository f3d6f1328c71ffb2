"""The metrics' input kinds: probabilities and binary (sigmoid) scores, never read as logits."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xentax import metrics

RNG = np.random.default_rng(0)
Y = RNG.integers(0, 5, 300)
Z = 2.5 * (RNG.normal(size=(300, 5)) + 1.5 * np.eye(5)[Y])
P = np.asarray(jax.nn.softmax(Z))
YB = (RNG.uniform(size=400) < 0.4).astype(np.int32)
ZB = 3.0 * (2 * YB - 1 + RNG.normal(size=400))
PB = 1 / (1 + np.exp(-ZB))

METRICS = {
  "top_k_accuracy": lambda s, y, **kw: metrics.top_k_accuracy(s, y, **kw),
  "perplexity": lambda s, y, **kw: metrics.perplexity(s, y, **kw),
  "predictive_entropy": lambda s, y, **kw: metrics.predictive_entropy(s, y, **kw),
  "brier_score": lambda s, y, **kw: metrics.brier_score(s, y, **kw),
  "expected_calibration_error": lambda s, y, **kw: metrics.expected_calibration_error(s, y, **kw),
  "maximum_calibration_error": lambda s, y, **kw: metrics.maximum_calibration_error(s, y, **kw),
  "calibration_bins": lambda s, y, **kw: jnp.stack(metrics.calibration_bins(s, y, **kw)),
  "fit_temperature": lambda s, y, **kw: metrics.fit_temperature(s, y, **kw),
}


@pytest.mark.parametrize("name", METRICS)
def test_probabilities_give_what_their_logits_give(name):
  fn = METRICS[name]
  np.testing.assert_allclose(fn(P, Y, kind="probs"), fn(Z, Y), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", METRICS)
def test_binary_scores_are_the_two_class_softmax(name):
  fn = METRICS[name]
  two_class = np.stack([np.zeros_like(ZB), ZB], axis=-1)
  want = fn(two_class, YB)
  np.testing.assert_allclose(fn(ZB, YB, kind="binary_logits"), want, rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(fn(PB, YB, kind="binary_probs"), want, rtol=1e-4, atol=1e-5)


def _binary_ece_reference(p, y, num_bins=15):
  """Top-label ECE of sigmoid outputs in float64 NumPy: confidence max(p, 1 - p)."""
  p = np.asarray(p, np.float64)
  confidence = np.maximum(p, 1 - p)
  correct = (p > 0.5) == (y == 1)
  index = np.clip(np.ceil(confidence * num_bins).astype(int) - 1, 0, num_bins - 1)
  ece = 0.0
  for b in range(num_bins):
    inside = index == b
    if inside.any():
      ece += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
  return ece


def test_binary_ece_against_a_numpy_reference():
  got = metrics.expected_calibration_error(ZB, YB, kind="binary_logits")
  np.testing.assert_allclose(got, _binary_ece_reference(PB, YB), rtol=1e-5)


def test_binary_temperature_scaling_calibrates():
  temperature = metrics.fit_temperature(ZB, YB, kind="binary_logits")
  before = metrics.expected_calibration_error(ZB, YB, kind="binary_logits")
  after = metrics.expected_calibration_error(ZB / temperature, YB, kind="binary_logits")
  assert float(temperature) > 1 and float(after) < float(before)


def test_binary_reliability_diagram():
  fig = metrics.reliability_diagram(ZB, YB, kind="binary_logits")
  assert len(fig.axes) == 2


def test_probabilities_passed_as_logits_warn_and_logits_do_not():
  with pytest.warns(UserWarning, match="pass kind='probs'"):
    metrics.expected_calibration_error(P, Y)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    metrics.expected_calibration_error(Z, Y)
    metrics.expected_calibration_error(P, Y, kind="probs")
    metrics.top_k_accuracy(P, Y)  # only the order counts: probabilities are fine there


@pytest.mark.parametrize(
  "scores, labels, kind, match",
  [
    (ZB, YB + 1, "binary_logits", "binary labels must be 0 or 1"),
    (PB * 2, YB, "binary_probs", r"probabilities must lie in \[0, 1\]"),
    (P - 0.5, Y, "probs", r"probabilities must lie in \[0, 1\]"),
    (Z, Y, "softmax", "kind='softmax' is not supported"),
  ],
)
def test_bad_kinds_and_values_raise(scores, labels, kind, match):
  with pytest.raises(ValueError, match=match):
    metrics.expected_calibration_error(scores, labels, kind=kind)


def test_under_jit_bad_binary_labels_give_nan():
  ece = jax.jit(lambda z, y: metrics.brier_score(z, y, kind="binary_logits", reduction="none"))
  out = ece(ZB[:3], jnp.array([0, 1, 3]))
  assert np.isfinite(out[:2]).all() and np.isnan(out[2])


def test_ignore_index_drops_binary_entries():
  labels = np.where(np.arange(YB.size) % 7 == 0, -100, YB)
  kept = labels != -100
  got = metrics.expected_calibration_error(ZB, labels, kind="binary_logits", ignore_index=-100)
  np.testing.assert_allclose(got, _binary_ece_reference(PB[kept], YB[kept]), rtol=1e-5)
