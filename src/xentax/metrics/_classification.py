r"""Per-example measures of a classifier's predictions: accuracy, perplexity, entropy, Brier.

Design notes:
  * Every measure takes ``(logits, labels)`` with integer labels, and ``axis``, ``where``
    and ``ignore_index`` exactly as the sparse losses do (the same :func:`prepare_sparse`
    and :func:`reduce_losses`), so a measure and its loss agree on which examples count.
  * Pure, jit-able functions of arrays; a label out of range raises on concrete inputs and
    gives NaN under ``jit``.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from xentax.losses import contract
from xentax.losses import sparse_categorical_cross_entropy_with_logits as _sparse_ce

# What the first argument of a metric holds (its ``kind``): class logits (the default) or
# probabilities along ``axis``, or one sigmoid logit or probability of the positive class per
# entry (binary: labels 0 or 1, ``axis`` unused).
KINDS = ("logits", "probs", "binary_logits", "binary_probs")


def as_logits(fn_name, scores, labels, kind, axis, ignore_index=None, warn=True):
  """``(logits, labels, axis)`` whose softmax is what ``scores`` of ``kind`` predict.

  Probabilities become their logs; a binary score ``z`` (or ``p``) becomes the two-class
  logits ``[0, z]`` (or ``[log(1 - p), log p]``), so temperature scaling of them is
  ``sigmoid(z / T)``. Probabilities outside [0, 1] and binary labels other than 0 and 1
  raise when concrete and give NaN under ``jit``. ``warn=False``: a measure that reads only
  the scores' order takes probabilities as logits without a warning.
  """
  if kind not in KINDS:
    raise ValueError(f"{fn_name}: kind={kind!r} is not supported; choose one of {KINDS}.")
  scores = contract.float_array(fn_name, "logits", scores)
  if kind == "logits":
    if warn:
      _warn_if_probabilities(fn_name, scores, axis)
    return scores, labels, axis
  if kind.endswith("probs"):
    outside = (scores < 0) | (scores > 1)
    contract.check_values(fn_name, "probabilities must lie in [0, 1]", scores, outside)
    scores = scores + contract.nan_where(outside, scores.dtype)
  if kind == "probs":
    return jnp.log(scores), labels, axis
  labels = jnp.asarray(contract.to_array(fn_name, "labels", labels))
  bad = (labels != 0) & (labels != 1)
  if ignore_index is not None:
    bad = bad & (labels != ignore_index)
  contract.check_values(fn_name, "binary labels must be 0 or 1", labels, bad)
  labels = jnp.where(bad, 2, labels).astype(jnp.int32)  # 2: out of range, so NaN under jit
  if kind == "binary_logits":
    return jnp.stack([jnp.zeros_like(scores), scores], axis=-1), labels, -1
  return jnp.stack([jnp.log1p(-scores), jnp.log(scores)], axis=-1), labels, -1


_SAMPLE_ROWS = 256


def _warn_if_probabilities(fn_name, scores, axis) -> None:
  """Warn when concrete logits look like probabilities (rows in [0, 1] summing to 1)."""
  if isinstance(scores, jax.core.Tracer) or scores.ndim == 0 or scores.shape[axis] < 2:
    return
  # A sample of rows suffices: probabilities look so in every row, logits in almost none.
  sample = jnp.moveaxis(scores, axis, -1).reshape(-1, scores.shape[axis])[:_SAMPLE_ROWS]
  rows = np.asarray(sample, np.float64)
  if rows.size and np.all((rows >= 0) & (rows <= 1)) and np.allclose(rows.sum(-1), 1, atol=1e-3):
    warnings.warn(
      f"{fn_name}: these logits look like probabilities (every row lies in [0, 1] and sums "
      "to 1); if they are, pass kind='probs'.",
      stacklevel=4,
    )


def prepare(fn_name, logits, labels, *, axis, ignore_index, where, kind="logits", warn=True):
  """Validated inputs: logits ``[..., C]`` (class axis last, compute dtype, dropped rows 0)."""
  logits, labels, axis = as_logits(fn_name, logits, labels, kind, axis, ignore_index, warn)
  inputs = contract.prepare_sparse(
    fn_name, logits, labels, axis=axis, class_weights=None, ignore_index=ignore_index, where=where
  )
  x = jnp.where(inputs.valid[..., None], inputs.scores, jnp.zeros((), inputs.scores.dtype))
  return x, inputs


def top_k_accuracy(
  logits,
  labels,
  *,
  kind: str = "logits",
  k: int = 1,
  axis: int = -1,
  ignore_index: int | None = None,
  where=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Fraction of examples whose label is among the ``k`` highest logits.

  .. math::
    a_n = \left[\, \#\{c : z_{n,c} > z_{n,y_n}\} < k \,\right]

  Ties are counted in the label's favour (a label tied with the top logit is a hit), as
  ``torchmetrics`` and Keras's ``in_top_k`` do.

  Args:
    logits: ``[..., C, ...]`` scores (logits or probabilities: only their order matters).
    labels: integer class indices, the logits' shape without ``axis``.
    k: how many top classes count as a hit (``1 <= k``).
    axis, ignore_index, where: as in the sparse losses.
    reduction: ``"mean"`` (accuracy over kept examples, 0 if none), ``"sum"`` (number of
      hits) or ``"none"`` (per-example 0/1, 0 where dropped).
    kind: ``"logits"`` (default), ``"probs"``, ``"binary_logits"`` or ``"binary_probs"``
      (:mod:`xentax.metrics`).

  Returns:
    Float32 (float64 for float64 logits): a scalar, or the labels' shape for ``"none"``;
    NaN for a kept example holding a NaN score (it has no rank).

  Raises:
    ValueError: ``k < 1`` or an unknown reduction (TypeError: ``k`` not an integer);
      otherwise as the sparse losses (float labels, shapes, labels out of range).

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> z = jnp.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    >>> float(xentax.metrics.top_k_accuracy(z, jnp.array([2, 0])))
    0.5
  """
  fn_name = "top_k_accuracy"
  contract.check_reduction(fn_name, reduction)
  k = contract.positive_int(fn_name, "k", k)
  x, inputs = prepare(
    fn_name,
    logits,
    labels,
    axis=axis,
    ignore_index=ignore_index,
    where=where,
    kind=kind,
    warn=False,  # only the order counts: probabilities are fine
  )
  target = jnp.take_along_axis(x, inputs.labels[..., None], axis=-1)
  above = jnp.sum(x > target, axis=-1)
  # A NaN score has no rank: its row is NaN, not a hit (dropped rows were zeroed).
  bad = inputs.bad | jnp.any(jnp.isnan(x), axis=-1)
  hits = (above < k).astype(x.dtype) + contract.nan_where(bad, x.dtype)
  return contract.reduce_losses(hits, valid=inputs.valid, reduction=reduction)


def perplexity(
  logits,
  labels,
  *,
  kind: str = "logits",
  axis: int = -1,
  ignore_index: int | None = None,
  where=None,
) -> jax.Array:
  r"""``exp`` of the mean negative log-likelihood over kept examples (tokens).

  .. math::
    \mathrm{PPL} = \exp\Big(\frac{1}{N} \sum_n \left(\mathrm{lse}(z_n) - z_{n,y_n}\right)\Big)

  1 for a perfect model, ``C`` for uniform predictions over ``C`` classes; 1 when nothing is
  kept (the mean is 0).

  Args:
    logits: ``[..., C, ...]`` logits, class axis at ``axis``.
    labels, axis, ignore_index, where: as in the sparse losses.
    kind: ``"logits"`` (default), ``"probs"``, ``"binary_logits"`` or ``"binary_probs"``
      (:mod:`xentax.metrics`).

  Returns:
    A scalar, float32 (float64 for float64 logits).

  Raises:
    TypeError: non-float logits or float labels, as for the sparse losses.
    ValueError: shapes that do not fit or (on concrete inputs) a label out of range (NaN
      under ``jit``).

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.metrics.perplexity(jnp.zeros((2, 4)), jnp.array([0, 3])))
    4.0
  """
  x, labels, axis = as_logits("perplexity", logits, labels, kind, axis, ignore_index)
  return jnp.exp(
    _sparse_ce(x, labels, axis=axis, ignore_index=ignore_index, where=where, reduction="mean")
  )


def predictive_entropy(
  logits,
  labels=None,
  *,
  kind: str = "logits",
  axis: int = -1,
  ignore_index: int | None = None,
  where=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Entropy of the predicted distribution ``H(softmax(z)) = -sum_c p_c log p_c`` (nats).

  ``0 log 0 = 0``, so ``-inf`` logits are fine. The labels are used only to drop examples
  by ``ignore_index``; they may be omitted.

  Args:
    logits: ``[..., C, ...]`` logits, class axis at ``axis``.
    labels: optional integer labels (the logits' shape without ``axis``).
    axis, ignore_index, where: as in the sparse losses.
    reduction: ``"none"``, ``"sum"`` or ``"mean"`` (over kept examples).
    kind: ``"logits"`` (default), ``"probs"``, ``"binary_logits"`` or ``"binary_probs"``
      (:mod:`xentax.metrics`).

  Returns:
    Float32 (float64 for float64 logits), in ``[0, log C]`` (NaN for a kept example holding
    a NaN logit); a scalar, or the per-example shape (the logits' without ``axis``) for
    ``"none"``.

  Raises:
    ValueError: ``ignore_index`` without labels, or an unknown reduction; otherwise as the
      sparse losses.

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> round(float(xentax.metrics.predictive_entropy(jnp.zeros((1, 4)))), 4)  # log 4
    1.3863
  """
  fn_name = "predictive_entropy"
  contract.check_reduction(fn_name, reduction)
  if labels is None:
    if ignore_index is not None:
      raise ValueError(f"{fn_name}: ignore_index needs labels; pass labels or drop it.")
    contract.float_array(fn_name, "logits", logits)
    shape = jnp.shape(logits)
    if not kind.startswith("binary"):
      axis = contract.normalize_axis(fn_name, axis, len(shape))
      shape = shape[:axis] + shape[axis + 1 :]
    labels = jnp.zeros(shape, jnp.int32)
  x, inputs = prepare(
    fn_name, logits, labels, axis=axis, ignore_index=ignore_index, where=where, kind=kind
  )
  log_p = x - contract.logsumexp(x)[..., None]
  p = jnp.exp(log_p)
  # Select before multiplying: p = 0 where log p = -inf, and 0 * -inf would be NaN; a NaN p
  # (a NaN logit) is not 0, so it stays NaN.
  entropy = -jnp.sum(jnp.where(p == 0, 0.0, p * jnp.where(p == 0, 0.0, log_p)), axis=-1)
  entropy = entropy + contract.nan_where(inputs.bad, x.dtype)
  return contract.reduce_losses(entropy, valid=inputs.valid, reduction=reduction)


def brier_score(
  logits,
  labels,
  *,
  kind: str = "logits",
  axis: int = -1,
  ignore_index: int | None = None,
  where=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Multiclass Brier score: squared distance between ``softmax(z)`` and the one-hot label.

  .. math::
    b_n = \sum_c \left(p_{n,c} - [c = y_n]\right)^2 \in [0, 2]

  (Brier's original sum over classes; divide by ``C`` for scikit-learn's per-class mean.)

  Args:
    logits: ``[..., C, ...]`` logits, class axis at ``axis``.
    labels, axis, ignore_index, where: as in the sparse losses.
    reduction: ``"none"``, ``"sum"`` or ``"mean"`` (over kept examples).
    kind: ``"logits"`` (default), ``"probs"``, ``"binary_logits"`` or ``"binary_probs"``
      (:mod:`xentax.metrics`).

  Returns:
    Float32 (float64 for float64 logits): a scalar, or the labels' shape for ``"none"``.

  Raises:
    ValueError: an unknown reduction; otherwise as the sparse losses.

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.metrics.brier_score(jnp.zeros((1, 2)), jnp.array([0])))
    0.5

  References:
    Brier, "Verification of forecasts expressed in terms of probability", 1950.
  """
  fn_name = "brier_score"
  contract.check_reduction(fn_name, reduction)
  x, inputs = prepare(
    fn_name, logits, labels, axis=axis, ignore_index=ignore_index, where=where, kind=kind
  )
  p = jnp.exp(x - contract.logsumexp(x)[..., None])
  onehot = jnp.arange(x.shape[-1]) == inputs.labels[..., None]
  score = jnp.sum(jnp.square(p - onehot.astype(p.dtype)), axis=-1)
  score = score + contract.nan_where(inputs.bad, x.dtype)
  return contract.reduce_losses(score, valid=inputs.valid, reduction=reduction)
