"""Sparse (integer-label) categorical cross-entropy, from probabilities and from logits.

Design rules:
  * The loss from logits is built from :class:`._sparse_terms.SparseTerms`, shared with the
    fused linear cross-entropy, so an option means the same thing in both.
  * Dropped rows are zeroed or selected away before any arithmetic; a kept row with a bad
    label gets a NaN added.
  * Logit derivatives are closed forms in ``custom_jvp`` rules under ``jax.checkpoint``;
    nothing differentiates through a ``lax.cond`` (it keeps both branches' residuals).
  * Fast paths are guard-free fused passes (a select inside a fused row reduction splits the
    loop on XLA:CPU); a batch whose fast value is not finite takes the guarded form.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import (
  _common,
  _engine,
  _frame,
  _pallas_sparse,
  _pallas_sparse_grad,
  _reduce,
  _rows,
  _softcap,
  _validate,
)
from xentax.losses._sparse_terms import SparseOptions, prepare_labels


class SparseInputs(NamedTuple):
  """A sparse loss's inputs after the entry frame (:func:`prepare_sparse`)."""

  scores: jax.Array  # [..., C], class axis last
  labels: jax.Array  # [...], in range (0 where invalid or bad)
  valid: jax.Array  # [...], bool: not masked by `where`, not ignore_index
  bad: jax.Array  # [...], bool: valid but label out of range, or a traced option out of domain
  class_weights: jax.Array | None  # [C]
  target_weight: jax.Array | None  # [...], w[y]
  sample_weight: jax.Array | None  # [...], checked

  @property
  def dtype(self):
    return _common.compute_dtype(self.scores)

  def option(self, value):
    """A float option as an array of the compute dtype; None stays None."""
    return None if value is None else jnp.asarray(value, self.dtype)

  def reduce(self, losses, reduction: str) -> jax.Array:
    """Close the entry frame: the per-example ``losses`` masked, weighted and reduced."""
    return _reduce.reduce_losses(
      losses,
      valid=self.valid,
      denominator=self.target_weight,
      sample_weight=self.sample_weight,
      reduction=reduction,
    )


def prepare_sparse(
  fn_name,
  scores,
  labels,
  *,
  axis,
  class_weights,
  ignore_index,
  where,
  sample_weight=None,
  reduction="mean",
  options=None,
  option_bad=None,
  upcast=True,
) -> SparseInputs:
  """The entry frame of every sparse loss: validate, move the class axis last.

  A traced option outside its domain (``options``: name to value), or ``option_bad``, makes
  every kept example bad. ``upcast=False`` keeps the scores' dtype (upcast per fused pass).
  """
  _reduce.check_reduction(fn_name, reduction)
  option_bad = _validate.any_bad(option_bad, _validate.options(fn_name, **(options or {})))
  scores = _validate.float_array(fn_name, "logits/probs", scores)
  labels, shown = _validate.integer_labels(fn_name, labels, ignore_index)
  axis = _validate.normalize_axis(fn_name, axis, scores.ndim)
  _validate.check_example_shape(fn_name, scores.shape, axis, labels)
  _validate.check_num_classes(fn_name, scores.shape[axis])
  dtype = _common.compute_dtype(scores)
  scores = jnp.moveaxis(scores, axis, -1)
  if upcast:
    scores = scores.astype(dtype)
  labels = prepare_labels(
    fn_name,
    labels,
    num_classes=scores.shape[-1],
    class_weights=class_weights,
    ignore_index=ignore_index,
    where=where,
    dtype=dtype,
    shown=shown,
    option_bad=option_bad,
  )
  sample_weight = _validate.sample_weights(fn_name, sample_weight, labels.valid.shape, dtype)
  return SparseInputs(scores, *labels, sample_weight)  # type: ignore[call-arg]  # *labels: 5 fields


@_frame.loss(reduction="reduction_weighted")
def sparse_categorical_cross_entropy_with_logits(
  logits,
  labels,
  *,
  axis: int = -1,
  class_weights=None,
  ignore_index: int | None = None,
  label_smoothing=0.0,
  z_loss=0.0,
  softcap=None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
  implementation: str = "auto",
) -> jax.Array:
  r"""Cross-entropy between integer labels and ``softmax(logits)``, computed from logits.

  .. math::
    \ell_n = (1 - \epsilon)\, w_{y_n} (\mathrm{lse}(z_n) - z_{n,y_n})
      + \frac{\epsilon}{C} \sum_c w_c (\mathrm{lse}(z_n) - z_{n,c})
      + \lambda_z \mathrm{lse}(z_n)^2

  Gradient: ``d l_n / d z_n = (1 - e) w_y (softmax(z_n) - onehot(y_n))
  + (e / C) (sum(w) softmax(z_n) - w) + 2 lambda_z lse(z_n) softmax(z_n)``. With
  ``softcap`` a ``-inf`` logit becomes ``-c``.

  Args:
    logits: ``[..., C, ...]`` unnormalised scores, class axis at ``axis``.
    labels: integer class indices, the per-example shape: ``logits.shape`` without
      ``axis``.
    $options

  $contract

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.sparse_categorical_cross_entropy_with_logits(
    ...     jnp.log(jnp.array([[0.2, 0.8]])), jnp.array([1])))  # doctest: +ELLIPSIS
    0.2231...

  References:
    Szegedy et al., "Rethinking the Inception Architecture", 2016 (label smoothing);
    Chowdhery et al., "PaLM", 2022 (z-loss); ``torch.nn.functional.cross_entropy``.
  """
  inputs = prepare_sparse(
    "sparse_categorical_cross_entropy_with_logits",
    logits,
    labels,
    axis=axis,
    class_weights=class_weights,
    ignore_index=ignore_index,
    where=where,
    sample_weight=sample_weight,
    reduction=reduction,
    options=dict(label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap),
    upcast=False,
  )
  config = SparseOptions.of(inputs.scores.shape[-1], label_smoothing=label_smoothing, z_loss=z_loss)
  plain = config == SparseOptions(config.num_classes) and softcap is None
  chosen = _engine.implementation(
    "sparse_categorical_cross_entropy_with_logits",
    implementation,
    inputs.scores,
    measured=plain and class_weights is None,
  )
  if chosen == "pallas":
    return _kernel_loss(config, inputs, label_smoothing, z_loss, softcap, reduction)
  losses = _logits_losses(
    config,
    inputs.scores,
    inputs.labels,
    inputs.valid,
    inputs.bad,
    inputs.class_weights,
    inputs.option(label_smoothing),
    inputs.option(z_loss),
    inputs.option(softcap),
  )
  return inputs.reduce(losses, reduction)


def _kernel_loss(config, inputs, label_smoothing, z_loss, softcap, reduction):
  """The loss by the Pallas kernels (:mod:`._pallas_sparse_grad`), rows flattened to ``[N, C]``."""
  example_shape, num_classes = inputs.labels.shape, inputs.scores.shape[-1]
  x = inputs.scores.reshape(-1, num_classes)
  flat = lambda v: None if v is None else v.reshape(-1)  # noqa: E731
  aux = (flat(inputs.labels), flat(inputs.valid), flat(inputs.bad))
  rest = (inputs.option(label_smoothing), inputs.option(z_loss), flat(inputs.sample_weight))
  weights, cap = inputs.class_weights, inputs.option(softcap)
  options = _pallas_sparse.Options(config.smoothing, weights is not None, cap is not None)
  spec = _pallas_sparse_grad.Spec(options, tuple(sorted(_pallas_sparse.DEFAULT_CONFIG.items())))
  nan_rows = _common.nan_where(aux[2], jnp.float32)
  kernel_weights = weights if options.smoothing else None
  if reduction != "none":
    total = functools.partial(kernel_total, config, reduction)
    value = _pallas_sparse_grad.reduced(
      spec, total, x, aux[0], kernel_weights, cap, nan_rows, aux, (weights, *rest)
    )
    return value.astype(inputs.dtype)
  stats = _pallas_sparse_grad.row_stats(spec, x, aux[0], kernel_weights, cap, nan_rows)
  losses = kernel_total(config, "none", *stats, kernel_weights, aux, (weights, *rest))
  return losses.reshape(example_shape).astype(inputs.dtype)


def kernel_total(config, reduction, lse, target, ws, kernel_weights, aux, rest):
  """The reduced loss (or per-example losses for ``"none"``) from the kernels' statistics."""
  del kernel_weights  # the same array as rest[0]: its W gradient is the kernel rule's
  labels, valid, bad = aux
  class_weights, eps, z, sample_weight = rest
  # Dropped rows' statistics zeroed: a zero cotangent times their NaN would reach an option.
  lse, target, ws = (_rows.mask_rows(v, valid) for v in (lse, target, ws))
  terms = config.terms(labels, class_weights, eps, z)
  losses = terms.loss(lse, target, ws if config.smoothing else None)
  losses = jnp.where(valid, losses, jnp.zeros_like(losses)) + _common.nan_where(bad, lse.dtype)
  return _reduce.reduce_losses(
    losses,
    valid=valid,
    denominator=terms.target_weight,
    sample_weight=sample_weight,
    reduction=reduction,
  )


def _weighted_logit_sum(class_weights, x):
  """``sum_c w_c x_c`` per example, with ``0 * -inf = 0``."""
  if class_weights is None:
    return jnp.sum(_common.upcast(x), axis=-1)
  x = _common.upcast(x)
  # NaN only where a zero weight meets an infinite logit; the fallback maps rows in batches.
  fast = jnp.dot(x, class_weights, precision=lax.Precision.HIGHEST)

  def elementwise():
    rows = x.reshape(-1, x.shape[-1])
    sums = lax.map(lambda row: jnp.sum(_common.safe_mul(class_weights, row)), rows, batch_size=64)
    return sums.reshape(x.shape[:-1])

  return lax.cond(jnp.any(jnp.isnan(fast)), elementwise, lambda: fast)


def _losses_from_stats(config, x, lse, target, labels, valid, bad, class_weights, eps, z, cap):
  weighted_sum = None
  if config.smoothing:
    weighted_sum = _weighted_logit_sum(
      class_weights, x if cap is None else _softcap.softcap(x, cap)
    )
  losses = config.terms(labels, class_weights, eps, z).loss(lse, target, weighted_sum)
  losses = jnp.where(valid, losses, jnp.zeros_like(losses))
  return losses + _common.nan_where(bad, losses.dtype)


def _capped(x, cap):
  """``x`` upcast (inside the fusion), soft-capped when ``cap`` is not None."""
  return _common.upcast(x) if cap is None else _softcap.softcap(x, cap)


def _sum_exp_shifted(x, shift, cap=None):
  """``sum_c exp(z_c - shift)`` per row, upcasting ``x`` inside the fused reduction."""
  pieces = _rows.row_pieces(x.shape[-1])
  shift = shift[..., None] if pieces == 1 else shift[..., None, None]
  return _rows.row_reduce(jnp.exp(_capped(_rows.split_rows(x, pieces), cap) - shift), pieces)


def _stats(x, labels, cap=None):
  """``(logsumexp(z), z[label])`` per example, ``z`` the soft-capped ``x``, in one read.

  Shifted by the target logit (its term is 1: no max pass, no underflow); an overflowed sum
  sends the batch to the two-pass form.
  """
  target = _capped(jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0], cap)
  shifted_sum = _sum_exp_shifted(x, target, cap)
  guarded = lambda x: _rows.logsumexp(_capped(x, cap))  # noqa: E731
  ok = _engine.all_finite(shifted_sum)
  lse = _engine.fast_or_guarded(target + jnp.log(shifted_sum), guarded, ok, x)
  return lse, target


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _logits_losses(config, x, labels, valid, bad, class_weights, eps, z, cap):
  """Per-example sparse cross-entropy from logits ``x [..., C]`` in their own dtype.

  Tangent ``sum_c G_c t_c``, ``G = a p - b onehot(y) - c w``
  (:meth:`SparseTerms.grad_coefficients`), under ``jax.checkpoint``: reverse mode saves only
  ``lse``; small logits keep their exponentials (:func:`._rows.keeps_exp`).
  """
  stats = (labels, valid, bad, class_weights, eps, z)
  if not config.smoothing or cap is None or _rows.row_pieces(x.shape[-1]) > 1:
    # Without a softcap a separate matvec for the smoothing sum beats one fused loop.
    lse, target = _stats(x, labels, cap)
    return _losses_from_stats(config, x, lse, target, *stats, cap)
  fast = _smoothed_losses(config, x, *stats, cap)

  def guarded(x, labels, valid, bad):
    lse, target = _stats(x, labels, cap)
    return _losses_from_stats(config, x, lse, target, labels, valid, bad, *stats[3:], cap)

  # Dropped rows may hold anything; bad rows are NaN by design.
  ok = _engine.all_finite(fast, valid & ~bad)
  losses = _engine.fast_or_guarded(fast, guarded, ok, x, labels, valid, bad)
  losses = jnp.where(valid, losses, jnp.zeros_like(losses))
  return losses + _common.nan_where(bad, losses.dtype)


def _smoothed_losses(config, x, labels, valid, bad, class_weights, eps, z, cap):
  """Unmasked losses with smoothing and a softcap in one guard-free fused loop.

  ``sum_c (f_c h - e/C w_c z_c)``, ``h`` the other terms, ``f`` one-hot at class 0: one
  output, as two sharing the capped logits make XLA:CPU write those logits out.
  """
  num_classes = x.shape[-1]
  pieces = _rows.row_pieces(num_classes)
  rows = _rows.row_axes(pieces)
  target = _capped(jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0], cap)
  zp = _capped(_rows.split_rows(x, pieces), cap)
  lse = target + jnp.log(_rows.row_reduce(jnp.exp(zp - target[rows]), pieces))
  terms = config.terms(labels, class_weights, eps, z)
  head = terms.loss(lse, target, jnp.zeros_like(lse))
  smooth = (eps / num_classes) * zp
  if class_weights is not None:
    smooth = smooth * _rows.split_rows(class_weights, pieces)
  return _rows.row_reduce(_rows.first_term(zp, pieces) * head[rows] - smooth, pieces)


@functools.partial(_logits_losses.defjvp, symbolic_zeros=True)
def _logits_losses_jvp(config, primals, tangents):
  x, labels, valid, bad, class_weights, eps, z, cap = primals
  t_x, _, _, _, t_class_weights, t_eps, t_z, t_cap = tangents
  stats = (labels, valid, bad, class_weights, eps, z)
  keep_exp = cap is None and _rows.keeps_exp(x, t_x, _rows.SPARSE_KEEP_EXP_MAX_ENTRIES)
  if keep_exp:
    lse, target, exp_shifted, exp_sum = _stats_keeping_exp(x, labels)
  else:
    lse, target = _stats(x, labels, cap)
  losses = _losses_from_stats(config, x, lse, target, *stats, cap)
  t_losses = jnp.zeros_like(losses)
  if keep_exp:
    t_losses = t_losses + _logit_grad_dot_kept(config, exp_shifted, exp_sum, t_x, lse, *stats)
  elif not _common.is_symbolic_zero(t_x):
    grad_dot = jax.checkpoint(functools.partial(_logit_grad_dot, config))
    t_losses = t_losses + grad_dot(x, t_x, lse, *stats, cap)
  if cap is not None and not _common.is_symbolic_zero(t_cap):
    cap_grad = jax.checkpoint(functools.partial(_softcap_grad, config))
    t_losses = t_losses + cap_grad(x, lse, *stats, cap) * t_cap
  options = (class_weights, eps, z)
  t_options = (t_class_weights, t_eps, t_z)
  if _engine.any_moves(options, t_options):
    # Dropped rows zeroed: their zero cotangent times a NaN or inf statistic would be NaN.
    kept_x, kept_lse, kept_target = (_rows.mask_rows(v, valid) for v in (x, lse, target))
    if config.smoothing and cap is None:
      # At eps = 0 an infinite logit's term (0 * inf = 0) leaves the options' derivatives;
      # a cond, as a bare select would copy the logits on every call.
      # Both branches in the compute dtype: bf16 logits with a float32 lse.
      kept_x = lax.cond(
        (jnp.asarray(eps) == 0) & jnp.any(jnp.isinf(kept_x)),
        lambda x: jnp.where(jnp.isinf(x), kept_lse[..., None], _common.upcast(x)),
        _common.upcast,
        kept_x,
      )

    def from_options(class_weights, eps, z):
      return _losses_from_stats(
        config, kept_x, kept_lse, kept_target, labels, valid, bad, class_weights, eps, z, cap
      )

    t_losses = _engine.plus(t_losses, _engine.held_jvp(from_options, options, t_options))
  return losses, t_losses


def _stats_keeping_exp(x, labels):
  """``(lse, z[label], exp(x - m), sum exp(x - m))`` per row (:func:`._rows.lse_keeping_exp`)."""
  x = _common.upcast(x)
  lse, exp_shifted, exp_sum = _rows.lse_keeping_exp(x)
  target = jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0]
  return lse, target, exp_shifted, exp_sum


def _logit_grad_dot_kept(
  config, exp_shifted, exp_sum, t_x, lse, labels, valid, bad, class_weights, eps, z
):
  """:func:`_logit_grad_dot` from kept exponentials: per-row coefficients around linear maps
  of ``t_x``, so reverse mode writes ``d logits`` in one pass with no per-entry compare."""
  terms = config.terms(labels, class_weights, eps, z)
  coef_p, coef_target, coef_weight = terms.grad_coefficients(jnp.ones_like(lse), lse)
  coef_p = coef_p + _common.nan_where(bad, lse.dtype)  # bad labels: NaN gradient for the row
  # Dropped rows may hold NaN or inf (exp_sum = 0 for all -inf): zero rows and coefficients.
  kept_exp, coef_p, coef_target, coef_weight = (
    _rows.mask_rows(v, valid) for v in (exp_shifted, coef_p / exp_sum, coef_target, coef_weight)
  )
  t_x = _common.upcast(t_x)
  t_target = jnp.take_along_axis(t_x, labels[..., None], axis=-1)[..., 0]
  t_losses = coef_p * jnp.sum(kept_exp * t_x, axis=-1) - coef_target * t_target
  if config.smoothing:
    if class_weights is None:
      t_weighted = jnp.sum(t_x, axis=-1)
    else:
      t_weighted = jnp.dot(t_x, class_weights, precision=lax.Precision.HIGHEST)
    t_losses = t_losses - coef_weight * t_weighted
  return t_losses


def _logit_grad(config, x, lse, labels, valid, bad, class_weights, eps, z, cap):
  """``d loss / d z`` (``[..., C]``, z the soft-capped logits) from the closed form."""
  num_classes = x.shape[-1]
  dtype = lse.dtype
  terms = config.terms(labels, class_weights, eps, z)
  coef_p, coef_target, coef_weight = terms.grad_coefficients(jnp.ones_like(lse), lse)
  coef_p = coef_p + _common.nan_where(bad, dtype)  # bad labels: NaN gradient for the row
  probs = jnp.exp(_capped(x, cap) - lse[..., None])
  is_target = jnp.arange(num_classes, dtype=labels.dtype) == labels[..., None]
  grad = coef_p[..., None] * probs - jnp.where(is_target, coef_target[..., None], 0.0)
  if config.smoothing:
    weights = jnp.ones((num_classes,), dtype) if class_weights is None else class_weights
    grad = grad - coef_weight[..., None] * weights
  return jnp.where(valid[..., None], grad, 0.0)


def _logit_grad_dot(config, x, t_x, lse, labels, valid, bad, class_weights, eps, z, cap):
  """``sum_c (d loss / d x_c) t_c`` per example, from the closed-form gradient."""
  grad = _logit_grad(config, x, lse, labels, valid, bad, class_weights, eps, z, cap)
  if cap is not None:
    # Select after the product: a dropped row may hold NaN, whose softcap slope is NaN.
    grad = jnp.where(valid[..., None], grad * _softcap.softcap_slope(x, cap), 0.0)
  # Linear in t_x, upcast inside the product: the transpose writes d logits in x's dtype.
  return jnp.sum(grad * _common.upcast(t_x), axis=-1)


def _softcap_grad(config, x, lse, labels, valid, bad, class_weights, eps, z, cap):
  """``d loss / d c`` per example: ``sum_c (d loss / d z_c) (d z_c / d c)``."""
  grad = _logit_grad(config, x, lse, labels, valid, bad, class_weights, eps, z, cap)
  grad = jnp.where(valid[..., None], grad * _softcap.softcap_derivatives(x, cap)[1], 0.0)
  return jnp.sum(grad, axis=-1)


@_frame.loss(reduction="reduction_weighted")
def sparse_categorical_cross_entropy(
  probs,
  labels,
  *,
  axis: int = -1,
  class_weights=None,
  ignore_index: int | None = None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Cross-entropy between integer labels and predicted probabilities.

  .. math::
    \ell_n = -w_{y_n} \max(\log p_{n, y_n}, -100)

  The log is clamped at -100 (torch's ``binary_cross_entropy``). Probabilities are used as
  given (Keras renormalises them). A NaN anywhere in a kept row makes its loss NaN.

  Gradient: ``d l_n / d p_{n,y} = -w_y / p_{n,y}`` (0 where the clamp is active), 0 for
  every other class.

  Args:
    probs: ``[..., C, ...]`` probabilities in ``[0, 1]``, class axis at ``axis``.
    labels: integer class indices, the per-example shape: ``probs.shape`` without
      ``axis``.
    $options

  $contract

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.sparse_categorical_cross_entropy(
    ...     jnp.array([[0.2, 0.8]]), jnp.array([1])))  # doctest: +ELLIPSIS
    0.2231...

  References:
    Keras's ``SparseCategoricalCrossentropy`` (``from_logits=False``); the clamp is
    ``torch.nn.functional.binary_cross_entropy``'s.
  """
  fn_name = "sparse_categorical_cross_entropy"
  inputs = prepare_sparse(
    fn_name,
    probs,
    labels,
    axis=axis,
    class_weights=class_weights,
    ignore_index=ignore_index,
    where=where,
    sample_weight=sample_weight,
    reduction=reduction,
  )
  p = inputs.scores
  _validate.check_probabilities(fn_name, p, inputs.valid, axis)  # raises when concrete
  p_y = _common.take_target(p, inputs.labels)
  p_y = jnp.where(inputs.valid, p_y, jnp.ones_like(p_y))
  # Dropped rows stay out: a NaN there would reach the class weights' gradient (0 * NaN).
  row_bad = jnp.isnan(_out_of_range(p)) & inputs.valid
  p_y = p_y + _common.nan_where(inputs.bad | row_bad, p_y.dtype)
  losses = -_common.clamped_log(p_y)
  if inputs.target_weight is not None:
    losses = inputs.target_weight * losses
  return inputs.reduce(losses, reduction)


@jax.custom_jvp
def _out_of_range(p) -> jax.Array:
  """``[...]``: 0, or NaN for a row with a probability outside [0, 1] (or NaN).

  ``sum_c sqrt(p_c - p_c^2) * 0`` (``p - fl(p^2) < 0`` exactly outside [0, 1]); the jvp
  rule masks per entry instead, which XLA fuses into the gradient's loop.
  """
  return jnp.sum(jnp.sqrt(p - p * p), axis=-1) * 0


@_out_of_range.defjvp
def _out_of_range_jvp(primals, tangents):
  (p,) = primals
  bad = jnp.any((p < 0) | (p > 1) | jnp.isnan(p), axis=-1)
  flag = _common.nan_where(bad, p.dtype)
  return flag, jnp.zeros_like(flag)
