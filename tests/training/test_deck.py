"""The deck's per-example loop against float64 NumPy, and the compiled loop against the deck."""

import dataclasses

import numpy as np
import pytest

from xentax import data, training
from xentax.training import TrainConfig


def numpy_deck_sgd(x, y, theta, alpha, iterations):
  """The deck's pseudocode in float64 NumPy, written independently."""
  theta = np.array(theta, np.float64)
  for _ in range(iterations):
    for j in range(len(x)):
      z = x[j] @ theta
      e = np.exp(z - z.max())
      y_pred = e / e.sum()
      theta = theta - alpha * np.outer(x[j], y_pred - y[j])
  return theta


def test_deck_loop_equals_float64_numpy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(30, 4))
  y = np.eye(3)[rng.integers(0, 3, 30)]
  theta0 = rng.normal(size=(4, 3))
  theta, losses = training.deck_sgd(x, y, theta0, alpha=0.1, iterations=3)
  assert theta.dtype == np.float64
  np.testing.assert_allclose(np.asarray(theta), numpy_deck_sgd(x, y, theta0, 0.1, 3), rtol=1e-12)
  assert len(losses) == 3 and losses[-1] < losses[0]


def test_compiled_loop_with_batch_one_and_no_shuffle_matches_the_deck():
  ds = data.digits(seed=0).subset(120, 30)
  ds = dataclasses.replace(
    ds,
    x_train=training.with_bias_column(ds.x_train),
    x_test=training.with_bias_column(ds.x_test),
  )
  theta0 = np.random.default_rng(1).normal(0, 0.01, (65, 10)).astype(np.float32)
  theta_deck, deck_losses = training.deck_sgd(
    ds.x_train, np.eye(10, dtype=np.float32)[ds.y_train], theta0, alpha=0.05, iterations=2
  )
  config = TrainConfig(
    optimizer="sgd",
    lr=0.05,
    batch_size=1,
    shuffle=False,
    epochs=2,
    model_options={"use_bias": False},
  )
  result = training.train(config, dataset=ds, params={"w": theta0}, progress=False)
  np.testing.assert_allclose(np.asarray(result.params["w"]), np.asarray(theta_deck), atol=1e-5)
  compiled_losses = [r["train_loss"] for r in result.history]
  np.testing.assert_allclose(compiled_losses, deck_losses, rtol=1e-5)
  reference = numpy_deck_sgd(ds.x_train.astype(np.float64), np.eye(10)[ds.y_train], theta0, 0.05, 2)
  np.testing.assert_allclose(np.asarray(result.params["w"]), reference, atol=1e-5)


def test_deck_loop_rejects_mismatched_shapes():
  with pytest.raises(ValueError, match="theta"):
    training.deck_sgd(np.ones((3, 4)), np.ones((3, 2)), np.ones((5, 2)), alpha=0.1)
