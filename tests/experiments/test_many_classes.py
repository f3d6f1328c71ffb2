"""The many-classes experiment: its teacher is the Bayes posterior, every method trains and is
timed, and the record has what the report reads."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xentax import experiments
from xentax.experiments import _many_classes
from xentax.records import read_jsonl


def test_the_teacher_is_the_bayes_posterior_of_the_data():
  """Gaussian classes around their means with a log-uniform prior: log p*(y | x) from the
  densities, in float64 NumPy, equals the teacher's softmax."""
  config = _many_classes.ManyClassesConfig(test_examples=16, train_examples=16)
  vocab = 50
  *_, x, y, w, b, log_q = _many_classes.teacher_data(vocab, config, jax.random.key(3))
  means = np.asarray(w, np.float64) * config.noise**2
  x = np.asarray(x, np.float64)
  log_density = -np.sum((x[:, :, None] - means[None]) ** 2, axis=1) / (2 * config.noise**2)
  joint = log_density + np.asarray(log_q, np.float64)
  top = joint.max(1, keepdims=True)
  posterior = joint - top - np.log(np.exp(joint - top).sum(1, keepdims=True))
  teacher = jax.nn.log_softmax(jnp.asarray(x) @ w + b, axis=1)
  np.testing.assert_allclose(teacher, posterior, rtol=1e-4, atol=1e-3)
  k = np.arange(vocab)
  np.testing.assert_allclose(
    np.exp(np.asarray(log_q, np.float64)), np.log((k + 2) / (k + 1)) / np.log(vocab + 1), rtol=1e-5
  )


@pytest.mark.slow  # runs an experiment
def test_every_method_trains_and_is_timed(tmp_path):
  result = experiments.run("many_classes", tmp_path, scale="smoke")
  config = _many_classes.SCALES["smoke"]
  methods = ["full softmax"]
  for s in config.sampled:
    methods += [f"sampled, S = {s}", f"sampled, S = {s}, no correction"]
  methods.append("adaptive softmax")
  assert [row.loss for row in result.rows] == methods * len(config.vocab_sizes)
  for row in result.rows:
    e = row.extra
    assert np.isfinite(row.test_loss) and 0 <= row.test_accuracy <= 1
    assert e["median_step_s"] > 0 and e["temp_bytes"] is not None
    assert e["excess_test_loss"] == pytest.approx(
      row.test_loss - result.info[f"V={e['vocab_size']}"]["teacher_test_loss"]
    )
  assert result.rows[0].extra["step_time_ratio"] == 1.0
  assert len(read_jsonl(tmp_path / "many_classes" / "metrics.jsonl")) == len(result.rows)
  assert (tmp_path / "many_classes" / "frontier.png").stat().st_size > 0
