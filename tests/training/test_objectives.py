"""Training objectives by name: balanced weights and the weighted loss against NumPy."""

import numpy as np
import pytest

from xentax import training


def test_balanced_class_weights_are_n_over_c_count():
  labels = np.array([0, 0, 0, 1, 2, 2])
  weights = training.balanced_class_weights(labels, 4)
  np.testing.assert_allclose(weights, [6 / 12, 6 / 4, 6 / 8, 6 / 4])  # empty class: count 1
  assert weights.dtype == np.float32


def test_weighted_cross_entropy_is_the_weighted_mean_of_numpy_ce():
  rng = np.random.default_rng(0)
  labels = np.array([0, 0, 0, 1, 2, 2])
  logits = rng.normal(size=(6, 3)).astype(np.float32)
  loss = training.make_loss("weighted_cross_entropy", labels=labels, num_classes=3)
  z = logits.astype(np.float64)
  ce = np.log(np.exp(z).sum(1)) - z[np.arange(6), labels]
  w = training.balanced_class_weights(labels, 3).astype(np.float64)[labels]
  assert float(loss(logits, labels)) == pytest.approx((w * ce).sum() / w.sum(), rel=1e-5)


def test_unknown_loss_and_missing_labels_are_clear_errors():
  with pytest.raises(ValueError, match="unknown loss 'hinge'"):
    training.make_loss("hinge")
  with pytest.raises(ValueError, match="needs the training labels"):
    training.make_loss("weighted_cross_entropy")
