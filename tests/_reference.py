"""Independent float64 NumPy references for every xentax loss.

Written from the formulas (the deck's, torch's documentation for the options), one example
at a time where that is clearer, and sharing no code with ``xentax``.
"""

import numpy as np


def _reduce(losses, kept, denom, reduction, sample_weight=None):
  """Weighted reduction: ``mean`` = sum(s l) / sum(s d), ``sum_over_batch_size`` = sum(s l) / N."""
  losses = np.asarray(losses, dtype=np.float64)
  shape = losses.shape
  s = np.ones(shape) if sample_weight is None else np.broadcast_to(sample_weight, shape)
  with np.errstate(invalid="ignore"):
    weighted = np.where(s == 0, 0.0, s * losses)  # a zero weight drops even an infinite loss
  losses = np.where(kept, weighted, 0.0)
  if reduction == "none":
    return losses
  if reduction == "sum":
    return losses.sum()
  if reduction == "sum_over_batch_size":
    d = np.sum(kept)
  else:
    d = np.where(kept, s * denom, 0.0).sum()
  return losses.sum() / d if d != 0 else 0.0


def _logsumexp(z):
  m = np.max(z)
  return m + np.log(np.sum(np.exp(z - m)))


def _log_softmax(z):
  return z - _logsumexp(z)


def _clamped_log(p):
  with np.errstate(divide="ignore"):
    return np.maximum(np.log(p), -100.0)


def _log_sigmoid(z):
  return -np.logaddexp(0.0, -z)


def binary_cross_entropy(
  p, y, *, weights=None, label_smoothing=0.0, where=None, sample_weight=None, reduction="mean"
):
  p = np.asarray(p, np.float64)
  y = np.asarray(y, np.float64) * (1 - label_smoothing) + label_smoothing / 2
  losses = -(y * _clamped_log(p) + (1 - y) * _clamped_log(1 - p))
  if weights is not None:
    losses = losses * np.broadcast_to(weights, p.shape)
  kept = np.ones(p.shape, bool) if where is None else np.broadcast_to(where, p.shape)
  return _reduce(losses, kept, np.ones(p.shape), reduction, sample_weight)


def binary_cross_entropy_with_logits(
  z, y, *, pos_weight=None, weights=None, label_smoothing=0.0, where=None, sample_weight=None,
  reduction="mean",
):  # fmt: skip
  z = np.asarray(z, np.float64)
  y = np.asarray(y, np.float64) * (1 - label_smoothing) + label_smoothing / 2
  pw = 1.0 if pos_weight is None else np.broadcast_to(pos_weight, z.shape)
  losses = -(pw * y * _log_sigmoid(z) + (1 - y) * _log_sigmoid(-z))
  if weights is not None:
    losses = losses * np.broadcast_to(weights, z.shape)
  kept = np.ones(z.shape, bool) if where is None else np.broadcast_to(where, z.shape)
  return _reduce(losses, kept, np.ones(z.shape), reduction, sample_weight)


def binary_focal_loss_with_logits(
  z, y, *, gamma=2.0, alpha=None, label_smoothing=0.0, where=None, sample_weight=None,
  reduction="mean",
):  # fmt: skip
  """torchvision.ops.sigmoid_focal_loss, in probability space, on Keras-smoothed labels."""
  z = np.asarray(z, np.float64)
  y = np.asarray(y, np.float64) * (1 - label_smoothing) + label_smoothing / 2
  p = 1 / (1 + np.exp(-z))
  ce = -(y * _log_sigmoid(z) + (1 - y) * _log_sigmoid(-z))
  p_t = p * y + (1 - p) * (1 - y)
  losses = ce * (1 - p_t) ** gamma
  if alpha is not None:
    losses = (alpha * y + (1 - alpha) * (1 - y)) * losses
  kept = np.ones(z.shape, bool) if where is None else np.broadcast_to(where, z.shape)
  return _reduce(losses, kept, np.ones(z.shape), reduction, sample_weight)


def _per_example(scores, axis, fn):
  """Apply ``fn(row, index)`` to every class vector of ``scores`` along ``axis``."""
  moved = np.moveaxis(np.asarray(scores, np.float64), axis, -1)
  out = np.zeros(moved.shape[:-1])
  for index in np.ndindex(*moved.shape[:-1]):
    out[index] = fn(moved[index], index)
  return out


def categorical_cross_entropy_with_logits(
  z,
  t,
  *,
  axis=-1,
  class_weights=None,
  label_smoothing=0.0,
  z_loss=0.0,
  softcap=None,
  where=None,
  sample_weight=None,
  reduction="mean",
):
  t_moved = np.moveaxis(np.asarray(t, np.float64), axis, -1)
  num_classes = t_moved.shape[-1]
  w = np.ones(num_classes) if class_weights is None else np.asarray(class_weights, np.float64)

  def one(row, index):
    if softcap is not None:
      row = softcap * np.tanh(row / softcap)
    q = (1 - label_smoothing) * t_moved[index] + label_smoothing / num_classes
    log_p = _log_softmax(row)
    # Not row[0] - log_p[0]: for a huge |row[0]| (say -1e30) that difference cancels to 0.
    lse = _logsumexp(row)
    ce = -sum(w[c] * q[c] * log_p[c] for c in range(num_classes) if q[c] * w[c] != 0)
    return ce + z_loss * lse**2

  losses = _per_example(z, axis, one)
  kept = np.ones(losses.shape, bool) if where is None else np.broadcast_to(where, losses.shape)
  return _reduce(losses, kept, np.ones(losses.shape), reduction, sample_weight)


def categorical_cross_entropy(
  p,
  t,
  *,
  axis=-1,
  class_weights=None,
  label_smoothing=0.0,
  where=None,
  sample_weight=None,
  reduction="mean",
):
  t_moved = np.moveaxis(np.asarray(t, np.float64), axis, -1)
  num_classes = t_moved.shape[-1]
  w = np.ones(num_classes) if class_weights is None else np.asarray(class_weights, np.float64)

  def one(row, index):
    q = (1 - label_smoothing) * t_moved[index] + label_smoothing / num_classes
    return -np.sum(w * q * _clamped_log(row))

  losses = _per_example(p, axis, one)
  kept = np.ones(losses.shape, bool) if where is None else np.broadcast_to(where, losses.shape)
  return _reduce(losses, kept, np.ones(losses.shape), reduction, sample_weight)


def categorical_focal_loss_with_logits(
  z,
  t,
  *,
  gamma=2.0,
  alpha=0.25,
  axis=-1,
  label_smoothing=0.0,
  where=None,
  sample_weight=None,
  reduction="mean",
):
  """Keras 3's CategoricalFocalCrossentropy(from_logits=True) per example, without clipping."""
  t_moved = np.moveaxis(np.asarray(t, np.float64), axis, -1)
  num_classes = t_moved.shape[-1]
  a = np.broadcast_to(1.0 if alpha is None else np.asarray(alpha, np.float64), (num_classes,))

  def one(row, index):
    q = (1 - label_smoothing) * t_moved[index] + label_smoothing / num_classes
    p = np.exp(_log_softmax(row))
    return -sum(
      a[c] * q[c] * (1 - p[c]) ** gamma * np.log(p[c]) for c in range(num_classes) if q[c] != 0
    )

  losses = _per_example(z, axis, one)
  kept = np.ones(losses.shape, bool) if where is None else np.broadcast_to(where, losses.shape)
  return _reduce(losses, kept, np.ones(losses.shape), reduction, sample_weight)


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
  softcap=None,
  where=None,
  sample_weight=None,
  reduction="mean",
):
  """torch.nn.functional.cross_entropy, written as the weighted smoothed dense loss."""
  z = np.asarray(z, np.float64)
  if softcap is not None:
    with np.errstate(invalid="ignore"):
      z = softcap * np.tanh(z / softcap)
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
  return _reduce(losses, kept, target_w, reduction, sample_weight)


def sparse_categorical_cross_entropy(
  p,
  labels,
  *,
  axis=-1,
  class_weights=None,
  ignore_index=None,
  where=None,
  sample_weight=None,
  reduction="mean",
):
  labels = np.asarray(labels)
  kept, target_w = _sparse_kept_and_weight(labels, class_weights, ignore_index, where)

  def one(row, index):
    return -_clamped_log(row[labels[index]]) if kept[index] else 0.0

  losses = target_w * _per_example(p, axis, one)
  return _reduce(losses, kept, target_w, reduction, sample_weight)


def sparse_categorical_focal_loss_with_logits(
  z,
  labels,
  *,
  gamma=2.0,
  class_weights=None,
  ignore_index=None,
  label_smoothing=0.0,
  softcap=None,
  axis=-1,
  where=None,
  sample_weight=None,
  reduction="mean",
):
  """Keras's CategoricalFocalCrossentropy on the smoothed one-hot target q:
  sum_c w_c q_c (1 - p_c)^gamma (-log p_c), with w_y as the mean's denominator."""
  labels = np.asarray(labels)
  z = np.asarray(z, np.float64)
  if softcap is not None:
    z = softcap * np.tanh(z / softcap)
  kept, target_w = _sparse_kept_and_weight(labels, class_weights, ignore_index, where)

  def one(row, index):
    if not kept[index]:
      return 0.0
    num_classes = row.shape[0]
    w = np.ones(num_classes) if class_weights is None else np.asarray(class_weights, np.float64)
    q = np.full(num_classes, label_smoothing / num_classes)
    q[labels[index]] += 1 - label_smoothing
    log_p = _log_softmax(row)
    # 1 - p_c as the sum of the other probabilities, so it keeps its digits near p_c = 1.
    p = np.exp(log_p)
    one_minus = np.array([np.sum(np.delete(p, c)) for c in range(num_classes)])
    coef = w * q
    nonzero = coef != 0
    return -np.sum((coef * one_minus**gamma * log_p)[nonzero])

  losses = _per_example(z, axis, one)
  return _reduce(losses, kept, target_w, reduction, sample_weight)


# --- Divergences, distillation and the smaller losses of issue 12 ---------------------------


def _kept(shape, where):
  return np.ones(shape, bool) if where is None else np.broadcast_to(where, shape)


def _kl_rows(s_row, t_row):
  """KL(softmax(t) || softmax(s)) for one pair of rows, 0 log 0 = 0."""
  log_q, log_p = _log_softmax(s_row), _log_softmax(t_row)
  p = np.exp(log_p)
  return sum(p[c] * (log_p[c] - log_q[c]) for c in range(p.size) if p[c] > 0)


def kl_divergence_with_logits(
  s, t, *, temperature=1.0, axis=-1, where=None, sample_weight=None, reduction="mean"
):
  t_moved = np.moveaxis(np.asarray(t, np.float64), axis, -1) / temperature

  def one(row, index):
    return _kl_rows(row / temperature, t_moved[index])

  losses = _per_example(s, axis, one)
  kept = _kept(losses.shape, where)
  return _reduce(losses, kept, np.ones(losses.shape), reduction, sample_weight)


def jensen_shannon_divergence_with_logits(
  s, t, *, beta=0.5, temperature=1.0, axis=-1, where=None, sample_weight=None, reduction="mean"
):
  """Liger's generalised JSD: beta KL(P || M) + (1 - beta) KL(Q || M), P teacher, Q student."""
  t_moved = np.moveaxis(np.asarray(t, np.float64), axis, -1) / temperature

  def one(row, index):
    q = np.exp(_log_softmax(row / temperature))
    p = np.exp(_log_softmax(t_moved[index]))
    if beta == 0:
      return sum(p[c] * np.log(p[c] / q[c]) for c in range(p.size) if p[c] > 0)
    if beta == 1:
      return sum(q[c] * np.log(q[c] / p[c]) for c in range(q.size) if q[c] > 0)
    m = beta * p + (1 - beta) * q
    kl_pm = sum(p[c] * np.log(p[c] / m[c]) for c in range(p.size) if p[c] > 0)
    kl_qm = sum(q[c] * np.log(q[c] / m[c]) for c in range(q.size) if q[c] > 0)
    return beta * kl_pm + (1 - beta) * kl_qm

  losses = _per_example(s, axis, one)
  kept = _kept(losses.shape, where)
  return _reduce(losses, kept, np.ones(losses.shape), reduction, sample_weight)


def distillation_loss(
  s, t, labels, *, temperature=1.0, alpha=0.5, axis=-1, ignore_index=None, where=None,
  sample_weight=None, reduction="mean", teacher_gradient=False,
):  # fmt: skip
  del teacher_gradient  # a value: which inputs it is differentiated in does not change it
  labels = np.asarray(labels)
  kept, _ = _sparse_kept_and_weight(labels, None, ignore_index, where)
  t_moved = np.moveaxis(np.asarray(t, np.float64), axis, -1)

  def one(row, index):
    if not kept[index]:
      return 0.0
    soft = _kl_rows(row / temperature, t_moved[index] / temperature)
    hard = -_log_softmax(row)[labels[index]]
    return alpha * temperature**2 * soft + (1 - alpha) * hard

  losses = _per_example(s, axis, one)
  return _reduce(losses, kept, np.ones(losses.shape), reduction, sample_weight)


def nll_loss(x, labels, *, axis=-1, class_weights=None, ignore_index=None, where=None,
             sample_weight=None, reduction="mean"):  # fmt: skip
  labels = np.asarray(labels)
  kept, target_w = _sparse_kept_and_weight(labels, class_weights, ignore_index, where)

  def one(row, index):
    return -row[labels[index]] if kept[index] else 0.0

  losses = target_w * _per_example(x, axis, one)
  return _reduce(losses, kept, target_w, reduction, sample_weight)


def poly1_cross_entropy_with_logits(
  z,
  labels,
  *,
  epsilon=2.0,
  axis=-1,
  ignore_index=None,
  where=None,
  sample_weight=None,
  reduction="mean",
):
  labels = np.asarray(labels)
  kept, _ = _sparse_kept_and_weight(labels, None, ignore_index, where)

  def one(row, index):
    if not kept[index]:
      return 0.0
    p = np.exp(_log_softmax(row))
    p_y = p[labels[index]]
    return -np.log(p_y) + epsilon * (1 - p_y)

  losses = _per_example(z, axis, one)
  return _reduce(losses, kept, np.ones(losses.shape), reduction, sample_weight)


def causal_lm_cross_entropy_with_logits(
  z, labels, *, shift=1, normalization="token", ignore_index=None, where=None,
  sample_weight=None, reduction="mean",
):  # fmt: skip
  """Loops over sequences and positions; z [B, L, V], labels [B, L], weights [B, L]."""
  z = np.asarray(z, np.float64)
  labels = np.asarray(labels)
  where = _kept(labels.shape, where)
  batch, length = labels.shape
  w = np.ones(labels.shape)
  if sample_weight is not None:
    w = np.broadcast_to(np.asarray(sample_weight, np.float64), labels.shape)
  losses = np.zeros((batch, length - shift))
  kept = np.zeros((batch, length - shift), bool)
  for b in range(batch):
    for t in range(length - shift):
      y = labels[b, t + shift]
      if where[b, t + shift] and y != ignore_index:
        kept[b, t] = True
        losses[b, t] = -_log_softmax(z[b, t])[y]
  token_w = w[:, shift:]
  if reduction != "mean" or normalization == "token":
    return _reduce(losses, kept, np.ones(losses.shape), reduction, token_w)
  means = []
  for b in range(batch):
    total_w = sum(token_w[b, t] for t in range(length - shift) if kept[b, t])
    if total_w > 0:
      means.append(
        sum(token_w[b, t] * losses[b, t] for t in range(length - shift) if kept[b, t]) / total_w
      )
  return float(np.mean(means)) if means else 0.0


# --- Metrics -----------------------------------------------------------------------------


def _softmax_rows(z, axis):
  moved = np.moveaxis(np.asarray(z, np.float64), axis, -1)
  return np.exp(np.apply_along_axis(_log_softmax, -1, moved))


def top_k_accuracy(z, labels, *, k=1, axis=-1, ignore_index=None, where=None):
  moved = np.moveaxis(np.asarray(z, np.float64), axis, -1).reshape(-1, np.shape(z)[axis])
  labels = np.asarray(labels).reshape(-1)
  kept = _kept(np.shape(labels), None if where is None else np.reshape(where, -1))
  hits = []
  for row, y, keep in zip(moved, labels, kept, strict=True):
    if keep and y != ignore_index:
      hits.append(float(np.sum(row > row[y]) < k))
  return float(np.mean(hits)) if hits else 0.0


def brier_score(z, labels, *, axis=-1):
  p = _softmax_rows(z, axis).reshape(-1, np.shape(z)[axis])
  onehot = np.eye(p.shape[1])[np.asarray(labels).reshape(-1)]
  return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def predictive_entropy(z, *, axis=-1):
  p = _softmax_rows(z, axis)
  return float(np.mean(-np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1)), 0), -1)))


def calibration_errors(z, labels, *, num_bins=15, binning="width"):
  """(ECE, MCE) of the top-label confidence, by explicit bin membership."""
  p = _softmax_rows(z, -1)
  conf = p.max(-1)
  correct = (p.argmax(-1) == np.asarray(labels)).astype(float)
  n = conf.size
  if binning == "width":
    members = [(conf > b / num_bins) & (conf <= (b + 1) / num_bins) for b in range(num_bins)]
  else:
    order = np.argsort(conf, kind="stable")
    members = []
    for b in range(num_bins):
      m = np.zeros(n, bool)
      m[order[[r for r in range(n) if r * num_bins // n == b]]] = True
      members.append(m)
  ece, mce = 0.0, 0.0
  for m in members:
    if m.any():
      gap = abs(correct[m].mean() - conf[m].mean())
      ece += m.sum() / n * gap
      mce = max(mce, gap)
  return ece, mce


def effective_number_class_weights(labels, num_classes, beta):
  counts = np.bincount(np.asarray(labels).reshape(-1), minlength=num_classes).astype(float)
  w = np.array([(1 - beta) / (1 - beta**n) if n > 0 else 0.0 for n in counts])
  return w * (counts > 0).sum() / w.sum()


def inverse_frequency_class_weights(labels, num_classes):
  counts = np.bincount(np.asarray(labels).reshape(-1), minlength=num_classes).astype(float)
  w = np.array([1 / n if n > 0 else 0.0 for n in counts])
  return w * (counts > 0).sum() / w.sum()


def sampled_softmax(hidden, weight, labels, sampled, sampled_log_q, true_log_q, **kw):
  """``tf.nn.sampled_softmax_loss`` one example at a time: ``(value, d value / d hidden)``.

  ``kw``: ``remove_accidental_hits``, ``bias``, ``kept`` (bool per example),
  ``sample_weight``, ``reduction``.
  """
  hidden = np.asarray(hidden, np.float64)
  weight = np.asarray(weight, np.float64)
  bias = kw.get("bias")
  bias = np.zeros(weight.shape[1]) if bias is None else np.asarray(bias, np.float64)
  kept = kw.get("kept", np.ones(len(labels), bool))
  losses, grads = np.zeros(len(labels)), np.zeros_like(hidden)
  for n, (h, y) in enumerate(zip(hidden, labels, strict=True)):
    if not kept[n]:
      continue
    columns = [y, *sampled]
    logits = np.array([h @ weight[:, c] + bias[c] for c in columns])
    logits -= np.concatenate([[np.broadcast_to(true_log_q, len(labels))[n]], sampled_log_q])
    if kw.get("remove_accidental_hits", True):
      hits = np.array([False] + [c == y for c in sampled])
      logits = np.where(hits, -np.inf, logits)
    p = np.exp(_log_softmax(logits))
    losses[n] = -_log_softmax(logits)[0]
    grads[n] = sum(p[k] * weight[:, c] for k, c in enumerate(columns)) - weight[:, y]
  reduction = kw.get("reduction", "mean")
  s = kw.get("sample_weight")
  s = np.ones(len(labels)) if s is None else np.broadcast_to(np.asarray(s, np.float64), len(labels))
  value = _reduce(losses, kept, np.ones(len(labels)), reduction, s)
  if reduction == "none":
    return value, None
  scale = s * kept
  if reduction == "mean":
    total = scale.sum()
    scale = scale / total if total else 0 * scale
  elif reduction == "sum_over_batch_size":
    scale = scale / max(kept.sum(), 1)
  return value, grads * scale[:, None]


def in_batch_softmax(
  query,
  item,
  *,
  temperature=1.0,
  item_ids=None,
  log_q=None,
  kept=None,
  sampled=None,
  sampled_log_q=None,
  sampled_ids=None,
  sample_weight=None,
  reduction="mean",
):
  """Yi et al.'s corrected in-batch softmax, one query at a time (TFRS ``Retrieval``)."""
  q, v = np.asarray(query, np.float64), np.asarray(item, np.float64)
  n = len(q)
  kept = np.ones(n, bool) if kept is None else np.asarray(kept)
  log_q = np.zeros(n) if log_q is None else np.broadcast_to(np.asarray(log_q, np.float64), n)
  losses = np.zeros(n)
  for i in range(n):
    if not kept[i]:
      continue
    logits, keep = [], []
    for j in range(n):
      logits.append(q[i] @ v[j] / temperature - log_q[j])
      hit = j != i and item_ids is not None and item_ids[j] == item_ids[i]
      keep.append(kept[j] and not hit)
    if sampled is not None:
      s_q = np.zeros(len(sampled)) if sampled_log_q is None else np.asarray(sampled_log_q)
      for k, s in enumerate(np.asarray(sampled, np.float64)):
        logits.append(q[i] @ s / temperature - s_q[k])
        keep.append(sampled_ids is None or sampled_ids[k] != item_ids[i])
    row = np.where(keep, logits, -np.inf)
    losses[i] = _logsumexp(row) - row[i]
  s = np.ones(n) if sample_weight is None else np.broadcast_to(sample_weight, n)
  return _reduce(losses, kept, np.ones(n), reduction, s)


def clip(image, text, *, logit_scale, kept=None, reduction="mean"):
  """open_clip's ``ClipLoss`` on the kept pairs: the two directions' CEs, halved."""
  x, t = np.asarray(image, np.float64), np.asarray(text, np.float64)
  kept = np.ones(len(x), bool) if kept is None else np.asarray(kept)
  z = logit_scale * x[kept] @ t[kept].T
  per_pair = np.zeros(len(x))
  rows = [_logsumexp(r) for r in z]
  cols = [_logsumexp(c) for c in z.T]
  per_pair[kept] = 0.5 * (np.array(rows) - np.diag(z)) + 0.5 * (np.array(cols) - np.diag(z))
  return _reduce(per_pair, kept, np.ones(len(x)), reduction, np.ones(len(x)))


def siglip(image, text, *, logit_scale, logit_bias, kept=None, reduction="mean"):
  """SigLIP's pairwise sigmoid loss: each kept image's sum over the kept texts."""
  x, t = np.asarray(image, np.float64), np.asarray(text, np.float64)
  kept = np.ones(len(x), bool) if kept is None else np.asarray(kept)
  losses = np.zeros(len(x))
  for i in np.flatnonzero(kept):
    for j in np.flatnonzero(kept):
      z = logit_scale * x[i] @ t[j] + logit_bias
      losses[i] -= _log_sigmoid(z if i == j else -z)
  return _reduce(losses, kept, np.ones(len(x)), reduction, np.ones(len(x)))
