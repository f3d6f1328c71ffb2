"""Binary (elementwise, sigmoid) cross-entropy: from probabilities, from logits, focal.

Design notes:
  * The deck's "binary" pseudocode applies a softmax to ``X_j theta``; for one output that
    is always 1. The binary losses here use the deck's binary formula
    ``-y log p - (1 - y) log(1 - p)`` with ``p = sigmoid(z)``, elementwise on any shape.
  * From logits, ``log p = log_sigmoid(z)`` and ``log(1 - p) = log_sigmoid(-z)`` never
    round ``p`` to 0 or 1, and a zero coefficient times an infinite log is 0, so ``+-inf``
    logits give a finite loss (or ``+inf`` where the true value is infinite) and a finite
    gradient.
  * Labels may be soft, in [0, 1]; outside that range they raise on concrete inputs and
    give NaN under ``jit``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from xentax.losses import _common, _validate
from xentax.losses._sparse import focal_scale


class BinaryInputs(NamedTuple):
  scores: jax.Array  # compute dtype, dropped entries replaced by `fill`
  labels: jax.Array  # compute dtype, dropped entries 0
  valid: jax.Array  # bool, same shape


def _prepare_binary(
  fn_name, scores, labels, *, where, fill, params=None, option_bad=None
) -> tuple[BinaryInputs, dict]:
  """Validate a binary loss's inputs; return them and the broadcast elementwise ``params``.

  ``params`` (``weights``, ``pos_weight``) are broadcast to the scores' shape and checked
  against their domain; under ``jit`` an entry outside it (or a scalar option flagged in
  ``option_bad``) makes the loss and gradient of the examples it touches NaN.
  """
  scores = _validate.float_array(fn_name, "logits/probs", scores)
  labels = _validate.numeric_array(fn_name, "labels", labels)
  _common.check_same_shape(fn_name, "logits/probs", scores, "labels", labels)
  dtype = _common.compute_dtype(scores)
  valid = _common.broadcast_mask(fn_name, where, scores.shape)
  bad = ((labels < 0) | (labels > 1)) & valid
  _common.check_values(fn_name, "labels must lie in [0, 1]", labels, bad)
  broadcast = {}
  for name, value in (params or {}).items():
    if value is not None:
      value = _validate.to_array(fn_name, name, value)
      value = _common.broadcast_param(fn_name, name, value, scores.shape, dtype)
      flag = _validate.option(fn_name, name, value)
      bad = bad if flag is None else bad | (valid & flag)
    broadcast[name] = value
  if option_bad is not None:
    bad = bad | (valid & option_bad)
  scores = scores.astype(dtype)
  scores = jnp.where(valid, scores, jnp.full_like(scores, fill))
  scores = scores + _common.nan_where(bad, dtype)
  labels = jnp.where(valid, labels.astype(dtype), jnp.zeros((), dtype))
  return BinaryInputs(scores, labels, valid), broadcast


def _bce_from_logits(x, y, pos_weight=None) -> jax.Array:
  """Elementwise ``-(pw y log sigmoid(x) + (1 - y) log sigmoid(-x))``."""
  pos_coef = y if pos_weight is None else pos_weight * y
  return -(
    _common.safe_mul(pos_coef, jax.nn.log_sigmoid(x))
    + _common.safe_mul(1 - y, jax.nn.log_sigmoid(-x))
  )


def binary_cross_entropy(
  probs,
  labels,
  *,
  weights=None,
  where=None,
  reduction: str = "mean",
) -> jax.Array:
  """Binary cross-entropy between labels and predicted probabilities (torch's semantics).

  .. math::
    \\ell = -w \\left[ y \\max(\\log p, -100) + (1 - y) \\max(\\log(1 - p), -100) \\right]

  The clamp at -100 is torch's: ``p = 0`` with ``y = 1`` gives 100, not ``inf``; with
  ``y = 0`` it gives 0 (``0 log 0 = 0``). The deck's example ``y = 1, p = 0.8`` gives
  0.2231.

  Gradient: ``d l / d p = w (p - y) / (p (1 - p))`` (0 where a clamp is active).

  Args:
    probs: predicted probabilities of the positive class, any shape, in [0, 1].
    labels: same shape, hard or soft labels in [0, 1].
    weights: elementwise weights, broadcast to ``probs.shape``.
    where: boolean mask broadcast to ``probs.shape``; False entries are dropped.
    reduction: ``"none"``, ``"sum"`` or ``"mean"`` (over kept entries; weights do not
      enter the denominator, as in torch).

  Returns:
    The loss, float32 (float64 for float64 probs).

  Raises:
    ValueError: shapes differ, unknown reduction, or a concrete probability or label
    outside [0, 1] (NaN under ``jit``).

  Example:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.binary_cross_entropy(jnp.array(0.8), jnp.array(1.0)))  # doctest: +ELLIPSIS
    0.2231...
  """
  fn_name = "binary_cross_entropy"
  _common.check_reduction(fn_name, reduction)
  inputs, params = _prepare_binary(
    fn_name, probs, labels, where=where, fill=0.5, params={"weights": weights}
  )
  p, y = inputs.scores, inputs.labels
  bad_probs = ((p < 0) | (p > 1)) & inputs.valid
  _common.check_values(fn_name, "probs must lie in [0, 1]", p, bad_probs)
  p = p + _common.nan_where(bad_probs, p.dtype)
  losses = -(y * _common.clamped_log(p) + (1 - y) * _common.clamped_log1m(p))
  if weights is not None:
    losses = losses * params["weights"]
  return _common.reduce_losses(losses, valid=inputs.valid, reduction=reduction)


def binary_cross_entropy_with_logits(
  logits,
  labels,
  *,
  pos_weight=None,
  weights=None,
  label_smoothing=0.0,
  where=None,
  reduction: str = "mean",
) -> jax.Array:
  """Binary cross-entropy from logits (torch's ``binary_cross_entropy_with_logits``).

  .. math::
    \\ell = -w \\left[ p_w\\, y' \\log \\sigma(z) + (1 - y') \\log \\sigma(-z) \\right],
    \\quad y' = y (1 - \\epsilon) + \\epsilon / 2

  Gradient: ``d l / d z = w [(p_w y' + 1 - y') sigmoid(z) - p_w y']``; with no options the
  deck's ``y_pred - y``.

  Args:
    logits: any shape.
    labels: same shape, hard or soft labels in [0, 1].
    pos_weight: weight of the positive term, broadcast to ``logits.shape`` (torch: one
      per class along the last axis, ``num_negatives / num_positives``).
    weights: elementwise weights, broadcast to ``logits.shape``.
    label_smoothing: ``epsilon``; labels become ``y (1 - e) + e / 2``.
    where: boolean mask broadcast to ``logits.shape``.
    reduction: ``"none"``, ``"sum"`` or ``"mean"`` (over kept entries).

  Returns:
    The loss, float32 (float64 for float64 logits).

  Raises:
    ValueError: shapes differ, unknown reduction, or a concrete label outside [0, 1].

  Example:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.binary_cross_entropy_with_logits(
    ...     jnp.log(jnp.array(4.0)), jnp.array(1.0)))  # doctest: +ELLIPSIS
    0.2231...
  """
  fn_name = "binary_cross_entropy_with_logits"
  _common.check_reduction(fn_name, reduction)
  option_bad = _validate.options(fn_name, label_smoothing=label_smoothing)
  inputs, params = _prepare_binary(
    fn_name,
    logits,
    labels,
    where=where,
    fill=0.0,
    params={"pos_weight": pos_weight, "weights": weights},
    option_bad=option_bad,
  )
  x, y = inputs.scores, inputs.labels
  if not _common.is_static_zero(label_smoothing):
    eps = jnp.asarray(label_smoothing, x.dtype)
    y = y * (1 - eps) + eps / 2
  losses = _bce_from_logits(x, y, params["pos_weight"])
  if weights is not None:
    losses = losses * params["weights"]
  return _common.reduce_losses(losses, valid=inputs.valid, reduction=reduction)


def binary_focal_loss_with_logits(
  logits,
  labels,
  *,
  gamma=2.0,
  alpha=None,
  where=None,
  reduction: str = "mean",
) -> jax.Array:
  """Sigmoid focal loss (torchvision's ``sigmoid_focal_loss``), computed in log space.

  .. math::
    \\ell = \\alpha_t (1 - p_t)^{\\gamma}\\, \\mathrm{BCE}(z, y), \\quad
    1 - p_t = y\\, \\sigma(-z) + (1 - y)\\, \\sigma(z), \\quad
    \\alpha_t = \\alpha y + (1 - \\alpha)(1 - y)

  ``log(1 - p_t)`` is a log-sum-exp of ``log y + log_sigmoid(-z)`` and
  ``log(1 - y) + log_sigmoid(z)``, so it never rounds to ``log 0`` for finite logits.
  ``alpha=None`` applies no class balance (torchvision's ``alpha < 0``).

  Gradient for ``y = 1`` (``p = sigmoid(z)``):
  ``d l / d z = alpha (1 - p)^g (g p log p - (1 - p))``; ``y = 0`` mirrors it with
  ``z -> -z`` and ``alpha -> 1 - alpha``.

  Args:
    logits: any shape.
    labels: same shape, hard or soft labels in [0, 1].
    gamma: focusing parameter (>= 0); 0 gives the (alpha-weighted) cross-entropy.
    alpha: weight of positives in [0, 1] (negatives get ``1 - alpha``), or None.
    where: boolean mask broadcast to ``logits.shape``.
    reduction: ``"none"``, ``"sum"`` or ``"mean"`` (over kept entries).

  Returns:
    The loss, float32 (float64 for float64 logits).

  References:
    Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
  """
  fn_name = "binary_focal_loss_with_logits"
  _common.check_reduction(fn_name, reduction)
  option_bad = _validate.options(fn_name, gamma=gamma, alpha=alpha)
  inputs, _ = _prepare_binary(fn_name, logits, labels, where=where, fill=0.0, option_bad=option_bad)
  x, y = inputs.scores, inputs.labels
  ce = _bce_from_logits(x, y)
  log_1mpt = _common.logsumexp(
    jnp.stack(
      [_safe_log(y) + jax.nn.log_sigmoid(-x), _safe_log(1 - y) + jax.nn.log_sigmoid(x)],
      axis=-1,
    )
  )
  losses = focal_scale(ce, log_1mpt, gamma)
  if alpha is not None:
    alpha = jnp.asarray(alpha, x.dtype)
    losses = (alpha * y + (1 - alpha) * (1 - y)) * losses
  return _common.reduce_losses(losses, valid=inputs.valid, reduction=reduction)


def _safe_log(y) -> jax.Array:
  """``log y`` with ``log 0 = -inf`` and a finite (zero) gradient there."""
  positive = y > 0
  log_y = jnp.log(jnp.where(positive, y, jnp.ones_like(y)))
  return jnp.where(positive, log_y, jnp.full_like(y, -jnp.inf))
