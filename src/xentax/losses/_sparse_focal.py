r"""Sparse categorical focal loss from logits: cross-entropy scaled by ``(1 - p_y)^gamma``.

Design rules:
  * ``log(1 - p_y)`` comes from the other classes' mass, never from ``1 - softmax``: exact
    where ``p_y`` rounds to 1.
  * Logit derivatives are closed forms in ``custom_jvp`` rules: autodiff through the fast
    paths' ``lax.cond`` would keep both branches' ``[..., C]`` residuals.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import _common, _engine, _focal, _frame, _rows, _softcap
from xentax.losses._sparse import SparseInputs, prepare_sparse


def _sanitize_logits(inputs: SparseInputs) -> jax.Array:
  """Zero the dropped rows (so -inf there is harmless) and NaN the rows with bad labels."""
  x = inputs.scores
  x = jnp.where(inputs.valid[..., None], x, jnp.zeros_like(x))
  return x + _common.nan_where(inputs.bad, x.dtype)[..., None]


@_frame.loss(reduction="reduction_weighted")
def sparse_categorical_focal_loss_with_logits(
  logits,
  labels,
  *,
  gamma=2.0,
  class_weights=None,
  ignore_index: int | None = None,
  label_smoothing=0.0,
  softcap=None,
  axis: int = -1,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Multi-class focal loss from logits: cross-entropy scaled by ``(1 - p_y)^gamma``.

  .. math::
    \ell_n = -w_{y_n} (1 - p_{n,y_n})^{\gamma} \log p_{n,y_n},
    \quad p = \mathrm{softmax}(z)

  ``log(1 - p_y) = lse(z_{c != y}) - lse(z)`` is exact even where ``p_y`` rounds to 1.
  ``gamma = 0`` is the weighted cross-entropy; the class weights are Lin et al.'s "alpha".
  With label smoothing (``q = (1 - e) onehot(y) + e / C``) each class's term takes its own
  probability (Keras's ``CategoricalFocalCrossentropy`` convention):

  .. math::
    \ell_n = (1 - \epsilon) w_{y} (1 - p_{y})^{\gamma} (-\log p_{y})
      + \frac{\epsilon}{C} \sum_c w_c (1 - p_c)^{\gamma} (-\log p_c)

  where the smoothing sum clips ``p_c`` just below 1 (a term then below ``w_c 2^-24`` in
  float32).

  Gradient: ``d l / d z_c = w_y (p_c - [c = y]) (1 - p_y)^(g - 1) ((1 - p_y) - g p_y log p_y)``,
  which for ``g = 0`` is the cross-entropy's ``w_y (p_c - [c = y])``; with smoothing,
  ``d l / d z = p sum_c a_c A_c - a A`` with ``a = w q`` and
  ``A_c = (1 - p_c)^g - g p_c log p_c (1 - p_c)^(g - 1)``.

  Args:
    logits: ``[..., C, ...]`` unnormalised scores, class axis at ``axis``.
    labels: integer class indices, the per-example shape: ``logits.shape`` without
      ``axis``.
    gamma: focusing parameter ``gamma``, finite and >= 0 (may be traced).
    $options

  $contract

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> z = jnp.log(jnp.array([[0.2, 0.8]]))
    >>> round(float(xentax.sparse_categorical_focal_loss_with_logits(z, jnp.array([1]))), 4)
    0.0089

  References:
    Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017; Keras's
    ``CategoricalFocalCrossentropy`` (label smoothing with the focal weight per class).
  """
  inputs = prepare_sparse(
    "sparse_categorical_focal_loss_with_logits",
    logits,
    labels,
    axis=axis,
    class_weights=class_weights,
    ignore_index=ignore_index,
    where=where,
    sample_weight=sample_weight,
    reduction=reduction,
    options=dict(gamma=gamma, label_smoothing=label_smoothing, softcap=softcap),
  )
  eps = None if _common.is_static_zero(label_smoothing) else inputs.option(label_smoothing)
  losses = _focal_losses(inputs, eps, inputs.option(gamma), inputs.option(softcap))
  return inputs.reduce(losses, reduction)


@jax.custom_jvp
def _focal_losses(inputs: SparseInputs, eps, gamma, cap) -> jax.Array:
  """The sparse focal loss per example (``eps`` None: no smoothing); the logits' tangent is
  :func:`_focal_grad_dot` under ``jax.checkpoint`` (three ``[...]`` residuals)."""
  return _focal_losses_and_stats(inputs, eps, gamma, cap)[0]


def _focal_losses_and_stats(inputs: SparseInputs, eps, gamma, cap, for_options=False):
  """``(losses, (lse, log p_y, log(1 - p_y)))`` per example; ``for_options``: the value whose
  jvp gives the options' tangents (:func:`_exact_focal_class_sum`'s ``hold_infinite``)."""
  log_p, log_1mp, lse = _target_log_probs(inputs, cap)
  losses = _focal.focal_scale(-log_p, log_1mp, gamma)
  if inputs.target_weight is not None:
    # safe_mul: a class weight of 0 on an infinite loss adds 0 (0 * inf = 0).
    losses = _common.safe_mul(inputs.target_weight, losses)
  if eps is not None:
    if for_options and cap is None:
      # Both sums inside the cond: reverse mode transposes only the one taken (0 * inf).
      x = _sanitize_logits(inputs)
      smoothing = lax.cond(
        (jnp.asarray(eps) == 0) & jnp.any(jnp.isinf(x)),
        lambda: _exact_focal_class_sum(x, gamma, inputs.class_weights, hold_infinite=True),
        lambda: _focal_class_sum(inputs, cap, gamma),
      )
    else:
      smoothing = _focal_class_sum(inputs, cap, gamma)
    # safe_mul: with eps == 0 an infinite class term must not turn 0 * inf into NaN.
    num_classes = inputs.scores.shape[-1]
    losses = (1 - eps) * losses + _common.safe_mul(eps / num_classes, smoothing)
  return losses, (lse, log_p, log_1mp)


@functools.partial(_focal_losses.defjvp, symbolic_zeros=True)
def _focal_losses_jvp(primals, tangents):
  inputs, eps, gamma, cap = primals
  t_inputs, t_eps, t_gamma, t_cap = tangents
  losses, stats = _focal_losses_and_stats(inputs, eps, gamma, cap)
  t_losses = jnp.zeros_like(losses)
  if not _common.is_symbolic_zero(t_inputs.scores):
    # Decided here, not inside the checkpointed function, whose trace JAX caches.
    recompute = inputs.scores.size > _rows.SPARSE_KEEP_EXP_MAX_ENTRIES
    grad_dot = jax.checkpoint(functools.partial(_focal_grad_dot, recompute))
    t_losses = t_losses + grad_dot(inputs, t_inputs.scores, *stats, eps, gamma, cap)
  # The options, rarely moving: the value's own jvp with the logits held fixed.
  options = (inputs.class_weights, inputs.target_weight, eps, gamma, cap)
  t_options = (t_inputs.class_weights, t_inputs.target_weight, t_eps, t_gamma, t_cap)

  def from_options(class_weights, target_weight, eps, gamma, cap):
    moved = inputs._replace(class_weights=class_weights, target_weight=target_weight)
    return _focal_losses_and_stats(moved, eps, gamma, cap, for_options=True)[0]

  t_losses = _engine.plus(t_losses, _engine.held_jvp(from_options, options, t_options))
  return losses, t_losses


def _focal_grad_dot(recompute, inputs: SparseInputs, t_x, lse, log_p, log_1mp, eps, gamma, cap):
  """``sum_c (d loss / d x_c) t_c`` per example: ``d loss / d z_c = a p_c - (eps / C) w_c A_c
  - [c = y] b``, ``b = (1 - eps) w_y A_y``, ``a = b + (eps / C) sum_c w_c A_c``, ``A``
  :func:`focal_weight`. ``recompute``: the output pass recomputes the class terms."""
  x, labels, valid = inputs.scores, inputs.labels, inputs.valid
  num_classes = x.shape[-1]
  # log p_y from log(1 - p_y) near p_y = 1, where the guarded `z_y - lse` rounds to 0.
  one_minus_p_y = jnp.exp(log_1mp)
  log_p = jnp.where(log_p < -0.5, log_p, jnp.log1p(-one_minus_p_y))
  p_y = jnp.exp(log_p)
  target = _focal.focal_weight(None, p_y, log_p, gamma, one_minus_p=one_minus_p_y)
  if inputs.target_weight is not None:
    target = inputs.target_weight * target
  if eps is not None:
    target = (1 - eps) * target
  target = target + _common.nan_where(inputs.bad, target.dtype)

  def probs_and_terms(x, lse):
    z = x if cap is None else _softcap.softcap(x, cap)
    log_probs = z - lse[..., None]
    probs = jnp.exp(log_probs)
    return probs, _focal.focal_weight(None, probs, log_probs, gamma) if eps is not None else None

  coef_p = target
  if eps is not None:
    weights = inputs.class_weights
    if weights is None:
      weights = jnp.ones((num_classes,), lse.dtype)
    scale = eps / num_classes
    # A matvec: as a row reduction XLA:CPU fuses it with the output pass and writes that
    # pass's inputs out. Beyond the cache, recompute the terms past a barrier.
    row_terms = probs_and_terms(x, lse)[1]
    coef_p = coef_p + scale * jnp.dot(row_terms, weights, precision=lax.Precision.HIGHEST)
    if recompute:
      x, lse = lax.optimization_barrier((x, lse))
  probs, class_terms = probs_and_terms(x, lse)
  if eps is not None:
    class_terms = weights * class_terms
  # The target's entry a p_y - b as (a - b) p_y - b (1 - p_y): no cancellation as p_y -> 1.
  target_entry = (coef_p - target) * p_y - target * one_minus_p_y
  is_target = jnp.arange(num_classes, dtype=labels.dtype) == labels[..., None]
  grad = jnp.where(is_target, target_entry[..., None], coef_p[..., None] * probs)
  if eps is not None:
    grad = grad - scale * class_terms
  if cap is not None:
    grad = grad * _softcap.softcap_slope(x, cap)
  # Selected after the products: a dropped row may hold NaN or infinite logits.
  grad = jnp.where(valid[..., None], grad, 0.0)
  return jnp.sum(grad * t_x, axis=-1)


def _target_log_probs(inputs: SparseInputs, cap):
  """``(log p_y, log(1 - p_y), lse)`` per example, exact also where ``p_y`` rounds to 1.

  With ``r = sum_{c != y} exp(z_c - z_y)`` (one fused pass): ``log p_y = -log1p(r)``,
  ``log(1 - p_y) = log(r) - log1p(r)``; a batch where some ``r`` is not finite and positive
  takes two log-sum-exps over sanitised logits.
  """
  x, labels = inputs.scores, inputs.labels
  num_classes = x.shape[-1]
  pieces = _rows.row_pieces(num_classes)
  extra = (None,) if pieces == 1 else (None, None)  # broadcast [...] to the rows
  target = jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0]
  # Zeroed: a dropped row's NaN target's softcap slope must not meet a zero cotangent.
  target = jnp.where(inputs.valid, target, jnp.zeros_like(target))
  if cap is not None:
    target = _softcap.differentiable_softcap(target, cap)
  classes = _rows.split_rows(jnp.arange(num_classes, dtype=labels.dtype), pieces)
  indices = (classes, labels[(..., *extra)])
  r = _others_exp_sum(pieces, _rows.split_rows(x, pieces), target[(..., *extra)], indices, cap)
  ok = jnp.all(jnp.isfinite(r) & (r > 0))
  r = r + _common.nan_where(inputs.bad, r.dtype)

  def fast():
    log1p_r = jnp.log1p(r)
    return -log1p_r, jnp.log(r) - log1p_r, target + log1p_r

  def guarded(x, labels, valid, bad):
    xs = _sanitize_logits(inputs._replace(scores=x, labels=labels, valid=valid, bad=bad))
    if cap is not None:
      xs = _softcap.differentiable_softcap(xs, cap)
    lse = _rows.logsumexp(xs)
    target_logit = jnp.take_along_axis(xs, labels[..., None], axis=-1)[..., 0]
    is_target = jnp.arange(num_classes) == labels[..., None]
    log_1mp = _rows.logsumexp(jnp.where(is_target, -jnp.inf, xs)) - lse
    return target_logit - lse, log_1mp, lse

  rows = (x, labels, inputs.valid, inputs.bad)
  return _engine.fast_or_guarded(fast, guarded, ok, *rows)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _others_exp_sum(pieces, x, shift, indices, cap):
  """``sum_c exp(z_c - shift)`` over ``c != y`` (``indices = (classes, y)``) per row, ``z``
  the soft-capped ``x``; a ``custom_jvp`` so that a non-finite term's tangent is 0, not
  ``0 * inf``."""
  z = x if cap is None else _softcap.softcap(x, cap)
  return _rows.row_reduce(jnp.exp(z - shift) * _others(indices, z.dtype), pieces)


def _others(indices, dtype):
  """1 off the target class, 0 on it, from ``indices = (classes, labels)`` by float
  arithmetic: a compare, or integer arithmetic, in a row reduction writes its operand out
  on XLA:CPU."""
  classes, labels = indices
  if classes.size > 2 ** (jnp.finfo(dtype).nmant + 1):  # indices not exact in ``dtype``
    return (classes != labels).astype(dtype)
  return jnp.minimum(jnp.abs(classes.astype(dtype) - labels.astype(dtype)), 1)


@_others_exp_sum.defjvp
def _others_exp_sum_jvp(pieces, primals, tangents):
  x, shift, indices, cap = primals
  t_x, t_shift, _, t_cap = tangents
  z = x if cap is None else _softcap.softcap(x, cap)
  others = _others(indices, z.dtype)
  terms = jnp.exp(z - shift) * others
  # The target's own term is 0 whatever its logit, whose slope may be NaN.
  keep = (others > 0) & jnp.isfinite(terms)

  def coefficient(slope):
    # Selected before the tangent: the transpose multiplies a zero cotangent by 0, not NaN.
    return jnp.where(keep, terms * slope, 0.0)

  t_terms = -coefficient(1.0) * t_shift
  if cap is None:
    t_terms = t_terms + coefficient(1.0) * t_x
  else:
    d_x, d_c = _softcap.softcap_derivatives(x, cap)
    t_terms = t_terms + coefficient(d_x) * t_x + coefficient(d_c) * t_cap
  return _rows.row_reduce(terms, pieces), _rows.row_reduce(t_terms, pieces)


def _focal_class_sum(inputs: SparseInputs, cap, gamma) -> jax.Array:
  """``sum_c w_c (1 - p_c)^gamma (-log p_c)`` per example, the focal loss's smoothing sum."""
  x = _sanitize_logits(inputs)
  if cap is not None:
    x = _softcap.differentiable_softcap(x, cap)
  ignored = ~inputs.valid | inputs.bad
  return _fast_focal_class_sum(x, jnp.asarray(gamma, x.dtype), inputs.class_weights, ignored)


@jax.custom_jvp
def _fast_focal_class_sum(x, gamma, weights, ignored) -> jax.Array:
  """:func:`_exact_focal_class_sum` in one guard-free pass; a kept row that is not finite
  sends the batch to the exact form. Logit tangent: :func:`_focal_class_grad_dot`."""
  return _focal_class_sum_and_lse(x, gamma, weights, ignored)[0]


def _focal_class_sum_and_lse(x, gamma, weights, ignored):
  """``(sum, lse)`` per row: :func:`_fast_focal_class_sum` and the guard-free log-sum-exp
  of its pass (not finite only in a row that is NaN or infinite, or all ``-inf``)."""
  pieces = _rows.row_pieces(x.shape[-1])
  z = _rows.split_rows(x, pieces)
  lse = _rows.fast_lse(z, _rows.row_max(z, pieces), pieces)
  terms = _focal_class_terms(
    z, lse[_rows.row_axes(pieces)], gamma, _rows.split_rows(weights, pieces)
  )
  fast = _rows.row_reduce(terms, pieces)
  exact = lambda x: _exact_focal_class_sum(x, gamma, weights)  # noqa: E731
  return _engine.fast_or_guarded(fast, exact, _engine.all_finite(fast, ~ignored), x), lse


@functools.partial(_fast_focal_class_sum.defjvp, symbolic_zeros=True)
def _fast_focal_class_sum_jvp(primals, tangents):
  x, gamma, weights, ignored = primals
  t_x = tangents[0]
  out, lse = _focal_class_sum_and_lse(x, gamma, weights, ignored)
  t_out = jnp.zeros_like(out)
  if not _common.is_symbolic_zero(t_x):
    # Reached for second and mixed derivatives only (first order: _focal_grad_dot).
    t_out = t_out + jax.checkpoint(_focal_class_grad_dot)(x, lse, t_x, gamma, weights)
  # gamma and the weights (rarely moving): the exact form's jvp with x held fixed.
  held = _engine.held_jvp(_exact_focal_class_sum, (x, gamma, weights), tangents[:3], held=(0,))
  t_out = _engine.plus(t_out, held)
  return out, t_out


def _focal_class_grad_dot(x, lse, t_x, gamma, weights) -> jax.Array:
  """``sum_c (d S / d x_c) t_c`` for the smoothing sum ``S``: ``d S / d x = p sum(b) - b``,
  ``b_c = w_c A_c`` (:func:`focal_weight`)."""
  log_p = x - lse[..., None]
  p = jnp.exp(log_p)
  b = _focal.focal_weight(None, p, log_p, gamma)
  if weights is not None:
    b = weights * b
  grad = p * jnp.sum(b, axis=-1, keepdims=True) - b
  return jnp.sum(grad * t_x, axis=-1)


def _focal_class_terms(z, lse, gamma, weights) -> jax.Array:
  """The smoothing sum's terms ``w_c (1 - p_c)^gamma (lse - z_c)``, guard-free, ``p_c``
  clipped at ``1 - epsneg``; an infinite term stays infinite (the caller's guard)."""
  finfo = jnp.finfo(z.dtype)
  ce = lse - z
  log_1mp = jnp.log1p(-jnp.minimum(jnp.exp(-ce), 1 - finfo.epsneg))
  # Weights on the cross-entropy factor: on the whole product they slow XLA:CPU's loop.
  weighted = ce if weights is None else weights * ce
  return jnp.exp(gamma * log_1mp) * weighted


def _exact_focal_class_sum(x, gamma, weights, hold_infinite=False) -> jax.Array:
  """The smoothing sum with every guard (``x``'s dropped rows zeroed). ``hold_infinite``
  (options' derivatives at ``eps = 0``): an infinite logit's ``lse - z_c`` is set to 0, so
  ``d / d eps`` is that of the finite terms and no cotangent meets ``0 * inf``."""
  lse = _rows.logsumexp(x)
  z = jnp.where(jnp.isinf(x), lse[..., None], x) if hold_infinite else x
  per_class = _focal.focal_scale(lse[..., None] - z, _log1m_softmax(x, lse), gamma)
  if weights is not None:
    per_class = _common.safe_mul(weights, per_class)
  return jnp.sum(per_class, -1)


def _log1m_softmax(x, lse) -> jax.Array:
  """``log(1 - softmax(x)_c)`` for every class, exact also where ``p_c`` rounds to 1: the
  row's largest class from the others' log-sum-exp, the rest (``p_c <= 1/2``) by log1p."""
  is_max = jnp.arange(x.shape[-1]) == jnp.argmax(x, axis=-1)[..., None]
  largest = _rows.logsumexp(jnp.where(is_max, -jnp.inf, x)) - lse
  # Double where: the largest class's p never enters log1p, so its gradient stays finite.
  p = jnp.exp(jnp.where(is_max, -jnp.inf, x - lse[..., None]))
  return jnp.where(is_max, largest[..., None], jnp.log1p(-p))
