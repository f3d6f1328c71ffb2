r"""Sparse categorical focal loss from logits: cross-entropy scaled by ``(1 - p_y)^gamma``.

Design notes:
  * The value and its closed-form derivatives share the target's log-probability and
    ``log(1 - p_y)``, computed from the logits without forming ``1 - softmax``; a
    confident row (``p_y`` near 1) takes ``log1p`` of the other classes' mass, exact there.
  * With label smoothing each class's focal term enters the row's sum; its derivative is a
    closed form too (:func:`_fast_focal_class_sum`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import _common, _doc, _engine, _focal, _rows, _softcap
from xentax.losses._sparse import SparseInputs, prepare_sparse


def _sanitize_logits(inputs: SparseInputs) -> jax.Array:
  """Zero the dropped rows (so -inf there is harmless) and NaN the rows with bad labels."""
  x = inputs.scores
  x = jnp.where(inputs.valid[..., None], x, jnp.zeros_like(x))
  return x + _common.nan_where(inputs.bad, x.dtype)[..., None]


@_doc.shared
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

  Computed in log space: ``log p_y = z_y - lse(z)`` and, exactly even when ``p_y``
  rounds to 1, ``log(1 - p_y) = lse(z_{c != y}) - lse(z)``, so a confident correct
  prediction gives a finite loss and gradient. ``gamma = 0`` is the weighted
  cross-entropy. The class weights are the "alpha" of Lin et al. for many classes.

  With label smoothing the target is ``q = (1 - e) onehot(y) + e / C``, as in
  :func:`sparse_categorical_cross_entropy_with_logits`, and the focal weight applies to
  each class's term of the smoothed cross-entropy with that class's own probability
  (Keras's ``CategoricalFocalCrossentropy`` convention):

  .. math::
    \ell_n = (1 - \epsilon) w_{y} (1 - p_{y})^{\gamma} (-\log p_{y})
      + \frac{\epsilon}{C} \sum_c w_c (1 - p_c)^{\gamma} (-\log p_c)

  which is the smoothed cross-entropy for ``gamma = 0``. The smoothing sum takes
  ``log(1 - p_c) = log1p(-p_c)`` with ``p_c`` clipped just below 1: only a class whose
  probability rounds to 1 is affected, and its term is then below ``w_c 2^-24`` in float32
  (the exact, guarded form takes over where a term is infinite).

  Gradient: ``d l / d z_c = w_y (p_c - [c = y]) (1 - p_y)^(g - 1) ((1 - p_y) - g p_y log p_y)``,
  which for ``g = 0`` is the cross-entropy's ``w_y (p_c - [c = y])``; with smoothing,
  ``d l / d z = p sum_c a_c A_c - a A`` with ``a = w q`` and
  ``A_c = (1 - p_c)^g - g p_c log p_c (1 - p_c)^(g - 1)``.

  Args:
    logits: ``[..., C, ...]`` unnormalised scores, class axis at ``axis``.
    labels: integer class indices, the per-example shape: ``logits.shape`` without
      ``axis``.
    gamma: focusing parameter ``gamma``, finite and >= 0 (may be traced).
    $class_weights
    $ignore_index
    $label_smoothing
    $softcap
    axis: the class axis of ``logits``.
    $where
    $sample_weight
    $reduction_weighted

  Returns:
    The loss, float32 (float64 for float64 logits); ``labels.shape`` for ``"none"``.

  Raises:
    As :func:`sparse_categorical_cross_entropy_with_logits`; a concrete ``gamma``
    outside its domain raises ``ValueError`` too (traced: NaN loss and gradients).

  Example:
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
  """The sparse focal loss per example (``eps`` None: no label smoothing).

  A ``custom_jvp``: the logits' tangent is the closed form :func:`_focal_grad_dot` inside
  ``jax.checkpoint``, so reverse mode saves three ``[...]`` statistics besides the inputs
  and writes ``d logits`` from one pass (two with label smoothing). Autodiff through the
  value's ``lax.cond`` fallbacks would keep both branches' ``[..., C]`` residuals and
  materialise several ``[..., C]`` intermediates (see experiments/benchmarks/).
  """
  return _focal_losses_and_stats(inputs, eps, gamma, cap)[0]


def _focal_losses_and_stats(inputs: SparseInputs, eps, gamma, cap, for_options=False):
  """``(losses, (lse, log p_y, log(1 - p_y)))`` per example.

  ``for_options``: the value whose jvp gives the options' tangents (logits held fixed);
  its smoothing sum leaves out an infinite logit's term at ``eps = 0``
  (:func:`_exact_focal_class_sum`).
  """
  log_p, log_1mp, lse = _target_log_probs(inputs, cap)
  losses = _focal.focal_scale(-log_p, log_1mp, gamma)
  if inputs.target_weight is not None:
    losses = inputs.target_weight * losses
  if eps is not None:
    if for_options and cap is None:
      # At eps = 0 an infinite logit's term is held out (:func:`_exact_focal_class_sum`),
      # and only then: the held form is the exact, multi-pass one (a softcapped logit is
      # finite). Both sums inside the cond, so that reverse mode transposes only the one
      # taken (a zero cotangent through the other would meet 0 * inf).
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
  # The options (class weights, eps, gamma, the softcap), rarely moving: the value's own
  # jvp with the logits held fixed.
  options = (inputs.class_weights, inputs.target_weight, eps, gamma, cap)
  t_options = (t_inputs.class_weights, t_inputs.target_weight, t_eps, t_gamma, t_cap)

  def from_options(class_weights, target_weight, eps, gamma, cap):
    moved = inputs._replace(class_weights=class_weights, target_weight=target_weight)
    return _focal_losses_and_stats(moved, eps, gamma, cap, for_options=True)[0]

  t_losses = _engine.plus(t_losses, _engine.held_jvp(from_options, options, t_options))
  return losses, t_losses


def _focal_grad_dot(recompute, inputs: SparseInputs, t_x, lse, log_p, log_1mp, eps, gamma, cap):
  """``sum_c (d loss / d x_c) t_c`` per example, from the closed form
  ``d loss / d z_c = a p_c - (eps / C) w_c A_c - [c = y] b`` with ``b = (1 - eps) w_y A_y``,
  ``a = b + (eps / C) sum_c w_c A_c`` and ``A`` :func:`focal_weight`; times ``1 - (z / c)^2``
  with a softcap. ``A_y`` comes from the exact ``log p_y`` (``1 - p_y`` without
  cancellation); dropped rows get 0 whatever they hold, bad rows NaN. ``recompute``: the
  output pass recomputes the class terms of the row sum (large logits, see below).
  """
  x, labels, valid = inputs.scores, inputs.labels, inputs.valid
  num_classes = x.shape[-1]
  # p_y and 1 - p_y both exact: 1 - p_y from log(1 - p_y), and log p_y from it where p_y
  # is near 1 (the guarded form's `z_y - lse` rounds to 0 there).
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
    # The row sum as a matrix-vector product: as a row reduction, XLA:CPU fuses it with
    # the output pass and writes that pass's other inputs to memory as [..., C] arrays.
    # Beyond the cache the output pass recomputes its terms from the logits (past an
    # optimization barrier, so XLA cannot share them with the product's operand); while
    # the working set stays in cache, sharing them is faster.
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

  In the common case one fused pass over the logits: with the other classes' sum
  ``r = sum_{c != y} exp(z_c - z_y)`` (the target masked inside the reduction),
  ``log p_y = -log1p(r)`` and ``log(1 - p_y) = log(r) - log1p(r)``. Shifting by the target
  logit needs no max pass. Only if some row's ``r`` is not finite and positive (a logit
  more than ~88 above the target's in float32, all others ~104 below it, one class, a NaN
  or an infinite logit, also in a dropped row) does the batch take the guarded form: two
  log-sum-exps over sanitised logits. Dropped rows must be finite for the fast form, so
  that autodiff through it cannot meet ``0 * inf`` there; a bad label makes its row NaN.
  """
  x, labels = inputs.scores, inputs.labels
  num_classes = x.shape[-1]
  pieces = _rows.row_pieces(num_classes)
  extra = (None,) if pieces == 1 else (None, None)  # broadcast [...] to the rows
  target = jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0]
  # A dropped row's target logit may be NaN: zeroed ([...] only), so its softcap slope
  # cannot meet a zero cotangent.
  target = jnp.where(inputs.valid, target, jnp.zeros_like(target))
  if cap is not None:
    target = _softcap.differentiable_softcap(target, cap)
  classes = _rows.split_rows(jnp.arange(num_classes, dtype=labels.dtype), pieces)
  indices = (classes, labels[(..., *extra)])
  r = _others_exp_sum(pieces, _rows.split_rows(x, pieces), target[(..., *extra)], indices, cap)
  ok = jnp.all(jnp.isfinite(r) & (r > 0))
  # A bad label's row: NaN value and gradient.
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
  """``sum_c exp(z_c - shift)`` over the classes ``c != y`` (``indices = (classes, y)``), per
  row, with ``z`` the soft-capped ``x`` (``cap`` None: ``z = x``).

  A ``custom_jvp`` only so that a term that is not finite (its row sends the batch to the
  guarded form, where this sum gets a zero cotangent) has a zero tangent, not ``0 * inf``;
  elsewhere the tangent is ``sum_c e_c (dz_c - d shift)``.
  """
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
    # Selected after the product (a non-finite term's slope may be NaN) and before the
    # tangent, so that the transpose multiplies a zero cotangent by 0, never by NaN.
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
  """:func:`_exact_focal_class_sum` in one guard-free pass in the common case.

  The pass (:func:`_focal_class_terms`) has no compare or select per class: a select
  inside a fused row reduction is much slower on XLA:CPU. A row not ``ignored`` where it
  is not finite (an infinite class term, a zero class weight against one) sends the batch
  to the exact form. A ``custom_jvp``: differentiating through the ``lax.cond`` would make
  reverse mode keep both branches' ``[..., C]`` residuals. The logits' tangent is the
  closed form :func:`_focal_class_grad_dot`; those of ``gamma`` and the weights are the
  exact form's.
  """
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
    # Reached for second and mixed derivatives (first-order logit tangents of the loss
    # come from _focal_grad_dot). The forward's lse is a [...] residual, so the backward
    # pass does not recompute it.
    t_out = t_out + jax.checkpoint(_focal_class_grad_dot)(x, lse, t_x, gamma, weights)
  # gamma and the weights (rarely moving): the exact form's jvp with x held fixed.
  held = _engine.held_jvp(_exact_focal_class_sum, (x, gamma, weights), tangents[:3], held=(0,))
  t_out = _engine.plus(t_out, held)
  return out, t_out


def _focal_class_grad_dot(x, lse, t_x, gamma, weights) -> jax.Array:
  """``sum_c (d S / d x_c) t_c`` for the smoothing sum ``S = sum_c w_c (1 - p_c)^g (-log
  p_c)``: the dense focal loss with the class weights as targets, so ``d S / d x = p sum(b)
  - b`` with ``b_c = w_c A_c`` (:func:`focal_weight`, its limits at ``p = 0`` and 1 taken).
  A closed form: autodiff of the exact form (an argmax, a masked log-sum-exp, their
  selects) would dominate the focal loss's value-and-grad with label smoothing.
  """
  log_p = x - lse[..., None]
  p = jnp.exp(log_p)
  b = _focal.focal_weight(None, p, log_p, gamma)
  if weights is not None:
    b = weights * b
  grad = p * jnp.sum(b, axis=-1, keepdims=True) - b
  return jnp.sum(grad * t_x, axis=-1)


def _focal_class_terms(z, lse, gamma, weights) -> jax.Array:
  """The smoothing sum's terms ``w_c (1 - p_c)^gamma (lse - z_c)``, guard-free.

  ``p_c`` is clipped below 1 (at ``1 - epsneg``), so ``log1p(-p_c)`` stays finite. That
  changes only a class whose probability rounds to 1, the row's largest, whose term is then
  below ``w_c 2^-24`` (float32; ``2^-53`` in float64) anyway. An infinite term stays
  infinite (the caller's guard).
  """
  finfo = jnp.finfo(z.dtype)
  ce = lse - z
  log_1mp = jnp.log1p(-jnp.minimum(jnp.exp(-ce), 1 - finfo.epsneg))
  # The weights multiply the cross-entropy factor first: weighting the whole product slows
  # the fused loop on XLA:CPU.
  weighted = ce if weights is None else weights * ce
  return jnp.exp(gamma * log_1mp) * weighted


def _exact_focal_class_sum(x, gamma, weights, hold_infinite=False) -> jax.Array:
  """The smoothing sum with every guard: ``log(1 - p)`` exact for every class, ``0 * inf``
  kept out of values and derivatives; ``x`` has its dropped rows zeroed.

  ``hold_infinite``: for the options' derivatives at ``eps = 0``, an infinite logit's term
  (``0 * inf``, taken as 0) is left out, its ``lse - z_c`` set to 0, as the categorical
  focal loss does. ``d / d eps`` is then that of the finite terms (the one-sided derivative
  is +inf), and a class weight's cotangent does not meet ``0 * inf = NaN``.
  """
  lse = _rows.logsumexp(x)
  z = jnp.where(jnp.isinf(x), lse[..., None], x) if hold_infinite else x
  per_class = _focal.focal_scale(lse[..., None] - z, _log1m_softmax(x, lse), gamma)
  if weights is not None:
    per_class = _common.safe_mul(weights, per_class)
  return jnp.sum(per_class, -1)


def _log1m_softmax(x, lse) -> jax.Array:
  """``log(1 - softmax(x)_c)`` for every class, exact also where ``p_c`` rounds to 1.

  Only a row's largest class can have ``p_c > 1/2``; its value is the log-sum-exp of the
  other classes minus ``lse``. Every other class has ``p_c <= 1/2``, where
  ``log1p(-p_c)`` is accurate.
  """
  is_max = jnp.arange(x.shape[-1]) == jnp.argmax(x, axis=-1)[..., None]
  largest = _rows.logsumexp(jnp.where(is_max, -jnp.inf, x)) - lse
  # Double where: the largest class's p never enters log1p, so its gradient stays finite.
  p = jnp.exp(jnp.where(is_max, -jnp.inf, x - lse[..., None]))
  return jnp.where(is_max, largest[..., None], jnp.log1p(-p))
