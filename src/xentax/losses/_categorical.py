r"""Dense (one-hot or soft target) categorical cross-entropy, from probabilities and logits.

Design rules:
  * The common case is one fused loop of row reductions: a select or compare on
    ``[..., C]`` arrays splits it on XLA:CPU, so guards stay off them, and a kept row whose
    result is not finite sends the batch to the guarded formula.
  * Bad targets are caught by row min and max; as XLA:CPU's fused min and max can drop a
    NaN on long rows, a NaN probability is caught by ``p - p`` in the sum.
  * The z-loss enters the row's sum as its first term: an ``lse`` output splits the loop.
  * Gradients are ``custom_jvp`` closed forms, one elementwise pass in reverse mode; dropped
    rows are masked before any product, so their NaN never meets a zero cotangent.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from xentax.losses import _common, _dense, _engine, _frame, _rows, _softcap, _validate


class _Config(NamedTuple):
  z_loss: bool  # the z-loss term is on
  softcap: bool  # logits are soft-capped (the cap itself is an array argument)
  pieces: int  # a row is summed in this many pieces (see _rows.row_reduce)


def _split(config, x):
  return _rows.split_rows(x, config.pieces)


def _capped(config, x, cap):
  return cap * jnp.tanh(x / cap) if config.softcap else x


def _fast_stats(config, x, targets, z, cap, lse=None):
  """``(lse, sum(q (lse - z)) + lambda lse^2)`` per row in guard-free row reductions, NaN
  for ``0 * -inf`` or a bad target; ``lse`` given (unsplit, uncapped rows) skips its own."""
  xp = _split(config, x)
  zp = _capped(config, xp, cap)
  parts = targets._replace(
    t=_split(config, targets.t), class_weights=_split(config, targets.class_weights)
  )
  rows = _rows.row_axes(config.pieces)
  # tanh is increasing: the capped max of the raw logits is the max of the capped ones.
  if lse is None:
    lse = _rows.fast_lse(zp, _capped(config, _rows.row_max(xp, config.pieces), cap), config.pieces)
  checked = lse + _dense.range_nan(config.pieces, targets.t)
  q = _dense.coefficients(parts, x.shape[-1], check_range=False)
  # Not `log E - (z - m)`: XLA writes a subexpression shared with the exp-sum to memory.
  terms = q * (checked[rows] - zp)
  if config.z_loss:
    terms = terms + _rows.first_term(zp, config.pieces) * (z * jnp.square(lse))[rows]
  return lse, _rows.row_reduce(terms, config.pieces)


def _guarded_stats(config, x, targets, valid, cap):
  """``(lse, ce)`` per row with every guard: ``0 log 0 = 0``, all ``-inf`` rows."""
  x = _capped(config, x, cap)
  if valid is not None:
    x = jnp.where(valid[..., None], x, jnp.zeros_like(x))
  lse = _rows.logsumexp(x)
  log_p = x - lse[..., None]
  return lse, -jnp.sum(_common.safe_mul(_dense.coefficients(targets), log_p), axis=-1)


def _stats(config, x, targets, valid, z, cap, lse=None):
  """``(lse, loss)`` per row, 0 for dropped rows: fast, or guarded if a kept row is not finite."""

  def guarded(x, t, valid):
    lse, ce = _guarded_stats(config, x, targets._replace(t=t), valid, cap)
    return lse, ce + z * jnp.square(lse) if config.z_loss else ce

  fast = _fast_stats(config, x, targets, z, cap, lse)
  ok = _engine.all_finite(fast[1], valid)
  lse, losses = _engine.fast_or_guarded(fast, guarded, ok, x, targets.t, valid)
  return lse, _rows.mask_rows(losses, valid)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _logits_losses(config, x, targets, valid, z, cap):
  """Per-example ``sum_c q_c (lse - z_c) + lambda lse^2`` (0 for dropped rows) of ``x [..., C]``
  before the softcap; tangents ``(p (sum(q) + 2 lambda lse) - q) dz/dx`` for ``x``, ``lse -
  z_c`` for ``q_c`` (0 where ``q_c = 0`` meets ``z_c = -inf``), ``lse^2`` for ``lambda``."""
  return _stats(config, x, targets, valid, z, cap)[1]


@functools.partial(_logits_losses.defjvp, symbolic_zeros=True)
def _logits_losses_jvp(config, primals, tangents):
  x, targets, valid, z, cap = primals
  t_x, t_targets, _, t_z, t_cap = tangents
  max_entries = _rows.DENSE_KEEP_EXP_MAX_ENTRIES
  keep_exp = not config.softcap and config.pieces == 1 and _rows.keeps_exp(x, t_x, max_entries)
  if keep_exp:
    lse, exp_shifted, exp_sum = _rows.lse_keeping_exp(x)
    lse, losses = _stats(config, x, targets, valid, z, cap, lse)
  else:
    lse, losses = _stats(config, x, targets, valid, z, cap)
  t_losses = jnp.zeros_like(losses)
  t_cap = None if not config.softcap or _common.is_symbolic_zero(t_cap) else t_cap
  if keep_exp:
    t_losses = t_losses + _logit_grad_dot_kept(
      config, exp_shifted, exp_sum, t_x, targets, lse, valid, z
    )
  elif not _common.is_symbolic_zero(t_x) or t_cap is not None:
    grad_dot = jax.checkpoint(functools.partial(_logit_grad_dot, config))
    t_x = jnp.zeros_like(x) if _common.is_symbolic_zero(t_x) else t_x
    t_losses = t_losses + grad_dot(x, t_x, targets, lse, valid, z, cap, t_cap)
  if not all(_common.is_symbolic_zero(t) for t in jax.tree.leaves(t_targets, is_leaf=_is_leaf)):
    t_targets = jax.tree.map(_common.instantiate_tangent, targets, t_targets, is_leaf=_is_leaf)
    # Dropped rows' targets may hold anything: zeroed, so 0 * NaN cannot reach an option.
    masked = targets._replace(t=_rows.mask_rows(targets.t, valid))
    q, t_q = jax.jvp(_dense.coefficients, (masked,), (t_targets,))
    zx = _capped(config, x, cap)
    minus_log_p = lse[..., None] - zx
    minus_log_p = jnp.where((q == 0) & jnp.isinf(zx), jnp.zeros_like(zx), minus_log_p)
    t_losses = t_losses + jnp.sum(_rows.mask_rows(minus_log_p, valid) * t_q, axis=-1)
  if config.z_loss and not _common.is_symbolic_zero(t_z):
    t_losses = t_losses + jnp.square(_rows.mask_rows(lse, valid)) * t_z
  return losses, t_losses


def _is_leaf(t) -> bool:
  return isinstance(t, jax.custom_derivatives.SymbolicZero)


def _logit_grad_dot(config, x, t_x, targets, lse, valid, z, cap, t_cap):
  """``sum_c (d loss / d z_c) (dz_c/dx_c t_c + dz_c/dc t_cap)`` per example (closed form)."""
  q = _dense.coefficients(targets)
  coef = jnp.sum(q, axis=-1)  # NaN for a row with a bad target: so is its gradient
  if config.z_loss:
    coef = coef + 2 * z * lse
  zx = _capped(config, x, cap)
  grad = coef[..., None] * jnp.exp(zx - lse[..., None]) - q  # d l / d z
  if not config.softcap:
    return jnp.sum(_rows.mask_rows(grad, valid) * t_x, axis=-1)
  out = jnp.sum(_rows.mask_rows(grad * _softcap.softcap_slope(x, cap), valid) * t_x, axis=-1)
  if t_cap is not None:
    d_cap = _softcap.softcap_derivatives(x, cap)[1]
    out = out + jnp.sum(_rows.mask_rows(grad * d_cap, valid), axis=-1) * t_cap
  return out


def _logit_grad_dot_kept(config, exp_shifted, exp_sum, t_x, targets, lse, valid, z):
  """:func:`_logit_grad_dot` (no softcap) from kept exponentials: ``G = a p - q``, ``p =
  exp_shifted / exp_sum``, ``a = sum(q) + 2 lambda lse``; one multiply pass in reverse mode."""
  q = _dense.coefficients(targets)
  coef = jnp.sum(q, axis=-1)  # NaN for a row with a bad target: so is its gradient
  if config.z_loss:
    coef = coef + 2 * z * lse
  # Selected, as a dropped row may hold NaN or inf (an all -inf one has exp_sum = 0).
  kept_exp, coef, q = (_rows.mask_rows(v, valid) for v in (exp_shifted, coef / exp_sum, q))
  return coef * jnp.sum(kept_exp * t_x, axis=-1) - jnp.sum(q * t_x, axis=-1)


@_frame.loss
def categorical_cross_entropy_with_logits(
  logits,
  targets,
  *,
  axis: int = -1,
  class_weights=None,
  label_smoothing=0.0,
  z_loss=0.0,
  softcap=None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Cross-entropy between target distributions and ``softmax(logits)``.

  .. math::
    \ell_n = -\sum_c w_c\, q_{n,c} \log \mathrm{softmax}(z_n)_c
      + \lambda_z \mathrm{lse}(z_n)^2,
    \quad q = (1 - \epsilon)\, y + \epsilon / C

  ``0 log 0 = 0``: a class with zero target mass contributes nothing, even at a ``-inf``
  logit. Class weights do not enter the ``"mean"`` denominator (torch's convention for
  probability targets).

  Gradient: ``d l_n / d z_n = softmax(z_n) (sum_c w_c q_c + 2 lambda_z lse(z_n)) - w q``;
  for one-hot targets and no options, the softmax-regression gradient ``y_pred - y``.

  Args:
    logits: ``[..., C, ...]`` unnormalised scores, class axis at ``axis``; the per-example
      shape is ``logits.shape`` without ``axis``.
    targets: one-hot or soft distributions, same shape as ``logits``, entries in [0, 1].
    $options

  $contract

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.categorical_cross_entropy_with_logits(
    ...     jnp.log(jnp.array([0.2, 0.8])), jnp.array([0.0, 1.0])))  # doctest: +ELLIPSIS
    0.2231...

  References:
    Chowdhery et al., "PaLM", 2022 (z-loss); Gemma Team, "Gemma 2", 2024 (softcap);
    ``torch.nn.functional.cross_entropy`` with probability targets.
  """
  inputs = _dense.prepare_logits(
    "categorical_cross_entropy_with_logits",
    logits,
    targets,
    axis=axis,
    class_weights=class_weights,
    label_smoothing=label_smoothing,
    where=where,
    sample_weight=sample_weight,
    reduction=reduction,
    softcap=softcap,
    z_loss=z_loss,
  )
  config = _Config(
    z_loss=not _common.is_static_zero(z_loss),
    softcap=softcap is not None,
    pieces=_rows.row_pieces(inputs.logits.shape[-1]),
  )
  z, cap = inputs.option(z_loss), inputs.option(softcap)
  losses = _logits_losses(config, inputs.logits, inputs.targets, inputs.valid, z, cap)
  return inputs.reduce(losses, reduction)


@_frame.loss
def categorical_cross_entropy(
  probs,
  targets,
  *,
  axis: int = -1,
  class_weights=None,
  label_smoothing=0.0,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Cross-entropy between target distributions and predicted probabilities.

  .. math::
    \ell_n = -\sum_c w_c\, q_{n,c} \max(\log p_{n,c}, -100),
    \quad q = (1 - \epsilon)\, y + \epsilon / C

  Each ``log`` is clamped at -100 as in torch's ``binary_cross_entropy`` (a zero
  probability gives a large finite loss), and ``0 log 0 = 0``. Probabilities are used as
  given, not renormalised. Class weights do not enter the ``"mean"`` denominator (torch's
  convention for probability targets).

  Gradient: ``d l_n / d p_{n,c} = -w_c q_{n,c} / p_{n,c}`` (0 where the clamp is active).

  Args:
    probs: ``[..., C, ...]`` probabilities in [0, 1], class axis at ``axis``; the
      per-example shape is ``probs.shape`` without ``axis``.
    targets: one-hot or soft distributions, same shape as ``probs``, entries in [0, 1].
    $options

  $contract

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.categorical_cross_entropy(
    ...     jnp.array([0.2, 0.8]), jnp.array([0.0, 1.0])))  # doctest: +ELLIPSIS
    0.2231...

  References:
    ``torch.nn.functional.binary_cross_entropy`` (the clamp) and
    ``torch.nn.functional.cross_entropy`` with probability targets.
  """
  fn_name = "categorical_cross_entropy"
  inputs = _dense.prepare_logits(
    fn_name,
    probs,
    targets,
    axis=axis,
    class_weights=class_weights,
    label_smoothing=label_smoothing,
    where=where,
    sample_weight=sample_weight,
    reduction=reduction,
    name="probs",
  )
  p, valid = inputs.logits, inputs.valid
  # Eager inputs: a ValueError naming the first bad probability (a checkify check if traced).
  kept = jnp.ones(p.shape[:-1], bool) if valid is None else valid
  _validate.check_probabilities(fn_name, p, kept, axis % p.ndim)
  return inputs.reduce(_probs_losses(p, inputs.targets, valid), reduction)


def _probs_rows_bad(p, t):
  """``[...]``: a row with a probability or a target outside [0, 1] or NaN (compares)."""
  outside = ~((p >= 0) & (p <= 1)) | ~((t >= 0) & (t <= 1))
  return jnp.any(outside, axis=-1)


def _probs_row_losses(p, targets):
  """``-sum_c q_c max(log p_c, -100)`` per row in one fused loop, NaN for a bad row."""
  num_classes = p.shape[-1]
  pieces = _rows.row_pieces(num_classes)
  parts = targets._replace(
    t=_rows.split_rows(targets.t, pieces),
    class_weights=_rows.split_rows(targets.class_weights, pieces),
  )
  pp = _rows.split_rows(p, pieces)
  # 0, or NaN for a row with a value outside [0, 1], added to every log (no select).
  low = _rows.row_reduce(pp, pieces, jnp.min)
  root = jnp.sqrt(jnp.minimum(low, 1 - _rows.row_reduce(pp, pieces, jnp.max)))
  nan = _dense.range_nan(pieces, targets.t) + (root - root)
  q = _dense.coefficients(parts, num_classes, check_range=False)
  log_p = jnp.maximum(jnp.log(pp), -100.0) + (pp - pp) + nan[_rows.row_axes(pieces)]
  return -_rows.row_reduce(q * log_p, pieces)


@jax.custom_jvp
def _probs_losses(p, targets, valid):
  """Per-example ``-sum_c q_c max(log p_c, -100)`` (0 for dropped rows), class axis last.
  Tangents: ``-q_c / p_c`` for ``p_c`` above the clamp (else 0), ``-max(log p_c, -100)`` for
  ``q_c``; NaN for a row with a bad input."""
  return _rows.mask_rows(_probs_row_losses(p, targets), valid)


@functools.partial(_probs_losses.defjvp, symbolic_zeros=True)
def _probs_losses_jvp(primals, tangents):
  p, targets, valid = primals
  t_p, t_targets, _ = tangents
  row_losses = _probs_row_losses(p, targets)
  losses = _rows.mask_rows(row_losses, valid)
  t_losses = jnp.zeros_like(losses)
  if not _common.is_symbolic_zero(t_p):
    # A row's loss is NaN exactly where an input is bad: so is its gradient.
    row_nan = _common.nan_where(jnp.isnan(row_losses), losses.dtype)
    t_losses = t_losses + jax.checkpoint(_probs_grad_dot)(p, t_p, targets, valid, row_nan)
  if not all(_common.is_symbolic_zero(t) for t in jax.tree.leaves(t_targets, is_leaf=_is_leaf)):
    t_targets = jax.tree.map(_common.instantiate_tangent, targets, t_targets, is_leaf=_is_leaf)
    # Dropped rows' targets may hold anything: zeroed, so 0 * NaN cannot reach an option.
    masked = targets._replace(t=_rows.mask_rows(targets.t, valid))
    t_q = jax.jvp(_dense.coefficients, (masked,), (t_targets,))[1]
    log_p = _common.clamped_log(p)
    bad = _probs_rows_bad(p, targets.t)[..., None]
    t_losses = t_losses + jnp.sum(_rows.mask_rows(jnp.where(bad, jnp.nan, -log_p), valid) * t_q, -1)
  return losses, t_losses


def _probs_grad_dot(p, t_p, targets, valid, row_nan):
  """``sum_c (d loss / d p_c + row_nan) t_c`` per example, ``-q_c / p_c`` above the clamp."""
  q = _dense.coefficients(targets, check_range=False)
  # log p >= -100 as a compare on p (no log); a subnormal p counts as clamped (flushed).
  above_clamp = ~(p < _clamp_threshold(p.dtype))  # True for NaN: its gradient stays NaN
  safe_p = jnp.where(above_clamp, p, jnp.ones_like(p))
  grad = jnp.where(above_clamp, -q / safe_p, jnp.zeros_like(p)) + row_nan[..., None]
  return jnp.sum(_rows.mask_rows(grad, valid) * t_p, axis=-1)


def _clamp_threshold(dtype) -> float:
  """The least ``p`` with ``max(log p, -100) = log p``: ``e^-100``, or the dtype's smallest
  normal number when that is larger (float32: 1.2e-38; subnormals are flushed to zero)."""
  return max(math.exp(-100.0), float(jnp.finfo(dtype).tiny))
