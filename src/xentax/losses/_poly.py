r"""Poly-1 loss: cross-entropy plus ``epsilon (1 - p_y)`` (Leng et al., 2022)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.losses import _common, _frame, _reduce, _validate
from xentax.losses._sparse import sparse_categorical_cross_entropy_with_logits


@_frame.loss
def poly1_cross_entropy_with_logits(
  logits,
  labels,
  *,
  epsilon=2.0,
  axis: int = -1,
  ignore_index: int | None = None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Poly-1 cross-entropy with integer labels: the first polynomial term re-weighted.

  .. math::
    \ell_n = -\log p_{n, y_n} + \epsilon\, (1 - p_{n, y_n}), \quad p = \mathrm{softmax}(z)

  ``optax.losses.poly_loss_cross_entropy(logits, one_hot(labels), epsilon)``; ``epsilon = 0``
  is the cross-entropy. Gradient: ``d l / d z = (1 + epsilon p_y) (p - onehot(y))``.

  Args:
    logits: ``[..., C, ...]`` unnormalised scores, class axis at ``axis``.
    labels: integer class indices, the per-example shape: ``logits.shape`` without
      ``axis``.
    epsilon: weight of the ``1 - p_y`` term, finite and ``>= -1`` (below, the loss could be
      negative); may be traced.
    $options

  $contract

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> z, y = jnp.log(jnp.array([[0.2, 0.8]])), jnp.array([1])
    >>> round(float(xentax.poly1_cross_entropy_with_logits(z, y, epsilon=1.0)), 4)
    0.4231

  References:
    Leng et al., "PolyLoss: A Polynomial Expansion Perspective of Classification Loss
    Functions", ICLR 2022; ``optax.losses.poly_loss_cross_entropy``.
  """
  fn_name = "poly1_cross_entropy_with_logits"
  _reduce.check_reduction(fn_name, reduction)
  logits = _validate.float_array(fn_name, "logits", logits)
  labels, shown = _validate.integer_labels(fn_name, labels, ignore_index)
  bad = _validate.options(fn_name, epsilon=epsilon)
  if bad is not None:
    # A traced bad epsilon: NaN logits, so every kept example's loss and gradient are NaN.
    logits = logits + _common.nan_where(bad, _common.compute_dtype(logits))
  # The cross-entropy checks the original labels (in their own dtype) and names them.
  ce = sparse_categorical_cross_entropy_with_logits(
    logits, shown, axis=axis, ignore_index=ignore_index, where=where, reduction="none"
  )
  valid = _validate.broadcast_mask(fn_name, where, labels.shape)
  if ignore_index is not None:
    valid = valid & (labels != ignore_index)
  # p_y = exp(-CE): no second softmax; dropped examples have CE = 0, masked below.
  losses = ce + jnp.asarray(epsilon, ce.dtype) * (1 - jnp.exp(-ce))
  weights = _validate.sample_weights(fn_name, sample_weight, valid.shape, ce.dtype)
  return _reduce.reduce_losses(losses, valid=valid, sample_weight=weights, reduction=reduction)
