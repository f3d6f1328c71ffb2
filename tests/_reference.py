"""Independent float64 NumPy references for every xentax loss.

Written from the formulas (the deck's, torch's documentation for the options), one example
at a time where that is clearer, and sharing no code with ``xentax``.
"""

import numpy as np


def _reduce(losses, kept, denom, reduction):
  losses = np.where(kept, losses, 0.0)
  if reduction == "none":
    return losses
  if reduction == "sum":
    return losses.sum()
  d = np.where(kept, denom, 0.0).sum()
  return losses.sum() / d if d != 0 else 0.0


def _log_softmax(z):
  m = np.max(z)
  return z - (m + np.log(np.sum(np.exp(z - m))))


def _clamped_log(p):
  with np.errstate(divide="ignore"):
    return np.maximum(np.log(p), -100.0)


def _log_sigmoid(z):
  return -np.logaddexp(0.0, -z)


def binary_cross_entropy(p, y, *, weights=None, where=None, reduction="mean"):
  p = np.asarray(p, np.float64)
  y = np.asarray(y, np.float64)
  losses = -(y * _clamped_log(p) + (1 - y) * _clamped_log(1 - p))
  if weights is not None:
    losses = losses * np.broadcast_to(weights, p.shape)
  kept = np.ones(p.shape, bool) if where is None else np.broadcast_to(where, p.shape)
  return _reduce(losses, kept, np.ones(p.shape), reduction)


def binary_cross_entropy_with_logits(
  z, y, *, pos_weight=None, weights=None, label_smoothing=0.0, where=None, reduction="mean"
):
  z = np.asarray(z, np.float64)
  y = np.asarray(y, np.float64) * (1 - label_smoothing) + label_smoothing / 2
  pw = 1.0 if pos_weight is None else np.broadcast_to(pos_weight, z.shape)
  losses = -(pw * y * _log_sigmoid(z) + (1 - y) * _log_sigmoid(-z))
  if weights is not None:
    losses = losses * np.broadcast_to(weights, z.shape)
  kept = np.ones(z.shape, bool) if where is None else np.broadcast_to(where, z.shape)
  return _reduce(losses, kept, np.ones(z.shape), reduction)


def binary_focal_loss_with_logits(z, y, *, gamma=2.0, alpha=None, where=None, reduction="mean"):
  """torchvision.ops.sigmoid_focal_loss, in probability space."""
  z = np.asarray(z, np.float64)
  y = np.asarray(y, np.float64)
  p = 1 / (1 + np.exp(-z))
  ce = -(y * _log_sigmoid(z) + (1 - y) * _log_sigmoid(-z))
  p_t = p * y + (1 - p) * (1 - y)
  losses = ce * (1 - p_t) ** gamma
  if alpha is not None:
    losses = (alpha * y + (1 - alpha) * (1 - y)) * losses
  kept = np.ones(z.shape, bool) if where is None else np.broadcast_to(where, z.shape)
  return _reduce(losses, kept, np.ones(z.shape), reduction)


def _per_example(scores, axis, fn):
  """Apply ``fn(row, index)`` to every class vector of ``scores`` along ``axis``."""
  moved = np.moveaxis(np.asarray(scores, np.float64), axis, -1)
  out = np.zeros(moved.shape[:-1])
  for index in np.ndindex(*moved.shape[:-1]):
    out[index] = fn(moved[index], index)
  return out


def categorical_cross_entropy_with_logits(
  z, t, *, axis=-1, class_weights=None, label_smoothing=0.0, where=None, reduction="mean"
):
  t_moved = np.moveaxis(np.asarray(t, np.float64), axis, -1)
  num_classes = t_moved.shape[-1]
  w = np.ones(num_classes) if class_weights is None else np.asarray(class_weights, np.float64)

  def one(row, index):
    q = (1 - label_smoothing) * t_moved[index] + label_smoothing / num_classes
    log_p = _log_softmax(row)
    return -sum(w[c] * q[c] * log_p[c] for c in range(num_classes) if q[c] * w[c] != 0)

  losses = _per_example(z, axis, one)
  kept = np.ones(losses.shape, bool) if where is None else np.broadcast_to(where, losses.shape)
  return _reduce(losses, kept, np.ones(losses.shape), reduction)


def categorical_cross_entropy(
  p, t, *, axis=-1, class_weights=None, label_smoothing=0.0, where=None, reduction="mean"
):
  t_moved = np.moveaxis(np.asarray(t, np.float64), axis, -1)
  num_classes = t_moved.shape[-1]
  w = np.ones(num_classes) if class_weights is None else np.asarray(class_weights, np.float64)

  def one(row, index):
    q = (1 - label_smoothing) * t_moved[index] + label_smoothing / num_classes
    return -np.sum(w * q * _clamped_log(row))

  losses = _per_example(p, axis, one)
  kept = np.ones(losses.shape, bool) if where is None else np.broadcast_to(where, losses.shape)
  return _reduce(losses, kept, np.ones(losses.shape), reduction)


def _sparse_kept_and_weight(labels, class_weights, ignore_index, where):
  labels = np.asarray(labels)
  kept = np.ones(labels.shape, bool) if where is None else np.broadcast_to(where, labels.shape)
  if ignore_index is not None:
    kept = kept & (labels != ignore_index)
  if class_weights is None:
    return kept, np.ones(labels.shape)
  safe = np.where(kept, labels, 0)
  return kept, np.asarray(class_weights, np.float64)[safe]


def sparse_categorical_cross_entropy_with_logits(
  z,
  labels,
  *,
  axis=-1,
  class_weights=None,
  ignore_index=None,
  label_smoothing=0.0,
  z_loss=0.0,
  where=None,
  reduction="mean",
):
  """torch.nn.functional.cross_entropy, written as the weighted smoothed dense loss."""
  labels = np.asarray(labels)
  kept, target_w = _sparse_kept_and_weight(labels, class_weights, ignore_index, where)

  def one(row, index):
    if not kept[index]:
      return 0.0
    num_classes = row.shape[0]
    w = np.ones(num_classes) if class_weights is None else np.asarray(class_weights, np.float64)
    q = np.full(num_classes, label_smoothing / num_classes)
    q[labels[index]] += 1 - label_smoothing
    m = np.max(row)
    lse = m + np.log(np.sum(np.exp(row - m)))
    coef = w * q
    nonzero = coef != 0  # 0 * log 0 = 0
    return -np.sum(coef[nonzero] * (row - lse)[nonzero]) + z_loss * lse**2

  losses = _per_example(z, axis, one)
  return _reduce(losses, kept, target_w, reduction)


def sparse_categorical_cross_entropy(
  p, labels, *, axis=-1, class_weights=None, ignore_index=None, where=None, reduction="mean"
):
  labels = np.asarray(labels)
  kept, target_w = _sparse_kept_and_weight(labels, class_weights, ignore_index, where)

  def one(row, index):
    return -_clamped_log(row[labels[index]]) if kept[index] else 0.0

  losses = target_w * _per_example(p, axis, one)
  return _reduce(losses, kept, target_w, reduction)


def sparse_categorical_focal_loss_with_logits(
  z,
  labels,
  *,
  gamma=2.0,
  class_weights=None,
  ignore_index=None,
  axis=-1,
  where=None,
  reduction="mean",
):
  labels = np.asarray(labels)
  kept, target_w = _sparse_kept_and_weight(labels, class_weights, ignore_index, where)

  def one(row, index):
    if not kept[index]:
      return 0.0
    p = np.exp(_log_softmax(row))
    p_y = p[labels[index]]
    return -((1 - p_y) ** gamma) * np.log(p_y)

  losses = target_w * _per_example(z, axis, one)
  return _reduce(losses, kept, target_w, reduction)
