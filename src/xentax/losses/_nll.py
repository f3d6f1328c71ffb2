r"""Negative log-likelihood on log-probabilities (torch's ``nll_loss``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.losses import _common, _frame
from xentax.losses._sparse import prepare_sparse

# 2^-64 keeps every finite entry, and the sum of any row, finite (float32 and float64).
_NAN_SCALE = 2.0**-64


@_frame.loss(reduction="reduction_weighted")
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
  r"""torch's ``nll_loss``: the negative log-likelihood of integer labels given log-probabilities.

  .. math::
    \ell_n = -w_{y_n}\, x_{n, y_n}

  The input is used as given, not renormalised: ``nll_loss(log_softmax(z), y)`` is the
  sparse cross-entropy of ``z``. Unlike torch's, ``"mean"`` is 0 (not NaN) when nothing is
  kept, and a NaN anywhere in a kept row, not only at the target, makes its loss NaN.

  Gradient: ``d l_n / d x_n = -w_{y_n} onehot(y_n)``; ``-inf`` entries off the target
  contribute nothing and get a zero gradient.

  Args:
    log_probs: ``[..., C, ...]`` log-probabilities, class axis at ``axis`` (torch puts it
      at 1: pass ``axis=1`` for torch's ``[N, C, d1, ...]`` layout).
    labels: integer class indices, the per-example shape: ``log_probs.shape`` without
      ``axis``.
    $options

  $contract

  Examples:
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
  # Dropped rows may hold -inf or NaN: their target is selected away per row.
  target = _common.take_target(x, inputs.labels)
  target = jnp.where(inputs.valid, target, jnp.zeros_like(target))
  # A NaN anywhere in a kept row (or a bad label or option) makes it NaN. A plain row sum
  # finds it (a per-entry isnan writes a [..., C] mask on XLA:CPU), of scaled entries.
  row_nan = (jnp.isnan(jnp.sum(x * _NAN_SCALE, axis=-1)) & inputs.valid) | inputs.bad
  losses = -target * (1 + _common.nan_where(row_nan, x.dtype))
  if inputs.target_weight is not None:
    # safe_mul: a class weight of 0 on an infinite loss adds 0 (0 * inf = 0).
    losses = _common.safe_mul(inputs.target_weight, losses)
  return inputs.reduce(losses, reduction)
