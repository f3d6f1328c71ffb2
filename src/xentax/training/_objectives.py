"""Training objectives by name, built from the xentax losses, and the evaluation metrics.

Design notes:
  A loss function here has the signature ``loss_fn(logits, labels) -> scalar`` and picks
  the binary or the sparse xentax loss from the logits' shape at trace time: one logit per
  example (``logits.ndim == labels.ndim``) means binary, an extra class axis means sparse.
  Any callable with that signature (for example ``functools.partial`` of any xentax loss)
  can be passed to the training loop instead of a name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

import xentax
from xentax.training._config import LOSS_NAMES

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
LOSSES = LOSS_NAMES


def _is_binary(logits, labels) -> bool:
  return logits.ndim == labels.ndim


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
  """scikit-learn's ``"balanced"`` weights: ``N / (C * count_c)`` (float32, ``[C]``)."""
  counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
  return (len(labels) / (num_classes * np.maximum(counts, 1))).astype(np.float32)


def make_loss(name: str, *, labels: np.ndarray | None = None, num_classes: int = 2, **options):
  """The training objective ``name`` as ``loss_fn(logits, labels) -> scalar``.

  Args:
    name: ``"cross_entropy"`` (binary CE with logits or sparse categorical CE with logits),
      ``"weighted_cross_entropy"`` (the same with scikit-learn's balanced class weights from
      ``labels``; ``pos_weight = N_neg / N_pos`` for one-logit models), ``"focal"``
      (binary or sparse categorical focal loss, ``gamma=2`` unless given) or
      ``"categorical_cross_entropy"`` (one-hot targets, categorical CE with logits).
    labels: training labels, needed by ``"weighted_cross_entropy"``.
    num_classes: number of classes.
    **options: passed to the xentax loss (``label_smoothing``, ``z_loss``, ``gamma``,
      ``alpha``, ``class_weights``...).

  Returns:
    The loss function.

  Raises:
    ValueError: unknown name, or ``"weighted_cross_entropy"`` without ``labels``.
  """
  if name not in LOSSES:
    raise ValueError(f"unknown loss {name!r}; choose from {list(LOSSES)}")
  if name == "weighted_cross_entropy":
    if labels is None:
      raise ValueError("loss 'weighted_cross_entropy' needs the training labels to weight classes")
    weights = balanced_class_weights(labels, num_classes)
    options = {"class_weights": weights, **options}

  def loss_fn(logits, labels):
    if _is_binary(logits, labels):
      y = labels.astype(logits.dtype)
      opts = dict(options)
      if name == "focal":
        return xentax.binary_focal_loss_with_logits(logits, y, **{"gamma": 2.0, **opts})
      weights = opts.pop("class_weights", None)
      if weights is not None:  # one logit: the positive class's weight relative to the negative
        opts["pos_weight"] = jnp.asarray(weights[1] / weights[0], logits.dtype)
      return xentax.binary_cross_entropy_with_logits(logits, y, **opts)
    if name == "focal":
      return xentax.sparse_categorical_focal_loss_with_logits(
        logits, labels, **{"gamma": 2.0, **options}
      )
    if name == "categorical_cross_entropy":
      targets = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
      return xentax.categorical_cross_entropy_with_logits(logits, targets, **options)
    return xentax.sparse_categorical_cross_entropy_with_logits(logits, labels, **options)

  return loss_fn


def predictions(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Predicted class ids: ``logit > 0`` for one-logit models, else the argmax."""
  if _is_binary(logits, labels):
    return (logits > 0).astype(labels.dtype)
  return jnp.argmax(logits, axis=-1).astype(labels.dtype)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of correct predictions (float32)."""
  return jnp.mean((predictions(logits, labels) == labels).astype(jnp.float32))


@functools.partial(jax.jit, static_argnames=("apply_fn", "num_classes"))
def _eval_chunk(apply_fn, params, x, y, valid, *, num_classes: int):
  logits = apply_fn(params, x)
  if _is_binary(logits, y):
    loss_sum = xentax.binary_cross_entropy_with_logits(
      logits, y.astype(logits.dtype), where=valid, reduction="sum"
    )
  else:
    loss_sum = xentax.sparse_categorical_cross_entropy_with_logits(
      logits, y, where=valid, reduction="sum"
    )
  pred = predictions(logits, y)
  correct = jnp.sum((pred == y) & valid)
  if num_classes <= 0:
    return loss_sum, correct, jnp.zeros((0,), jnp.int32), jnp.zeros((0,), jnp.int32)
  hits = jnp.zeros((num_classes,), jnp.int32).at[y].add(((pred == y) & valid).astype(jnp.int32))
  totals = jnp.zeros((num_classes,), jnp.int32).at[y].add(valid.astype(jnp.int32))
  return loss_sum, correct, hits, totals


def evaluate(
  apply_fn, params, x: np.ndarray, y: np.ndarray, *, num_classes: int, chunk_size: int = 4096
) -> dict:
  """Plain cross-entropy, accuracy and per-class recall on ``(x, y)``.

  The loss is the unweighted cross-entropy (binary or sparse, by the logits' shape) whatever
  the training objective, so runs with different objectives compare on one scale. Large
  sets are evaluated in fixed-size chunks (the last one padded and masked with ``where``),
  so evaluation compiles once.

  Args:
    apply_fn: the model's ``apply``.
    params: its parameters.
    x, y: examples and labels (NumPy or JAX arrays).
    num_classes: number of classes; per-class recall is skipped above 100 classes.
    chunk_size: examples per compiled call.

  Returns:
    ``{"loss", "accuracy", "recall"}``; ``recall`` is a list (empty above 100 classes),
    NaN for a class absent from ``y``.
  """
  n = len(y)
  size = min(n, chunk_size)
  recall_classes = num_classes if num_classes <= 100 else 0
  loss_sum, correct = 0.0, 0
  hits = np.zeros(recall_classes, np.int64)
  totals = np.zeros(recall_classes, np.int64)
  for start in range(0, n, size):
    xb, yb = x[start : start + size], y[start : start + size]
    valid = np.ones(size, bool)
    if len(yb) < size:  # pad the last chunk to the compiled size and mask the padding
      pad = size - len(yb)
      valid[len(yb) :] = False
      xb = np.concatenate([xb, np.repeat(xb[:1], pad, axis=0)])
      yb = np.concatenate([yb, np.repeat(yb[:1], pad, axis=0)])
    parts = _eval_chunk(apply_fn, params, xb, yb, valid, num_classes=recall_classes)
    loss_sum += float(parts[0])
    correct += int(parts[1])
    hits += np.asarray(parts[2])
    totals += np.asarray(parts[3])
  with np.errstate(invalid="ignore", divide="ignore"):
    recall = np.where(totals > 0, hits / np.maximum(totals, 1), np.nan)
  return {"loss": loss_sum / n, "accuracy": correct / n, "recall": [float(r) for r in recall]}
