r"""Dense (one-hot or soft target) categorical cross-entropy, from probabilities and logits.

Design notes:
  * The loss is ``H(y, p) = -sum_c y_c log p_c``, summed over the class axis: one value
    per example.
  * ``0 log 0 = 0``: classes with zero target mass contribute nothing, even where their
    logit is ``-inf`` or their probability is 0.
  * ``"mean"`` divides by the number of kept examples, as torch does for probability
    targets (class weights do not enter the denominator there); with ``sample_weight`` it
    is the weighted mean ``sum(s l) / sum(s)``.
  * From logits, the common case is one fused loop. XLA:CPU runs a chain of row
    reductions over the same rows as one loop when each reduction's body is plain
    arithmetic and each row statistic reaches the next reduction through arithmetic only:
    a select or compare anywhere splits the loop into passes over memory. So every guard
    (dropped rows, bad targets, ``0 * -inf``) is kept off the ``[N, C]`` arrays, and the
    loop computes the row max ``m``, ``E = sum(exp(z - m))``, the targets' row ``min`` and
    ``max`` and ``sum(q (lse + r - z))``, where ``r`` (:func:`_dense.range_nan`) is 0, or NaN for
    a row with a target outside [0, 1]. Only when a kept row's result is not finite (a
    ``-inf`` logit, a NaN, a bad target) does a ``lax.cond`` run the fully guarded formula
    for the batch, so logits of ``-inf`` (a masked vocabulary) take that path on every
    call. A softcap adds one elementwise ``tanh`` pass.
  * The targets' range is checked by those two plain row reductions: a per-entry check
    folded into ``q``, a variadic ``(min, max)`` reduce or a ``uint32`` bitcast max each
    cost an extra pass or fall out of the fused loop (see experiments/benchmarks/).
  * The z-loss term ``lambda lse^2`` enters the row's sum as its first term, so ``lse``
    need not leave the loop: an output of its own splits the loop in two and, with a
    softcap, writes the capped logits to memory.
  * The gradient is a ``custom_jvp`` whose tangent is ``sum_c (p_c sum(q) - q_c) t_c``:
    reverse mode writes ``d logits`` in one elementwise pass. On CPU, rows longer than
    ``_rows.CPU_ROW_PIECE`` are reduced in pieces. Under differentiation, small logits
    (``_rows.keeps_exp``) keep their exponentials for the backward pass: while the
    working set stays in cache, ``exp`` is the cost, not the memory traffic.
  * The loss from probabilities is one such loop too: the row ``min`` and ``max`` of ``p``
    and ``t``, then ``-sum(q (max(log p, -100) + (p - p) + r))`` with ``r`` NaN for a row
    outside [0, 1]. XLA:CPU's fused ``max`` and ``min`` can drop a NaN on long rows, so a
    NaN or infinite ``p`` is caught by ``p - p`` in the sum, and the tangents flag bad
    rows with compares.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from xentax.losses import _common, _dense, _doc, _engine, _rows, _softcap, _validate


class _Config(NamedTuple):
  z_loss: bool  # the z-loss term is on
  softcap: bool  # logits are soft-capped (the cap itself is an array argument)
  pieces: int  # a row is summed in this many pieces (see _rows.row_reduce)


def _split(config, x):
  return _rows.split_rows(x, config.pieces)


def _capped(config, x, cap):
  return cap * jnp.tanh(x / cap) if config.softcap else x


def _fast_stats(config, x, targets, z, cap, lse=None):
  """``(lse, loss)`` per row in guard-free row reductions (module notes); ``lse`` given
  (unsplit, uncapped rows) skips its own reductions.

  ``loss = sum(q (lse - z)) + lambda lse^2`` is NaN for ``0 * -inf`` and, through
  :func:`_dense.range_nan`, in a row with a target outside [0, 1] (or NaN). The caller falls back
  to the guarded formula for any non-finite kept row.
  """
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
  # `checked - z`, not `log E - (z - m)`: no subexpression shared with the exp-sum, which
  # XLA would otherwise write to memory as a [..., C] array.
  terms = q * (checked[rows] - zp)
  if config.z_loss:
    # lambda lse^2 enters the row's sum as its first term (the others get + 0), so `lse`
    # is not needed outside the fused loop: an output of its own would split the loop in
    # two and, with a softcap, write the capped logits to memory.
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
  """``(lse, loss)`` per row (0 for dropped rows): the fast form (from ``lse`` when given),
  or the guarded one if a kept row is not finite."""

  def guarded(x, t, valid):
    lse, ce = _guarded_stats(config, x, targets._replace(t=t), valid, cap)
    return lse, ce + z * jnp.square(lse) if config.z_loss else ce

  fast = _fast_stats(config, x, targets, z, cap, lse)
  ok = _engine.all_finite(fast[1], valid)
  lse, losses = _engine.fast_or_guarded(fast, guarded, ok, x, targets.t, valid)
  return lse, _rows.mask_rows(losses, valid)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _logits_losses(config, x, targets, valid, z, cap):
  """Per-example ``sum_c q_c (lse - z_c) + lambda lse^2`` (0 for dropped rows).

  ``x [..., C]`` (class axis last) are the logits before the softcap ``z = c tanh(x / c)``.
  A ``custom_jvp`` whose logit tangent is ``sum_c G_c t_c`` with the closed form
  ``G = (p (sum(q) + 2 lambda lse) - q) dz/dx`` inside ``jax.checkpoint``: reverse mode
  saves only ``lse`` ([...]) besides the inputs and forms ``d logits`` in one elementwise
  pass; small logits without a softcap (:func:`._rows.keeps_exp`) keep their
  exponentials instead, so ``exp`` runs once per entry (:func:`_logit_grad_dot_kept`).
  Tangents of the targets and options (``d l / d q_c = lse - z_c``, 0 where ``q_c = 0``
  meets ``z_c = -inf``), of ``lambda`` (``lse^2``) and of the cap (``sum_c G_c dz_c/dc``)
  have their own closed forms; dropped rows get zero tangents whatever they hold.
  """
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
    # d l / d q_c = lse - z_c, and 0 where q_c = 0 meets z_c = -inf (0 log 0 = 0).
    minus_log_p = lse[..., None] - zx
    minus_log_p = jnp.where((q == 0) & jnp.isinf(zx), jnp.zeros_like(zx), minus_log_p)
    # Masked before the product: a dropped row's NaN must not meet a zero cotangent.
    t_losses = t_losses + jnp.sum(_rows.mask_rows(minus_log_p, valid) * t_q, axis=-1)
  if config.z_loss and not _common.is_symbolic_zero(t_z):
    # lse masked before the product: a dropped NaN row must not meet a zero cotangent.
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
  # Masked after every product, so a NaN in a dropped row cannot meet a zero cotangent.
  out = jnp.sum(_rows.mask_rows(grad * _softcap.softcap_slope(x, cap), valid) * t_x, axis=-1)
  if t_cap is not None:
    # Clipped: finite at an infinite logit (no inf * 0 in dz/dc).
    d_cap = _softcap.softcap_derivatives(x, cap)[1]
    out = out + jnp.sum(_rows.mask_rows(grad * d_cap, valid), axis=-1) * t_cap
  return out


def _logit_grad_dot_kept(config, exp_shifted, exp_sum, t_x, targets, lse, valid, z):
  """:func:`_logit_grad_dot` (no softcap) from kept exponentials: ``G = a p - q`` with
  ``p = exp_shifted / exp_sum`` and ``a = sum(q) + 2 lambda lse`` per row, so that reverse
  mode forms ``d logits`` from the kept exponentials and ``q`` in one multiply pass."""
  q = _dense.coefficients(targets)
  coef = jnp.sum(q, axis=-1)  # NaN for a row with a bad target: so is its gradient
  if config.z_loss:
    coef = coef + 2 * z * lse
  # Dropped rows may hold NaN or +inf (exponentials NaN or inf): zeroed by selecting, in
  # the rows and the _dense.coefficients (an all -inf dropped row has exp_sum = 0).
  kept_exp, coef, q = (_rows.mask_rows(v, valid) for v in (exp_shifted, coef / exp_sum, q))
  return coef * jnp.sum(kept_exp * t_x, axis=-1) - jnp.sum(q * t_x, axis=-1)


@_doc.shared
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

  with ``z = softcap * tanh(logits / softcap)`` when ``softcap`` is set (else the logits).
  ``0 log 0 = 0``: a class with zero target mass contributes nothing, even at a ``-inf``
  logit. Class weights do not enter the ``"mean"`` denominator (torch's convention for
  probability targets).

  Gradient: ``d l_n / d z_n = softmax(z_n) (sum_c w_c q_c + 2 lambda_z lse(z_n)) - w q``;
  for one-hot targets and no options, the softmax-regression gradient ``y_pred - y``.

  Args:
    logits: ``[..., C, ...]`` unnormalised scores, class axis at ``axis``; the per-example
      shape is ``logits.shape`` without ``axis``.
    targets: one-hot or soft distributions, same shape as ``logits``, entries in [0, 1].
    axis: the class axis.
    $class_weights
    $label_smoothing
    $z_loss
    $softcap
    $where
    $sample_weight
    $reduction

  Returns:
    The loss, float32 (float64 for float64 logits): a scalar, or the per-example shape
    for ``"none"``.

  Raises:
    TypeError: ``logits`` not floating-point, ``targets`` neither integer nor float, or
      ``where`` not boolean.
    ValueError: shapes differ (or ``where``, ``sample_weight`` or ``class_weights`` does
      not fit them), a scalar input, ``axis`` out of range or of size 0, unknown
      reduction, a concrete option outside its domain, or a concrete target outside
      [0, 1]. Under ``jit`` the last two give NaN instead: a bad target its example's
      loss, a bad option every example's.

  Example:
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


@_doc.shared
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

  ``H(y, p) = -sum_c y_c log p_c`` with each ``log`` clamped at -100 as torch's
  ``binary_cross_entropy`` does, so a zero probability gives a large finite loss, and
  ``0 log 0 = 0``. Probabilities are used as given, not renormalised. Class weights do not
  enter the ``"mean"`` denominator (torch's convention for probability targets).

  Gradient: ``d l_n / d p_{n,c} = -w_c q_{n,c} / p_{n,c}`` (0 where the clamp is active).

  Args:
    probs: ``[..., C, ...]`` probabilities in [0, 1], class axis at ``axis``; the
      per-example shape is ``probs.shape`` without ``axis``.
    targets: one-hot or soft distributions, same shape as ``probs``, entries in [0, 1].
    axis: the class axis.
    $class_weights
    $label_smoothing
    $where
    $sample_weight
    $reduction

  Returns:
    The loss, float32 (float64 for float64 probs): a scalar, or the per-example shape
    for ``"none"``.

  Raises:
    TypeError: ``probs`` not floating-point, ``targets`` neither integer nor float, or
      ``where`` not boolean.
    ValueError: shapes differ (or ``where``, ``sample_weight`` or ``class_weights`` does
      not fit them), a scalar input, ``axis`` out of range or of size 0, unknown
      reduction, a concrete option outside its domain, or a concrete probability or
      target outside [0, 1]. Under ``jit`` the last two give NaN instead: a bad
      probability or target its example's loss, a bad option every example's.

  Example:
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
  """``[...]``: a row with a probability or a target outside [0, 1] (or NaN), for the
  tangents: compares, as XLA:CPU's fused max and min can drop a NaN."""
  outside = ~((p >= 0) & (p <= 1)) | ~((t >= 0) & (t <= 1))
  return jnp.any(outside, axis=-1)


def _probs_row_losses(p, targets):
  """``-sum_c q_c max(log p_c, -100)`` per row in one fused loop of plain row reductions,
  NaN for a row with a probability or target outside [0, 1] (module notes)."""
  num_classes = p.shape[-1]
  pieces = _rows.row_pieces(num_classes)
  parts = targets._replace(
    t=_rows.split_rows(targets.t, pieces),
    class_weights=_rows.split_rows(targets.class_weights, pieces),
  )
  pp = _rows.split_rows(p, pieces)
  # 0, or NaN for a row with a probability or target outside [0, 1], added to every log
  # (no select). XLA:CPU's fused max and min drop a NaN on long rows, so a NaN or infinite
  # probability is caught by `p - p` in the sum instead, and a negative one by the row min.
  low = _rows.row_reduce(pp, pieces, jnp.min)
  root = jnp.sqrt(jnp.minimum(low, 1 - _rows.row_reduce(pp, pieces, jnp.max)))
  nan = _dense.range_nan(pieces, targets.t) + (root - root)
  q = _dense.coefficients(parts, num_classes, check_range=False)
  # max(log 0, -100) = -100, torch's clamp.
  log_p = jnp.maximum(jnp.log(pp), -100.0) + (pp - pp) + nan[_rows.row_axes(pieces)]
  return -_rows.row_reduce(q * log_p, pieces)


@jax.custom_jvp
def _probs_losses(p, targets, valid):
  """Per-example ``-sum_c q_c max(log p_c, -100)`` (0 for dropped rows), class axis last.

  No guard is needed in the forward pass: every input in range gives a finite row (a zero
  probability is clamped), and a dropped row is selected out per example. A
  ``custom_jvp`` with the closed form ``d l / d p_c = -q_c / p_c`` where ``log p_c >= -100``
  (else 0, the clamp) and ``d l / d q_c = -max(log p_c, -100)``; a dropped row gets zero
  tangents whatever it holds, a row with a bad input NaN ones.
  """
  return _rows.mask_rows(_probs_row_losses(p, targets), valid)


@functools.partial(_probs_losses.defjvp, symbolic_zeros=True)
def _probs_losses_jvp(primals, tangents):
  p, targets, valid = primals
  t_p, t_targets, _ = tangents
  row_losses = _probs_row_losses(p, targets)
  losses = _rows.mask_rows(row_losses, valid)
  t_losses = jnp.zeros_like(losses)
  if not _common.is_symbolic_zero(t_p):
    # A row's loss is NaN exactly where it holds a probability or target outside [0, 1]
    # (or NaN): that flag, from the forward pass, makes its gradient NaN.
    row_nan = _common.nan_where(jnp.isnan(row_losses), losses.dtype)
    t_losses = t_losses + jax.checkpoint(_probs_grad_dot)(p, t_p, targets, valid, row_nan)
  if not all(_common.is_symbolic_zero(t) for t in jax.tree.leaves(t_targets, is_leaf=_is_leaf)):
    t_targets = jax.tree.map(_common.instantiate_tangent, targets, t_targets, is_leaf=_is_leaf)
    # Dropped rows' targets may hold anything: zeroed, so 0 * NaN cannot reach an option.
    masked = targets._replace(t=_rows.mask_rows(targets.t, valid))
    t_q = jax.jvp(_dense.coefficients, (masked,), (t_targets,))[1]
    log_p = _common.clamped_log(p)
    bad = _probs_rows_bad(p, targets.t)[..., None]
    # Dropped rows may hold anything: select before the product with t_q.
    t_losses = t_losses + jnp.sum(_rows.mask_rows(jnp.where(bad, jnp.nan, -log_p), valid) * t_q, -1)
  return losses, t_losses


def _probs_grad_dot(p, t_p, targets, valid, row_nan):
  """``sum_c (d loss / d p_c) t_c`` per example: ``-q_c / p_c`` above the clamp, else 0;
  ``row_nan`` (0 or NaN per row) is added to every entry."""
  q = _dense.coefficients(targets, check_range=False)
  # log p >= -100 as a compare on p: no log per entry in the backward pass. A subnormal p
  # counts as clamped: XLA:CPU flushes subnormals, and its log of one is below -100
  # (float32; a backend that does not would clamp the value of p in [e^-100, 1.2e-38) but
  # not its gradient).
  above_clamp = ~(p < _clamp_threshold(p.dtype))  # True for NaN: its gradient stays NaN
  safe_p = jnp.where(above_clamp, p, jnp.ones_like(p))
  grad = jnp.where(above_clamp, -q / safe_p, jnp.zeros_like(p)) + row_nan[..., None]
  return jnp.sum(_rows.mask_rows(grad, valid) * t_p, axis=-1)


def _clamp_threshold(dtype) -> float:
  """The least ``p`` with ``max(log p, -100) = log p``: ``e^-100``, or the dtype's smallest
  normal number when that is larger (float32: 1.2e-38; subnormals are flushed to zero)."""
  return max(math.exp(-100.0), float(jnp.finfo(dtype).tiny))
