r"""Dense-target (one-hot or soft) categorical focal loss from logits, Keras 3's convention.

Design rules:
  * No clipping of ``p``: ``log p = z - lse(z)`` and ``1 - p = -expm1(log p)`` lose nothing
    to cancellation beyond ``log p``'s own rounding (at the logits' precision).
  * The common case is one fused loop of guard-free row reductions (a select or compare
    splits the loop on XLA:CPU); a kept row that is not finite sends the batch to the
    guarded formula.
  * A static whole-number ``gamma`` is an integer power; a traced one keeps ``jnp.power``.
  * The logit tangent is a closed form; the options' come from the guarded per-row formula
    with ``lse`` held fixed.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from xentax.losses import _common, _dense, _engine, _focal, _frame, _rows, _validate

# The largest whole-number gamma computed as an integer power (repeated multiplication).
_MAX_INTEGER_GAMMA = 16


def _alpha_vector(fn_name, alpha, num_classes, dtype):
  """``alpha`` as ``[C]`` weights (a scalar is broadcast), and a traced NaN-or-0 flag."""
  alpha = _validate.to_array(fn_name, "alpha", alpha)
  bad = _validate.option(fn_name, "alpha", alpha)
  vector = jnp.asarray(alpha, dtype)
  if vector.ndim > 1 or (vector.ndim == 1 and vector.shape[0] not in (1, num_classes)):
    raise ValueError(
      f"{fn_name}: alpha has shape {vector.shape}; pass a scalar or ({num_classes},), one "
      "weight per class."
    )
  vector = jnp.broadcast_to(vector, (num_classes,))
  nan = None if bad is None else _common.nan_where(jnp.any(bad), dtype)
  return vector, nan


@_frame.loss
def categorical_focal_loss_with_logits(
  logits,
  targets,
  *,
  gamma=2.0,
  alpha=0.25,
  axis: int = -1,
  label_smoothing=0.0,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Focal loss between target distributions and ``softmax(logits)`` (Keras 3's form).

  .. math::
    \ell_n = -\sum_c \alpha_c\, q_{n,c} (1 - p_{n,c})^{\gamma} \log p_{n,c},
    \quad p = \mathrm{softmax}(z), \quad q = (1 - \epsilon)\, y + \epsilon / C

  Keras 3's ``CategoricalFocalCrossentropy(from_logits=True)`` without its clipping of ``p``
  to ``[1e-7, 1 - 1e-7]``; the modulator is taken per class. ``gamma = 0`` and ``alpha = 1``
  give :func:`xentax.categorical_cross_entropy_with_logits`. ``0 log 0 = 0``: a class with
  zero target mass contributes nothing, even at a ``-inf`` logit.

  Gradient: with ``b_c = alpha_c q_c ((1 - p_c)^g - g p_c (1 - p_c)^(g - 1) log p_c)``,
  ``d l_n / d z_n = p sum_c b_c - b`` (the cross-entropy's ``p sum(q) - q`` with ``q``
  replaced by ``b``).

  Args:
    logits: ``[..., C, ...]`` unnormalised scores, class axis at ``axis``; the per-example
      shape is ``logits.shape`` without ``axis``.
    targets: one-hot or soft distributions, same shape as ``logits``, entries in [0, 1].
    gamma: focusing parameter (finite, >= 0), Keras's default 2.
    alpha: balancing weight in [0, 1]: a scalar (Keras's default 0.25, as in Lin et al.)
      or ``[C]`` per-class values; None for no weighting (``alpha = 1``). It does not
      enter the ``"mean"`` denominator.
    $options

  $contract

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.categorical_focal_loss_with_logits(
    ...     jnp.log(jnp.array([0.2, 0.8])), jnp.array([0.0, 1.0])))  # doctest: +ELLIPSIS
    0.0022...

  References:
    Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017;
    ``keras.losses.CategoricalFocalCrossentropy``.
  """
  fn_name = "categorical_focal_loss_with_logits"
  inputs = _dense.prepare_logits(
    fn_name,
    logits,
    targets,
    axis=axis,
    class_weights=None,
    label_smoothing=label_smoothing,
    where=where,
    sample_weight=sample_weight,
    reduction=reduction,
    gamma=gamma,
  )
  x, targets = inputs.logits, inputs.targets
  if alpha is not None:
    alpha, nan = _alpha_vector(fn_name, alpha, x.shape[-1], x.dtype)
    if targets.nan is not None:
      nan = targets.nan if nan is None else targets.nan + nan
    targets = targets._replace(class_weights=alpha, nan=nan)
  power = _static_power(gamma)
  gamma = None if power is not None else jnp.asarray(gamma, x.dtype)
  return inputs.reduce(_logits_losses(power, x, targets, inputs.valid, gamma), reduction)


def _static_power(gamma) -> int | None:
  """``gamma`` as a Python int when it is a static whole number in ``[0, 16]``, else None."""
  if isinstance(gamma, bool) or not isinstance(gamma, (int, float)):
    return None
  whole = float(gamma).is_integer() and 0 <= gamma <= _MAX_INTEGER_GAMMA
  return int(gamma) if whole else None


def _row_losses(power, x, lse, targets, gamma):
  """``-sum_c q_c (1 - p_c)^gamma log p_c`` per row for a given ``lse``, every guard on."""
  log_p = x - lse[..., None]
  # 1 - p without cancellation for small p; its power has an exact (0) gradient at p = 1.
  modulator = _focal.focal_modulator(-jnp.expm1(log_p), gamma, power)
  # safe_mul: 0 log 0 = 0 where a class with no target mass has a -inf logit.
  return -jnp.sum(_common.safe_mul(_dense.coefficients(targets) * modulator, log_p), -1)


def _fast_stats(power, x, targets, gamma):
  """``(lse, loss)`` per row from guard-free row reductions (module notes); a row with a
  target outside [0, 1] gets a NaN loss from the targets' row ``min`` and ``max``."""
  num_classes = x.shape[-1]
  pieces = _rows.row_pieces(num_classes)
  z = _rows.split_rows(x, pieces)
  parts = targets._replace(
    t=_rows.split_rows(targets.t, pieces),
    class_weights=_rows.split_rows(targets.class_weights, pieces),
  )

  rows = _rows.row_axes(pieces)
  m = _rows.row_max(z, pieces)
  q = _dense.coefficients(parts, num_classes, check_range=False)
  if pieces == 1:
    # One exponential per entry shared by both reductions (1 - e / E is as accurate as
    # expm1); rows in pieces keep the expm1, as there a shared exponential is written out.
    exp_shifted = jnp.exp(z - m[rows])
    exp_sum = _rows.row_reduce(exp_shifted, pieces)
    lse = m + jnp.log(exp_sum)
  else:
    lse = _rows.fast_lse(z, m, pieces)
  checked = lse + _dense.range_nan(pieces, targets.t)
  minus_log_p = checked[rows] - z
  if pieces == 1:
    one_minus_p = 1 - exp_shifted * (1 / exp_sum)[rows]
  else:
    one_minus_p = -jnp.expm1(-minus_log_p)
  losses = _rows.row_reduce(
    q * _focal.focal_modulator(one_minus_p, gamma, power) * minus_log_p, pieces
  )
  return lse, losses


def _guarded_stats(power, x, targets, valid, gamma):
  """``(lse, loss)`` per row with every guard: dropped rows zeroed, ``0 log 0 = 0``."""
  if valid is not None:
    x = jnp.where(valid[..., None], x, jnp.zeros_like(x))
  lse = _rows.logsumexp(x)
  return lse, _row_losses(power, x, lse, targets, gamma)


def _stats(power, x, targets, valid, gamma):
  """``(lse, loss)``: the fast form, or the guarded one if a kept row is not finite."""
  fast = _fast_stats(power, x, targets, gamma)

  def guarded(x, t, valid):
    return _guarded_stats(power, x, targets._replace(t=t), valid, gamma)

  ok = _engine.all_finite(fast[1], valid)
  return _engine.fast_or_guarded(fast, guarded, ok, x, targets.t, valid)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _logits_losses(power, x, targets, valid, gamma):
  """Per-example focal losses (0 for dropped rows); ``power``: a static whole ``gamma``
  (then ``gamma`` is None). Logit tangent ``G = p sum(b) - b``, ``b_c = q_c A_c``
  (:func:`focal_weight`), under ``jax.checkpoint``: reverse mode saves only ``lse``."""
  return _rows.mask_rows(_stats(power, x, targets, valid, gamma)[1], valid)


@functools.partial(_logits_losses.defjvp, symbolic_zeros=True)
def _logits_losses_jvp(power, primals, tangents):
  x, targets, valid, gamma = primals
  t_x, t_targets, _, t_gamma = tangents
  lse, losses = _stats(power, x, targets, valid, gamma)
  losses = _rows.mask_rows(losses, valid)
  t_losses = jnp.zeros_like(losses)
  if not _common.is_symbolic_zero(t_x):
    grad_dot = jax.checkpoint(functools.partial(_logit_grad_dot, power))
    t_losses = t_losses + grad_dot(x, t_x, targets, lse, valid, gamma)
  options, t_options = (targets, gamma), (t_targets, t_gamma)
  if _engine.any_moves(options, t_options):
    # Dropped rows are evaluated at zero logits (lse = log C): nothing there is infinite.
    if valid is not None:
      x = jnp.where(valid[..., None], x, jnp.zeros_like(x))
      lse = jnp.where(valid, lse, jnp.log(jnp.asarray(x.shape[-1], lse.dtype)))
      options = (targets._replace(t=_rows.mask_rows(targets.t, valid)), gamma)

    def from_options(targets, gamma):
      return _rows.mask_rows(_row_losses(power, x, lse, targets, gamma), valid)

    t_losses = _engine.plus(t_losses, _engine.held_jvp(from_options, options, t_options))
  return losses, t_losses


def _logit_grad_dot(power, x, t_x, targets, lse, valid, gamma):
  """``sum_c (d loss / d z_c) t_c`` per example, from the closed form."""
  log_p = x - lse[..., None]
  p = jnp.exp(log_p)
  # Bad targets make their rows' q NaN (the per-entry check): so is their gradient.
  b = _dense.coefficients(targets) * _focal.focal_weight(power, p, log_p, gamma)
  grad = p * jnp.sum(b, axis=-1, keepdims=True) - b
  return jnp.sum(_rows.mask_rows(grad, valid) * t_x, axis=-1)
