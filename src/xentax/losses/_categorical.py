"""Dense (one-hot or soft target) categorical cross-entropy, from probabilities and logits.

Design notes:
  * The deck's categorical pseudocode computes ``entropy_i = -Q_i log P_i`` per class and
    then writes ``cross_entropy_loss = (entropy_i)``, dropping the sum. The loss here is the
    deck's formula slide instead: ``H(y, p) = -sum_i y_i log p_i``.
  * ``0 log 0 = 0``: classes with zero target mass contribute nothing, even where their
    logit is ``-inf`` or their probability is 0.
  * ``"mean"`` divides by the number of kept examples, as torch does for probability
    targets (class weights do not enter the denominator there).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from xentax.losses import _common, _validate


class DenseInputs(NamedTuple):
  scores: jax.Array  # [..., C], class axis last, compute dtype, dropped rows zeroed
  targets: jax.Array  # [..., C], smoothed and weighted target coefficients
  valid: jax.Array  # [...]
  bad: jax.Array  # [...], a target outside [0, 1] in a kept row


def _prepare_dense(
  fn_name, scores, targets, *, axis, class_weights, label_smoothing, where, fill
) -> DenseInputs:
  scores = _validate.float_array(fn_name, "logits/probs", scores)
  targets = _validate.numeric_array(fn_name, "targets", targets)
  _common.check_same_shape(fn_name, "logits/probs", scores, "targets", targets)
  axis = _common.normalize_axis(fn_name, axis, scores.ndim)
  _validate.check_num_classes(fn_name, scores.shape[axis])
  option_bad = _validate.options(fn_name, label_smoothing=label_smoothing)
  dtype = _common.compute_dtype(scores)
  example_shape = scores.shape[:axis] + scores.shape[axis + 1 :]
  valid = _common.broadcast_mask(fn_name, where, example_shape)
  bad_targets = ((targets < 0) | (targets > 1)) & jnp.expand_dims(valid, axis)
  _common.check_values(fn_name, "targets must lie in [0, 1]", targets, bad_targets)
  bad = _validate.any_bad(jnp.any(bad_targets, axis=axis), option_bad)

  scores = jnp.moveaxis(scores, axis, -1).astype(dtype)
  targets = jnp.moveaxis(targets, axis, -1).astype(dtype)
  num_classes = scores.shape[-1]

  scores = jnp.where(valid[..., None], scores, jnp.full_like(scores, fill))
  targets = jnp.where(valid[..., None], targets, jnp.zeros_like(targets))
  if not _common.is_static_zero(label_smoothing):
    eps = jnp.asarray(label_smoothing, dtype)
    targets = (1 - eps) * targets + eps / num_classes
  if class_weights is not None:
    class_weights = _validate.to_array(fn_name, "class_weights", class_weights)
    class_weights = _common.class_weight_vector(fn_name, class_weights, num_classes, dtype)
    bad = _validate.any_bad(bad, _any(_validate.option(fn_name, "class_weights", class_weights)))
    targets = targets * class_weights
  return DenseInputs(scores, targets, valid, bad & valid)


def _any(flags):
  return None if flags is None else jnp.any(flags)


def categorical_cross_entropy_with_logits(
  logits,
  targets,
  *,
  axis: int = -1,
  class_weights=None,
  label_smoothing=0.0,
  where=None,
  reduction: str = "mean",
) -> jax.Array:
  """Cross-entropy between target distributions and ``softmax(logits)``.

  .. math::
    \\ell_n = -\\sum_c w_c\\, q_{n,c} \\log \\mathrm{softmax}(z_n)_c,
    \\quad q = (1 - \\epsilon)\\, y + \\epsilon / C

  Gradient: ``d l_n / d z_n = softmax(z_n) sum_c(w_c q_c) - w q``; for one-hot targets
  and no options, the deck's ``y_pred - y``.

  Args:
    logits: ``[..., C, ...]`` unnormalised scores, class axis at ``axis``.
    targets: one-hot or soft distributions, same shape as ``logits``, entries in [0, 1].
    axis: the class axis.
    class_weights: ``[C]`` per-class weights (torch's ``weight`` with probability targets).
    label_smoothing: ``epsilon``, torch's convention.
    where: boolean mask of the per-example shape (``logits.shape`` without ``axis``).
    reduction: ``"none"``, ``"sum"`` or ``"mean"`` (sum over kept examples / their count).

  Returns:
    The loss, float32 (float64 for float64 logits).

  Raises:
    ValueError: shapes differ, unknown reduction, or a concrete target outside [0, 1]
    (NaN for that example under ``jit``).

  Example:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.categorical_cross_entropy_with_logits(
    ...     jnp.log(jnp.array([0.2, 0.8])), jnp.array([0.0, 1.0])))  # doctest: +ELLIPSIS
    0.2231...
  """
  fn_name = "categorical_cross_entropy_with_logits"
  _common.check_reduction(fn_name, reduction)
  inputs = _prepare_dense(
    fn_name,
    logits,
    targets,
    axis=axis,
    class_weights=class_weights,
    label_smoothing=label_smoothing,
    where=where,
    fill=0.0,
  )
  x = inputs.scores + _common.nan_where(inputs.bad, inputs.scores.dtype)[..., None]
  log_p = x - _common.logsumexp(x)[..., None]
  losses = -jnp.sum(_common.safe_mul(inputs.targets, log_p), axis=-1)
  return _common.reduce_losses(losses, valid=inputs.valid, reduction=reduction)


def categorical_cross_entropy(
  probs,
  targets,
  *,
  axis: int = -1,
  class_weights=None,
  label_smoothing=0.0,
  where=None,
  reduction: str = "mean",
) -> jax.Array:
  """Cross-entropy between target distributions and predicted probabilities.

  The deck's formula ``H(y, p) = -sum_i y_i log p_i`` (its pseudocode omits the sum),
  with each ``log`` clamped at -100 as torch's ``binary_cross_entropy`` does, so a zero
  probability gives a large finite loss, and ``0 log 0 = 0``. Probabilities are used as
  given, not renormalised.

  .. math::
    \\ell_n = -\\sum_c w_c\\, q_{n,c} \\max(\\log p_{n,c}, -100)

  Gradient: ``d l_n / d p_{n,c} = -w_c q_{n,c} / p_{n,c}`` (0 where the clamp is active).

  Args:
    probs: ``[..., C, ...]`` probabilities in [0, 1], class axis at ``axis``.
    targets: one-hot or soft distributions, same shape as ``probs``.
    axis: the class axis.
    class_weights: ``[C]`` per-class weights.
    label_smoothing: ``epsilon``, torch's convention.
    where: boolean mask of the per-example shape.
    reduction: ``"none"``, ``"sum"`` or ``"mean"``.

  Returns:
    The loss, float32 (float64 for float64 probs).

  Raises:
    ValueError: as :func:`categorical_cross_entropy_with_logits`, and for a concrete
    probability outside [0, 1] (NaN under ``jit``).

  Example:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.categorical_cross_entropy(
    ...     jnp.array([0.2, 0.8]), jnp.array([0.0, 1.0])))  # doctest: +ELLIPSIS
    0.2231...
  """
  fn_name = "categorical_cross_entropy"
  _common.check_reduction(fn_name, reduction)
  inputs = _prepare_dense(
    fn_name,
    probs,
    targets,
    axis=axis,
    class_weights=class_weights,
    label_smoothing=label_smoothing,
    where=where,
    fill=1.0,
  )
  p = inputs.scores
  bad_probs = _common.check_probabilities(fn_name, p, inputs.valid, axis)
  bad = inputs.bad | jnp.any(bad_probs, axis=-1)
  p = p + _common.nan_where(bad, p.dtype)[..., None]
  losses = -jnp.sum(inputs.targets * _common.clamped_log(p), axis=-1)
  return _common.reduce_losses(losses, valid=inputs.valid, reduction=reduction)
