r"""Per-example measures of a classifier's predictions: accuracy, perplexity, entropy, Brier.

Design notes:
  * Every measure takes ``(logits, labels)`` with integer labels, and ``axis``, ``where``
    and ``ignore_index`` exactly as the sparse losses do (the same :func:`prepare_sparse`
    and :func:`reduce_losses`), so a measure and its loss agree on which examples count.
  * Pure, jit-able functions of arrays; a label out of range raises on concrete inputs and
    gives NaN under ``jit``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.losses import contract
from xentax.losses import sparse_categorical_cross_entropy_with_logits as _sparse_ce


def prepare(fn_name, logits, labels, *, axis, ignore_index, where):
  """Validated inputs: logits ``[..., C]`` (class axis last, compute dtype, dropped rows 0)."""
  inputs = contract.prepare_sparse(
    fn_name, logits, labels, axis=axis, class_weights=None, ignore_index=ignore_index, where=where
  )
  x = jnp.where(inputs.valid[..., None], inputs.scores, jnp.zeros((), inputs.scores.dtype))
  return x, inputs


def top_k_accuracy(
  logits,
  labels,
  *,
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

  Returns:
    Float32 (float64 for float64 logits): a scalar, or the labels' shape for ``"none"``.

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
  x, inputs = prepare(fn_name, logits, labels, axis=axis, ignore_index=ignore_index, where=where)
  target = jnp.take_along_axis(x, inputs.labels[..., None], axis=-1)
  above = jnp.sum(x > target, axis=-1)
  hits = (above < k).astype(x.dtype) + contract.nan_where(inputs.bad, x.dtype)
  return contract.reduce_losses(hits, valid=inputs.valid, reduction=reduction)


def perplexity(
  logits, labels, *, axis: int = -1, ignore_index: int | None = None, where=None
) -> jax.Array:
  r"""``exp`` of the mean negative log-likelihood over kept examples (tokens).

  .. math::
    \mathrm{PPL} = \exp\Big(\frac{1}{N} \sum_n \left(\mathrm{lse}(z_n) - z_{n,y_n}\right)\Big)

  1 for a perfect model, ``C`` for uniform predictions over ``C`` classes; 1 when nothing is
  kept (the mean is 0).

  Args:
    logits: ``[..., C, ...]`` logits, class axis at ``axis``.
    labels, axis, ignore_index, where: as in the sparse losses.

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
  contract.float_array("perplexity", "logits", logits)
  return jnp.exp(
    _sparse_ce(logits, labels, axis=axis, ignore_index=ignore_index, where=where, reduction="mean")
  )


def predictive_entropy(
  logits,
  labels=None,
  *,
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

  Returns:
    Float32 (float64 for float64 logits), in ``[0, log C]``; a scalar, or the per-example
    shape (the logits' without ``axis``) for ``"none"``.

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
    labels = jnp.zeros(
      shape[: contract.normalize_axis(fn_name, axis, len(shape))]
      + shape[contract.normalize_axis(fn_name, axis, len(shape)) + 1 :],
      jnp.int32,
    )
  x, inputs = prepare(fn_name, logits, labels, axis=axis, ignore_index=ignore_index, where=where)
  log_p = x - contract.logsumexp(x)[..., None]
  p = jnp.exp(log_p)
  # Select before multiplying: p = 0 where log p = -inf, and 0 * -inf would be NaN.
  entropy = -jnp.sum(jnp.where(p > 0, p * jnp.where(p > 0, log_p, 0.0), 0.0), axis=-1)
  entropy = entropy + contract.nan_where(inputs.bad, x.dtype)
  return contract.reduce_losses(entropy, valid=inputs.valid, reduction=reduction)


def brier_score(
  logits,
  labels,
  *,
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
  x, inputs = prepare(fn_name, logits, labels, axis=axis, ignore_index=ignore_index, where=where)
  p = jnp.exp(x - contract.logsumexp(x)[..., None])
  onehot = jnp.arange(x.shape[-1]) == inputs.labels[..., None]
  score = jnp.sum(jnp.square(p - onehot.astype(p.dtype)), axis=-1)
  score = score + contract.nan_where(inputs.bad, x.dtype)
  return contract.reduce_losses(score, valid=inputs.valid, reduction=reduction)
