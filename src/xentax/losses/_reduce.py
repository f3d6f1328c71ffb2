"""Reduction of per-example losses: the one "mean over what is kept, 0 if nothing is" rule.

Design notes:
  * Masking (``where``, ``ignore_index``) and reduction live here, so every loss has the
    same denominators; an empty batch takes the same path (0 for every scalar reduction,
    an empty array for ``"none"``, zero gradients).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import _common

REDUCTIONS = ("none", "sum", "mean", "sum_over_batch_size")


# A reduction of torch or Keras that xentax names otherwise.
FOREIGN_REDUCTIONS = {
  "batchmean": '"mean" is torch\'s "batchmean": the sum over examples divided by their number',
  "elementwise_mean": '"mean" is torch\'s old "elementwise_mean"',
  "mean_with_sample_weight": '"mean" is Keras\'s "mean_with_sample_weight"',
  "auto": '"sum_over_batch_size" is Keras\'s default ("auto")',
}


def check_reduction(fn_name: str, reduction: str) -> None:
  """``ValueError`` unless ``reduction`` is one of :data:`REDUCTIONS` (naming xentax's
  spelling of a torch or Keras reduction)."""
  if reduction not in REDUCTIONS:
    hint = FOREIGN_REDUCTIONS.get(reduction) if isinstance(reduction, str) else None
    raise ValueError(
      f"{fn_name}: reduction={reduction!r} is not supported; choose one of {REDUCTIONS}"
      + (f" ({hint})." if hint else ".")
    )


def reduce_losses(
  losses, *, valid, denominator=None, sample_weight=None, reduction: str, axis_name=None
) -> jax.Array:
  """Weight, zero the invalid entries and reduce.

  With per-example losses ``l_n``, sample weights ``s_n`` (1 when ``None``), the
  ``"mean"`` denominator weights ``d_n`` (``w[y_n]`` for class-weighted sparse losses, else
  1) and ``K`` the kept examples:

  * ``"none"``: ``s_n l_n`` (0 where dropped);
  * ``"sum"``: ``sum_K s_n l_n``;
  * ``"mean"``: ``sum_K s_n l_n / sum_K s_n d_n``, the weighted mean (torch's convention
    for class weights; Keras's ``"mean_with_sample_weight"``);
  * ``"sum_over_batch_size"``: ``sum_K s_n l_n / |K|``, Keras's default reduction (and
    torch's ``(loss(reduction="none") * w).mean()``): weights do not enter the denominator.

  A zero weight drops its example's value even where ``l_n`` is infinite (``0 * inf = 0``).

  Args:
    losses: per-example losses, already multiplied by any class weights.
    valid: boolean mask of the same shape; False entries leave numerator and denominator.
    denominator: per-example contribution to the ``"mean"`` denominator (the target
      class weight ``w[y_n]``); ``None`` counts valid examples.
    sample_weight: ``None`` or per-example weights of the losses' shape, already checked
      by :func:`xentax.losses._validate.sample_weights`.
    reduction: one of :data:`REDUCTIONS`.
    axis_name: inside ``shard_map``, the mesh axis (or axes) the examples are sharded
      over; sums and the mean's denominator are then global (one all-reduce).

  Returns:
    The reduced loss. A mean with nothing left (or zero total weight) is 0 with zero
    gradient, never NaN.
  """
  zero = jnp.zeros_like(losses)
  if sample_weight is not None:
    losses = _common.safe_mul(sample_weight, losses)
  losses = jnp.where(valid, losses, zero)
  if reduction == "none":
    return losses
  total = jnp.sum(losses)
  if reduction == "sum":
    return total if axis_name is None else lax.psum(total, axis_name)
  if reduction == "sum_over_batch_size" or (denominator is None and sample_weight is None):
    denom = jnp.sum(valid, dtype=losses.dtype)
  else:
    if denominator is None:
      denominator = sample_weight
    elif sample_weight is not None:
      denominator = sample_weight * denominator
    denom = jnp.sum(jnp.where(valid, denominator, zero))
  if axis_name is not None:
    total, denom = lax.psum(jnp.stack([total, denom]), axis_name)
  return mean_of(total, denom)


def mean_of(total, denom) -> jax.Array:
  """``total / denom``, and 0 with zero gradient where ``denom`` is 0 (nothing kept)."""
  nonzero = denom != 0
  return jnp.where(nonzero, total / jnp.where(nonzero, denom, jnp.ones_like(denom)), 0.0)
