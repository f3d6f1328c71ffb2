"""Parity with PyTorch where it is installed (it is not a test dependency; skipped otherwise).

The float64 NumPy references are the tests of record; this module confirms that they (and
xentax) read torch's documented semantics the way torch computes them.
"""

import numpy as np
import pytest

import xentax

torch = pytest.importorskip("torch")
F = torch.nn.functional
rng = np.random.default_rng(0)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
def test_cross_entropy_matches_torch(reduction, smoothing, weighted):
  z = rng.normal(size=(10, 5, 3)) * 3
  y = rng.integers(0, 5, (10, 3))
  y[::3, 0] = -100
  w = np.linspace(0.3, 2.0, 5) if weighted else None
  want = F.cross_entropy(
    torch.tensor(z),
    torch.tensor(y),
    weight=None if w is None else torch.tensor(w),
    ignore_index=-100,
    label_smoothing=smoothing,
    reduction=reduction,
  ).numpy()
  got = xentax.sparse_categorical_cross_entropy_with_logits(
    z, y, axis=1, class_weights=w, ignore_index=-100, label_smoothing=smoothing, reduction=reduction
  )
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_cross_entropy_with_probability_targets_matches_torch(reduction):
  z = rng.normal(size=(10, 5)) * 3
  t = rng.uniform(size=(10, 5))
  t /= t.sum(-1, keepdims=True)
  w = np.linspace(0.3, 2.0, 5)
  want = F.cross_entropy(
    torch.tensor(z),
    torch.tensor(t),
    weight=torch.tensor(w),
    label_smoothing=0.1,
    reduction=reduction,
  ).numpy()
  got = xentax.categorical_cross_entropy_with_logits(
    z, t, class_weights=w, label_smoothing=0.1, reduction=reduction
  )
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum_over_batch_size"])
def test_cross_entropy_with_probability_targets_and_sample_weights_matches_torch(reduction):
  z = rng.normal(size=(10, 5)) * 3
  t = rng.uniform(size=(10, 5))
  t /= t.sum(-1, keepdims=True)
  w = np.linspace(0.3, 2.0, 5)
  s = rng.uniform(0.1, 2.0, size=10)
  per_example = F.cross_entropy(
    torch.tensor(z), torch.tensor(t), weight=torch.tensor(w), label_smoothing=0.1, reduction="none"
  ) * torch.tensor(s)
  want = (per_example.sum() / s.sum() if reduction == "mean" else per_example.mean()).numpy()
  got = xentax.categorical_cross_entropy_with_logits(
    z, t, class_weights=w, label_smoothing=0.1, sample_weight=s, reduction=reduction
  )
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_binary_losses_match_torch(reduction):
  z = rng.normal(size=(8, 4)) * 5
  z[0, 0] = 60.0
  y = rng.uniform(size=(8, 4))
  pw, w = np.linspace(0.5, 3, 4), rng.uniform(size=(8, 4))
  want = F.binary_cross_entropy_with_logits(
    torch.tensor(z),
    torch.tensor(y),
    weight=torch.tensor(w),
    pos_weight=torch.tensor(pw),
    reduction=reduction,
  ).numpy()
  got = xentax.binary_cross_entropy_with_logits(z, y, pos_weight=pw, weights=w, reduction=reduction)
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
  p = 1 / (1 + np.exp(-z))
  p[1, 1], p[2, 2] = 0.0, 1.0
  want = F.binary_cross_entropy(
    torch.tensor(p), torch.tensor(y), weight=torch.tensor(w), reduction=reduction
  ).numpy()
  got = xentax.binary_cross_entropy(p, y, weights=w, reduction=reduction)
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_nll_loss_on_log_probabilities_matches_sparse_probs():
  p = rng.uniform(size=(10, 4))
  p /= p.sum(-1, keepdims=True)
  y = rng.integers(0, 4, 10)
  w = np.linspace(0.3, 2.0, 4)
  want = F.nll_loss(torch.tensor(np.log(p)), torch.tensor(y), weight=torch.tensor(w)).numpy()
  got = xentax.sparse_categorical_cross_entropy(p, y, class_weights=w)
  np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "sum_over_batch_size"])
@pytest.mark.parametrize("weighted", [False, True])
def test_sample_weight_matches_torch_per_example_losses_times_weights(reduction, weighted):
  # torch has no sample_weight: the documented forms are (loss(reduction="none") * s) summed,
  # divided by sum(s * w[y]) for the weighted mean, or averaged for Keras's default.
  z = rng.normal(size=(10, 5)) * 3
  y = rng.integers(0, 5, 10)
  y[::4] = -100
  s = rng.uniform(0.0, 2.0, 10)
  w = np.linspace(0.3, 2.0, 5) if weighted else None
  per_example = F.cross_entropy(
    torch.tensor(z),
    torch.tensor(y),
    weight=None if w is None else torch.tensor(w),
    ignore_index=-100,
    label_smoothing=0.1,
    reduction="none",
  ).numpy()
  kept = y != -100
  w_y = np.where(kept, 1.0 if w is None else w[np.where(kept, y, 0)], 0.0)
  want = {
    "none": per_example * s,
    "sum": np.sum(per_example * s),
    "mean": np.sum(per_example * s) / np.sum(s * w_y),
    "sum_over_batch_size": np.sum(per_example * s) / kept.sum(),
  }[reduction]
  got = xentax.sparse_categorical_cross_entropy_with_logits(
    z,
    y,
    class_weights=w,
    ignore_index=-100,
    label_smoothing=0.1,
    sample_weight=s,
    reduction=reduction,
  )
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
  fused = xentax.fused_linear_cross_entropy(
    z,
    np.eye(5),
    y,
    class_weights=w,
    ignore_index=-100,
    label_smoothing=0.1,
    sample_weight=s,
    reduction=reduction,
    schedule="vocab",
    block_size=2,
  )
  np.testing.assert_allclose(fused, want, rtol=1e-12, atol=1e-12)


def test_sample_weighted_probs_match_torch_nll_loss():
  p = rng.uniform(size=(10, 4))
  p /= p.sum(-1, keepdims=True)
  y = rng.integers(0, 4, 10)
  s = rng.uniform(0.0, 2.0, 10)
  per_example = F.nll_loss(torch.tensor(np.log(p)), torch.tensor(y), reduction="none").numpy()
  got = xentax.sparse_categorical_cross_entropy(p, y, sample_weight=s)
  np.testing.assert_allclose(got, np.sum(per_example * s) / np.sum(s), rtol=1e-12)
  got = xentax.sparse_categorical_cross_entropy(
    p, y, sample_weight=s, reduction="sum_over_batch_size"
  )
  np.testing.assert_allclose(got, np.mean(per_example * s), rtol=1e-12)


def test_softcap_matches_torch_cross_entropy_of_capped_logits():
  z = rng.normal(size=(10, 5)) * 8
  y = rng.integers(0, 5, 10)
  capped = 5.0 * torch.tanh(torch.tensor(z) / 5.0)
  want = F.cross_entropy(capped, torch.tensor(y), label_smoothing=0.1).numpy()
  got = xentax.sparse_categorical_cross_entropy_with_logits(z, y, softcap=5.0, label_smoothing=0.1)
  np.testing.assert_allclose(got, want, rtol=1e-12)


def _torch_reduce(losses, w, reduction):
  """Sample weights the way a torch user applies them to ``reduction="none"`` losses."""
  weighted = losses * w
  if reduction == "mean":
    return (weighted.sum() / w.sum()).numpy()
  if reduction == "sum_over_batch_size":
    return weighted.mean().numpy()
  return (weighted.sum() if reduction == "sum" else weighted).numpy()


def _torch_focal(z, y, gamma, alpha):
  """torchvision.ops.sigmoid_focal_loss, written with torch.nn.functional (no torchvision)."""
  p = torch.sigmoid(z)
  ce = F.binary_cross_entropy_with_logits(z, y, reduction="none")
  p_t = p * y + (1 - p) * (1 - y)
  return (alpha * y + (1 - alpha) * (1 - y)) * ce * (1 - p_t) ** gamma


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "sum_over_batch_size"])
def test_binary_label_smoothing_and_sample_weights_match_torch(reduction):
  z = rng.normal(size=(8, 4)) * 4
  y = (rng.uniform(size=(8, 4)) > 0.5).astype(np.float64)
  eps = 0.2
  y_smooth = torch.tensor(y * (1 - eps) + eps / 2)
  s = rng.uniform(0.0, 2.0, size=(8, 4))
  p = 1 / (1 + np.exp(-z))
  p[1, 1], p[2, 2] = 0.0, 1.0
  cases = [
    (
      F.binary_cross_entropy(torch.tensor(p), y_smooth, reduction="none"),
      xentax.binary_cross_entropy,
      p,
    ),
    (
      F.binary_cross_entropy_with_logits(torch.tensor(z), y_smooth, reduction="none"),
      xentax.binary_cross_entropy_with_logits,
      z,
    ),
  ]
  for torch_losses, fn, scores in cases:
    want = _torch_reduce(torch_losses, torch.tensor(s), reduction)
    got = fn(scores, y, label_smoothing=eps, sample_weight=s, reduction=reduction)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
  want = _torch_reduce(
    _torch_focal(torch.tensor(z), y_smooth, 2.0, 0.25), torch.tensor(s), reduction
  )
  got = xentax.binary_focal_loss_with_logits(
    z, y, gamma=2.0, alpha=0.25, label_smoothing=eps, sample_weight=s, reduction=reduction
  )
  np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
