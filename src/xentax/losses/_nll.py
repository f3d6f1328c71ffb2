r"""Negative log-likelihood on log-probabilities (torch's ``nll_loss``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.losses import _common, _doc
from xentax.losses._sparse import prepare_sparse

# 2^-64 keeps every finite entry, and the sum of any row, finite (float32 and float64).
_NAN_SCALE = 2.0**-64


@_doc.shared
def nll_loss(
  log_probs,
  labels,
  *,
  axis: int = -1,
  class_weights=None,
  ignore_index: int | None = None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Negative log-likelihood of integer labels under given log-probabilities.

  torch's ``F.nll_loss``: the input is used as given (not renormalised), so
  ``nll_loss(log_softmax(z), y)`` is the sparse cross-entropy of ``z``.

  .. math::
    \ell_n = -w_{y_n}\, x_{n, y_n}

  ``"mean"`` is torch's weighted mean, ``(nll_loss(reduction="none") * s).sum() /
  (s * weight[y]).sum()`` over the kept examples, but 0 when nothing is kept, where torch
  returns NaN; with nothing dropped, ``"sum_over_batch_size"`` is torch's
  ``(nll_loss(reduction="none") * s).mean()``. A NaN anywhere in a kept row (not only at
  the target, which is all torch reads) makes that row's loss NaN.

  Gradient: ``d l_n / d x_n = -w_{y_n} onehot(y_n)``; ``-inf`` entries off the target
  contribute nothing and get a zero gradient.

  Args:
    log_probs: ``[..., C, ...]`` log-probabilities, class axis at ``axis`` (torch puts it
      at 1: pass ``axis=1`` for torch's ``[N, C, d1, ...]`` layout).
    labels: integer class indices, the per-example shape: ``log_probs.shape`` without
      ``axis``.
    axis: the class axis.
    $class_weights
    $ignore_index
    $where
    $sample_weight
    $reduction_weighted

  Returns:
    The loss, float32 (float64 for float64 input); ``labels.shape`` for ``"none"``.

  Raises:
    TypeError: float labels, non-float input or a non-numeric ``sample_weight``.
    ValueError: shapes that do not match, an unknown reduction, or (concrete inputs) a
    label out of range or a negative or non-finite ``sample_weight`` (NaN under ``jit``).

  Example:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.nll_loss(jnp.log(jnp.array([[0.2, 0.8]])), jnp.array([1])))
    ... # doctest: +ELLIPSIS
    0.2231...

  References:
    ``torch.nn.functional.nll_loss``.
  """
  inputs = prepare_sparse(
    "nll_loss",
    log_probs,
    labels,
    axis=axis,
    class_weights=class_weights,
    ignore_index=ignore_index,
    where=where,
    sample_weight=sample_weight,
    reduction=reduction,
  )
  x = inputs.scores
  # Dropped rows may hold -inf or NaN: their target is selected away per row (its
  # cotangent is then 0, and the gather's transpose multiplies nothing by it).
  target = _common.take_target(x, inputs.labels)
  target = jnp.where(inputs.valid, target, jnp.zeros_like(target))
  # torch reads only the target entry; a NaN elsewhere in a kept row still makes the row's
  # loss and gradient NaN (the contract of every xentax loss): a factor of exactly 1 or NaN.
  # A plain row sum finds it (a per-entry isnan writes a [..., C] mask on XLA:CPU, whose
  # fused min and max drop a NaN), of entries scaled so that finite ones cannot overflow
  # to inf - inf; +inf beside -inf, which no log-probabilities hold, is NaN too. A bad
  # label or option: NaN too, in value and gradient.
  row_nan = (jnp.isnan(jnp.sum(x * _NAN_SCALE, axis=-1)) & inputs.valid) | inputs.bad
  losses = -target * (1 + _common.nan_where(row_nan, x.dtype))
  if inputs.target_weight is not None:
    losses = inputs.target_weight * losses
  return inputs.reduce(losses, reduction)
