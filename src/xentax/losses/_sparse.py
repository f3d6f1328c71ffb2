"""Sparse (integer-label) categorical cross-entropy: from probabilities, from logits, focal.

Design notes:
  * Labels carry the scores' shape without the class axis; :func:`prepare_sparse` moves the
    class axis last once, builds the validity mask (``where``, ``ignore_index``), checks the
    label range and gathers the target class weights.
  * The loss from logits is assembled from four per-example terms (log-normaliser, target
    logit, weighted logit sum, target weight) by :class:`._sparse_terms.SparseTerms`, which
    the fused linear cross-entropy (computing the terms block by block) shares, so an option
    means the same thing in both.
  * Ignored rows are zeroed or selected away before any arithmetic, so ``-inf`` or NaN there
    cannot leak into the loss or the gradient; a kept row with an out-of-range label gets a
    NaN added, so its loss and gradient are NaN under ``jit``.
  * Logit derivatives are closed forms in ``custom_jvp`` rules inside ``jax.checkpoint``:
    reverse mode saves per-example statistics only, writes ``d logits`` in one pass, and
    never differentiates through a ``lax.cond`` (which keeps both branches' residuals).
  * The fast paths are guard-free fused passes (a select inside a fused row reduction is
    much slower on XLA:CPU); a batch where a fast pass is not finite takes the exact,
    guarded form.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import _common, _doc, _validate
from xentax.losses._sparse_terms import SparseOptions, prepare_labels


class SparseInputs(NamedTuple):
  scores: jax.Array  # [..., C], class axis last, compute dtype
  labels: jax.Array  # [...], in range (0 where invalid or bad)
  valid: jax.Array  # [...], bool: not masked by `where`, not ignore_index
  bad: jax.Array  # [...], bool: valid but label out of range
  class_weights: jax.Array | None  # [C]
  target_weight: jax.Array | None  # [...], w[y]


def prepare_sparse(
  fn_name,
  scores,
  labels,
  *,
  axis,
  class_weights,
  ignore_index,
  where,
  option_bad=None,
  upcast=True,
) -> SparseInputs:
  """Validate a sparse loss's inputs and bring them to a common layout.

  ``option_bad`` (a traced boolean, or None) marks a scalar option outside its domain:
  every kept example is then bad (NaN loss and gradient), as for an out-of-range label.
  ``upcast=False`` leaves the scores in their own dtype (a loss that upcasts inside its
  fused computations, so that no float32 copy of bf16 logits is ever materialised).
  """
  scores = _validate.float_array(fn_name, "logits/probs", scores)
  labels, shown = _validate.integer_labels(fn_name, labels, ignore_index)
  axis = _common.normalize_axis(fn_name, axis, scores.ndim)
  _common.check_example_shape(fn_name, scores.shape, axis, labels)
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
  return SparseInputs(scores, *labels)


@_doc.shared
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
) -> jax.Array:
  r"""Cross-entropy between integer labels and ``softmax(logits)``, computed from logits.

  The sparse categorical cross-entropy ``-log softmax(z)_y``, computed stably as
  ``logsumexp(z) - z_y``, with torch's ``cross_entropy`` options.

  .. math::
    \ell_n = (1 - \epsilon)\, w_{y_n} (\mathrm{lse}(z_n) - z_{n,y_n})
      + \frac{\epsilon}{C} \sum_c w_c (\mathrm{lse}(z_n) - z_{n,c})
      + \lambda_z \mathrm{lse}(z_n)^2

  Gradient: ``d l_n / d z_n = (1 - e) w_y (softmax(z_n) - onehot(y_n))
  + (e / C) (sum(w) softmax(z_n) - w) + 2 lambda_z lse(z_n) softmax(z_n)``; without
  options this is the softmax-regression gradient ``y_pred - y``. With ``softcap`` the
  loss is that of the capped logits ``z``, a ``-inf`` logit becoming ``-c`` (as in
  :func:`xentax.fused_linear_cross_entropy`). With nothing dropped,
  ``"sum_over_batch_size"`` is torch's ``(loss(reduction="none") * s).mean()``.

  Args:
    logits: ``[..., C, ...]`` unnormalised scores, class axis at ``axis``.
    labels: integer class indices, the per-example shape: ``logits.shape`` without
      ``axis``.
    axis: the class axis of ``logits``.
    $class_weights
    $ignore_index
    $label_smoothing
    $z_loss
    $softcap
    $where
    $sample_weight
    $reduction_weighted

  Returns:
    The loss, float32 (float64 for float64 logits); ``labels.shape`` for ``"none"``.

  Raises:
    TypeError: float labels, or a non-numeric option. ValueError: shapes that do not
    match, an unknown reduction, or (on concrete inputs) a label outside ``[0, C)`` that
    is not ``ignore_index`` or an option or weight outside its domain; under ``jit`` the
    affected examples' loss and gradient are NaN instead.

  Example:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.sparse_categorical_cross_entropy_with_logits(
    ...     jnp.log(jnp.array([[0.2, 0.8]])), jnp.array([1])))  # doctest: +ELLIPSIS
    0.2231...

  References:
    Szegedy et al., "Rethinking the Inception Architecture", 2016 (label smoothing);
    Chowdhery et al., "PaLM", 2022 (z-loss); ``torch.nn.functional.cross_entropy``.
  """
  fn_name = "sparse_categorical_cross_entropy_with_logits"
  _common.check_reduction(fn_name, reduction)
  option_bad = _validate.options(
    fn_name, label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap
  )
  inputs = prepare_sparse(
    fn_name,
    logits,
    labels,
    axis=axis,
    class_weights=class_weights,
    ignore_index=ignore_index,
    where=where,
    option_bad=option_bad,
    # The logits stay in their own dtype through the custom rule and are upcast inside
    # each fused pass: for bf16 logits no float32 copy exists, not even as a residual.
    upcast=False,
  )
  config = SparseOptions.of(inputs.scores.shape[-1], label_smoothing=label_smoothing, z_loss=z_loss)
  dtype = _common.compute_dtype(inputs.scores)
  weights = _validate.sample_weights(fn_name, sample_weight, inputs.labels.shape, dtype)
  losses = _logits_losses(
    config,
    inputs.scores,
    inputs.labels,
    inputs.valid,
    inputs.bad,
    inputs.class_weights,
    jnp.asarray(label_smoothing, dtype),
    jnp.asarray(z_loss, dtype),
    None if softcap is None else jnp.asarray(softcap, dtype),
  )
  return _common.reduce_losses(
    losses,
    valid=inputs.valid,
    denominator=inputs.target_weight,
    sample_weight=weights,
    reduction=reduction,
  )


def _up(x) -> jax.Array:
  """``x`` in its compute dtype; inside a fusion, so bf16 logits are never copied to f32."""
  return x.astype(_common.compute_dtype(x))


def _weighted_logit_sum(class_weights, x):
  """``sum_c w_c x_c`` per example, with ``0 * -inf = 0``."""
  if class_weights is None:
    return jnp.sum(_up(x), axis=-1)
  x = _up(x)
  # A matrix-vector product reads x once at full speed; it is NaN only where a zero weight
  # meets an infinite logit, and only then is the slower elementwise form computed, a few
  # rows at a time so that the rare branch reserves no [..., C] buffer.
  fast = jnp.dot(x, class_weights, precision=lax.Precision.HIGHEST)

  def elementwise():
    rows = x.reshape(-1, x.shape[-1])
    sums = lax.map(lambda row: jnp.sum(_common.safe_mul(class_weights, row)), rows, batch_size=64)
    return sums.reshape(x.shape[:-1])

  return lax.cond(jnp.any(jnp.isnan(fast)), elementwise, lambda: fast)


def _losses_from_stats(config, x, lse, target, labels, valid, bad, class_weights, eps, z, cap):
  weighted_sum = None
  if config.smoothing:
    weighted_sum = _weighted_logit_sum(class_weights, x if cap is None else softcap(x, cap))
  losses = config.terms(labels, class_weights, eps, z).loss(lse, target, weighted_sum)
  # Dropped rows may hold -inf or NaN: select, so they cannot leak; bad labels give NaN.
  losses = jnp.where(valid, losses, jnp.zeros_like(losses))
  return losses + _common.nan_where(bad, losses.dtype)


def _capped(x, cap):
  """``x`` upcast (inside the fusion), soft-capped when ``cap`` is not None."""
  return _up(x) if cap is None else softcap(x, cap)


def _sum_exp_shifted(x, shift, cap=None):
  """``sum_c exp(z_c - shift)`` per row, upcasting ``x`` inside the fused reduction."""
  pieces = _common.row_pieces(x.shape[-1])
  shift = shift[..., None] if pieces == 1 else shift[..., None, None]
  return _common.row_reduce(jnp.exp(_capped(_common.split_rows(x, pieces), cap) - shift), pieces)


def _stats(x, labels, cap=None):
  """``(logsumexp(z), z[label])`` per example (``z`` the soft-capped ``x`` with a ``cap``),
  reading ``x`` once in the common case.

  The usual log-sum-exp reads the logits twice (max, then sum of exponentials). Shifting by
  the target logit instead needs no max: its own term is ``exp(0) = 1``, so the sum cannot
  underflow, and if any term overflowed (a logit more than ~88 above the target's in
  float32) the sum is not finite and the two-pass form is used for the batch.
  """
  target = _capped(jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0], cap)
  shifted_sum = _sum_exp_shifted(x, target, cap)
  lse = lax.cond(
    jnp.all(jnp.isfinite(shifted_sum)),
    lambda: target + jnp.log(shifted_sum),
    lambda: _common.logsumexp(_capped(x, cap)),
  )
  return lse, target


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _logits_losses(config, x, labels, valid, bad, class_weights, eps, z, cap):
  """Per-example sparse cross-entropy from logits ``x [..., C]`` (class axis last).

  ``x`` stays in its own dtype (bf16 included) and is upcast inside each fused pass.
  A ``custom_jvp`` whose tangent is ``sum_c G_c t_c`` with the closed-form logit gradient
  ``G = a p - b onehot(y) - c w`` (:meth:`SparseTerms.grad_coefficients`) inside
  ``jax.checkpoint``: reverse mode saves only ``lse [...]`` besides the inputs and writes
  ``d logits`` (in the logits' dtype) in one elementwise pass; forward mode and higher
  derivatives still work. Small logits in their compute dtype, without a softcap
  (:func:`._common.keeps_exp`), keep their exponentials instead, so ``exp`` runs once per
  entry while the working set stays in cache (:func:`_logit_grad_dot_kept`). Dropped rows
  get a zero gradient whatever they hold. ``cap`` (None, or the softcap ``c``) soft-caps
  the logits inside the same passes; the tangent then carries ``1 - (z / c)^2`` and the
  softcap's own term.
  """
  stats = (labels, valid, bad, class_weights, eps, z)
  if not config.smoothing or cap is None or _common.row_pieces(x.shape[-1]) > 1:
    # Without a softcap the smoothing sum is a separate pass (a matrix-vector product with
    # the class weights), faster than one fused loop; rows reduced in pieces cannot form
    # one loop (the pieces' barrier) (see experiments/benchmarks/).
    lse, target = _stats(x, labels, cap)
    return _losses_from_stats(config, x, lse, target, *stats, cap)
  fast = _smoothed_losses(config, x, *stats, cap)

  def guarded():
    lse, target = _stats(x, labels, cap)
    return _losses_from_stats(config, x, lse, target, *stats, cap)

  # Dropped rows may hold anything; bad rows are NaN by design.
  finite = jnp.isfinite(fast) | ~valid | bad
  losses = lax.cond(jnp.all(finite), lambda: fast, guarded)
  losses = jnp.where(valid, losses, jnp.zeros_like(losses))
  return losses + _common.nan_where(bad, losses.dtype)


def _smoothed_losses(config, x, labels, valid, bad, class_weights, eps, z, cap):
  """Per-row losses with label smoothing and a softcap in one fused loop of guard-free row
  reductions: the exp-sum shifted by the target logit, then ``sum_c (f_c h - e/C w_c z_c)``
  where ``h`` is every term but the smoothing sum, entered as the first term (``f`` one-hot
  at class 0).

  One loop, not ``lse`` and the smoothing sum as two outputs: two outputs sharing the
  capped logits make XLA:CPU write those logits to memory. Not masked; NaN or infinite
  where a guard is needed (an overflow of the shifted sum, a NaN; the capped logits are
  finite), which the caller's fallback handles.
  """
  num_classes = x.shape[-1]
  pieces = _common.row_pieces(num_classes)
  rows = _common.row_axes(pieces)
  target = _capped(jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0], cap)
  zp = _capped(_common.split_rows(x, pieces), cap)
  lse = target + jnp.log(_common.row_reduce(jnp.exp(zp - target[rows]), pieces))
  terms = config.terms(labels, class_weights, eps, z)
  head = terms.loss(lse, target, jnp.zeros_like(lse))
  smooth = (eps / num_classes) * zp
  if class_weights is not None:
    smooth = smooth * _common.split_rows(class_weights, pieces)
  return _common.row_reduce(_common.first_term(zp, pieces) * head[rows] - smooth, pieces)


@functools.partial(_logits_losses.defjvp, symbolic_zeros=True)
def _logits_losses_jvp(config, primals, tangents):
  x, labels, valid, bad, class_weights, eps, z, cap = primals
  t_x, _, _, _, t_class_weights, t_eps, t_z, t_cap = tangents
  stats = (labels, valid, bad, class_weights, eps, z)
  keep_exp = cap is None and _common.keeps_exp(x, t_x, _common.SPARSE_KEEP_EXP_MAX_ENTRIES)
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
  if not all(_common.is_symbolic_zero(t) for t in t_options):
    # Tangents of the options (rarely needed: meta-learning class weights, say), with
    # the logits' statistics held fixed. Dropped rows' statistics are zeroed first: their
    # masked cotangent times a NaN or infinite statistic would otherwise be NaN.
    kept_x, kept_lse, kept_target = (_common.mask_rows(v, valid) for v in (x, lse, target))
    if config.smoothing and cap is None:
      # At eps = 0 an infinite logit's smoothing term (0 * inf, taken as 0) is left out of
      # the options' derivatives, its lse - z_c set to 0, as the categorical losses do:
      # d / d eps is then that of the finite terms (the one-sided derivative is +inf), and
      # a class weight's cotangent does not meet 0 * inf = NaN. Under a cond: a bare select
      # would write an [..., C] copy of the logits on every call.
      kept_x = lax.cond(
        (jnp.asarray(eps) == 0) & jnp.any(jnp.isinf(kept_x)),
        lambda x: jnp.where(jnp.isinf(x), kept_lse[..., None], x),
        lambda x: x,
        kept_x,
      )

    def from_options(class_weights, eps, z):
      return _losses_from_stats(
        config, kept_x, kept_lse, kept_target, labels, valid, bad, class_weights, eps, z, cap
      )

    # An option left out (class_weights=None) has no tangent at all.
    t_options = tuple(
      _common.instantiate_tangent(p, t) for p, t in zip(options, t_options, strict=True)
    )
    t_losses = t_losses + jax.jvp(from_options, options, t_options)[1]
  return losses, t_losses


def _stats_keeping_exp(x, labels):
  """``(lse, z[label], exp(x - m), sum exp(x - m))`` per row (:func:`._common.lse_keeping_exp`)."""
  x = _up(x)
  lse, exp_shifted, exp_sum = _common.lse_keeping_exp(x)
  target = jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0]
  return lse, target, exp_shifted, exp_sum


def _logit_grad_dot_kept(
  config, exp_shifted, exp_sum, t_x, lse, labels, valid, bad, class_weights, eps, z
):
  """:func:`_logit_grad_dot` from kept exponentials: ``G = a p - b onehot(y) - c w`` with
  ``p = exp_shifted / exp_sum`` enters as per-row coefficients around three linear maps of
  ``t_x`` (a row sum against the kept exponentials, a gather of the target, a row sum
  against the class weights), so reverse mode writes ``d logits`` in one multiply pass
  plus a scatter of the target term, with no per-entry compare."""
  terms = config.terms(labels, class_weights, eps, z)
  coef_p, coef_target, coef_weight = terms.grad_coefficients(jnp.ones_like(lse), lse)
  coef_p = coef_p + _common.nan_where(bad, lse.dtype)  # bad labels: NaN gradient for the row
  # Dropped rows may hold NaN or +inf (exponentials NaN or inf): zero them by selecting,
  # in the rows and in the coefficients (an all -inf dropped row has exp_sum = 0).
  kept_exp, coef_p, coef_target, coef_weight = (
    _common.mask_rows(v, valid) for v in (exp_shifted, coef_p / exp_sum, coef_target, coef_weight)
  )
  t_x = _up(t_x)
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
    grad = jnp.where(valid[..., None], grad * softcap_slope(x, cap), 0.0)
  # Linear in t_x, upcast inside the product: the transpose writes d logits in x's dtype.
  return jnp.sum(grad * _up(t_x), axis=-1)


def _softcap_grad(config, x, lse, labels, valid, bad, class_weights, eps, z, cap):
  """``d loss / d c`` per example: ``sum_c (d loss / d z_c) (d z_c / d c)``."""
  grad = _logit_grad(config, x, lse, labels, valid, bad, class_weights, eps, z, cap)
  grad = jnp.where(valid[..., None], grad * softcap_derivatives(x, cap)[1], 0.0)
  return jnp.sum(grad, axis=-1)


# |x / c| beyond which tanh is +-1 in float64 (it rounds to 1 from about 19.1): clipping
# there changes no value and keeps 0 * inf out of the derivatives at infinite logits.
_TANH_SATURATION = 40.0


def softcap(x, cap) -> jax.Array:
  """``c tanh(x / c)`` in the compute dtype; a ``-inf`` logit becomes ``-c``, exactly.

  No clip here: ``tanh`` saturates to exactly +-1 on its own, and a clip before it slows
  the fused passes on XLA:CPU. Only the derivatives clip, to keep ``inf * 0`` out.
  """
  return cap * jnp.tanh(_up(x) / cap)


def softcap_slope(x, cap) -> jax.Array:
  """``d z / d x = 1 - tanh(x / c)^2`` of ``z = c tanh(x / c)``: 0 at ``+-inf`` without a
  clip (``tanh`` saturates to exactly +-1), so no ``[..., C]`` clip pass feeds it."""
  return 1 - jnp.square(jnp.tanh(_up(x) / cap))


def softcap_derivatives(x, cap):
  """``(d z / d x, d z / d c)`` of ``z = c tanh(x / c)``: ``1 - t^2`` and
  ``t - (x / c)(1 - t^2)`` with ``t = tanh(x / c)``; finite (0 and ``+-1``) at ``+-inf``."""
  ratio = jnp.clip(_up(x) / cap, -_TANH_SATURATION, _TANH_SATURATION)
  t = jnp.tanh(ratio)
  d_x = 1 - jnp.square(t)
  return d_x, t - ratio * d_x


def _sanitize_logits(inputs: SparseInputs) -> jax.Array:
  """Zero the dropped rows (so -inf there is harmless) and NaN the rows with bad labels."""
  x = inputs.scores
  x = jnp.where(inputs.valid[..., None], x, jnp.zeros_like(x))
  return x + _common.nan_where(inputs.bad, x.dtype)[..., None]


@_doc.shared
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

  ``-log(probs[n, labels[n]])`` per example, weighted by the target's class weight.

  .. math::
    \ell_n = -w_{y_n} \max(\log p_{n, y_n}, -100)

  The log is clamped at -100 as torch's ``binary_cross_entropy`` does, so a zero
  probability on the true class gives a large finite loss. Probabilities are used as
  given (Keras renormalises them to sum to one; xentax does not). A NaN anywhere in a
  kept row (not only at the target) makes that example's loss NaN.

  Gradient: ``d l_n / d p_{n,y} = -w_y / p_{n,y}`` (0 where the clamp is active), 0 for
  every other class.

  Args:
    probs: ``[..., C, ...]`` probabilities in ``[0, 1]``, class axis at ``axis``.
    labels: integer class indices, the per-example shape: ``probs.shape`` without
      ``axis``.
    axis: the class axis of ``probs``.
    $class_weights
    $ignore_index
    $where
    $sample_weight
    $reduction_weighted

  Returns:
    The loss, float32 (float64 for float64 probs); ``labels.shape`` for ``"none"``.

  Raises:
    TypeError / ValueError as :func:`sparse_categorical_cross_entropy_with_logits`; also
    ``ValueError`` for a concrete probability outside ``[0, 1]`` (NaN under ``jit``).

  Example:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.sparse_categorical_cross_entropy(
    ...     jnp.array([[0.2, 0.8]]), jnp.array([1])))  # doctest: +ELLIPSIS
    0.2231...

  References:
    Keras's ``SparseCategoricalCrossentropy`` (``from_logits=False``); the clamp is
    ``torch.nn.functional.binary_cross_entropy``'s.
  """
  fn_name = "sparse_categorical_cross_entropy"
  _common.check_reduction(fn_name, reduction)
  inputs = prepare_sparse(
    fn_name,
    probs,
    labels,
    axis=axis,
    class_weights=class_weights,
    ignore_index=ignore_index,
    where=where,
  )
  p = inputs.scores
  weights = _validate.sample_weights(fn_name, sample_weight, inputs.labels.shape, p.dtype)
  bad_probs = _common.check_probabilities(fn_name, p, inputs.valid, axis)
  p_y = jnp.take_along_axis(p, inputs.labels[..., None], axis=-1)[..., 0]
  p_y = jnp.where(inputs.valid, p_y, jnp.ones_like(p_y))
  # A NaN anywhere in the row (not only at the target) makes the example NaN.
  # Dropped rows stay out: a NaN there would reach the class weights' gradient (0 * NaN).
  row_bad = jnp.any(bad_probs | jnp.isnan(p), axis=-1) & inputs.valid
  p_y = p_y + _common.nan_where(inputs.bad | row_bad, p_y.dtype)
  losses = -_common.clamped_log(p_y)
  if inputs.target_weight is not None:
    losses = inputs.target_weight * losses
  return _common.reduce_losses(
    losses,
    valid=inputs.valid,
    denominator=inputs.target_weight,
    sample_weight=weights,
    reduction=reduction,
  )


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
  fn_name = "sparse_categorical_focal_loss_with_logits"
  _common.check_reduction(fn_name, reduction)
  option_bad = _validate.options(
    fn_name, gamma=gamma, label_smoothing=label_smoothing, softcap=softcap
  )
  inputs = prepare_sparse(
    fn_name,
    logits,
    labels,
    axis=axis,
    class_weights=class_weights,
    ignore_index=ignore_index,
    where=where,
    option_bad=option_bad,
  )
  weights = _validate.sample_weights(
    fn_name, sample_weight, inputs.labels.shape, inputs.scores.dtype
  )
  dtype = inputs.scores.dtype
  cap = None if softcap is None else jnp.asarray(softcap, dtype)
  eps = None
  if not _common.is_static_zero(label_smoothing):
    eps = jnp.asarray(label_smoothing, dtype)
  losses = _focal_losses(inputs, eps, jnp.asarray(gamma, dtype), cap)
  return _common.reduce_losses(
    losses,
    valid=inputs.valid,
    denominator=inputs.target_weight,
    sample_weight=weights,
    reduction=reduction,
  )


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
  losses = focal_scale(-log_p, log_1mp, gamma)
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
    recompute = inputs.scores.size > _common.SPARSE_KEEP_EXP_MAX_ENTRIES
    grad_dot = jax.checkpoint(functools.partial(_focal_grad_dot, recompute))
    t_losses = t_losses + grad_dot(inputs, t_inputs.scores, *stats, eps, gamma, cap)
  # The options (class weights, eps, gamma, the softcap), rarely moving: the value's own
  # jvp with the logits held fixed. Only the options with a tangent enter it.
  options = {
    "class_weights": (inputs.class_weights, t_inputs.class_weights),
    "target_weight": (inputs.target_weight, t_inputs.target_weight),
    "eps": (eps, t_eps),
    "gamma": (gamma, t_gamma),
    "cap": (cap, t_cap),
  }
  moving = {
    k: v for k, v in options.items() if v[0] is not None and not _common.is_symbolic_zero(v[1])
  }
  if moving:

    def value(*values):
      args = dict(zip(moving, values, strict=True))
      moved = inputs._replace(
        class_weights=args.get("class_weights", inputs.class_weights),
        target_weight=args.get("target_weight", inputs.target_weight),
      )
      return _focal_losses_and_stats(
        moved,
        args.get("eps", eps),
        args.get("gamma", gamma),
        args.get("cap", cap),
        for_options=True,
      )[0]

    primal_values = [v[0] for v in moving.values()]
    t_losses = t_losses + jax.jvp(value, primal_values, [v[1] for v in moving.values()])[1]
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
  target = focal_weight(None, p_y, log_p, gamma, one_minus_p=one_minus_p_y)
  if inputs.target_weight is not None:
    target = inputs.target_weight * target
  if eps is not None:
    target = (1 - eps) * target
  target = target + _common.nan_where(inputs.bad, target.dtype)

  def probs_and_terms(x, lse):
    z = x if cap is None else softcap(x, cap)
    log_probs = z - lse[..., None]
    probs = jnp.exp(log_probs)
    return probs, focal_weight(None, probs, log_probs, gamma) if eps is not None else None

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
    grad = grad * softcap_slope(x, cap)
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
  pieces = _common.row_pieces(num_classes)
  extra = (None,) if pieces == 1 else (None, None)  # broadcast [...] to the rows
  target = jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0]
  # A dropped row's target logit may be NaN: zeroed ([...] only), so its softcap slope
  # cannot meet a zero cotangent.
  target = jnp.where(inputs.valid, target, jnp.zeros_like(target))
  if cap is not None:
    target = _softcap_autodiff(target, cap)
  classes = _common.split_rows(jnp.arange(num_classes, dtype=labels.dtype), pieces)
  is_target = classes == labels[(..., *extra)]
  r = _others_exp_sum(pieces, _common.split_rows(x, pieces), target[(..., *extra)], is_target, cap)
  ok = jnp.all(jnp.isfinite(r) & (r > 0))
  # A bad label's row: NaN value and gradient.
  r = r + _common.nan_where(inputs.bad, r.dtype)

  def fast():
    log1p_r = jnp.log1p(r)
    return -log1p_r, jnp.log(r) - log1p_r, target + log1p_r

  def guarded():
    xs = _sanitize_logits(inputs)
    if cap is not None:
      xs = _softcap_autodiff(xs, cap)
    lse = _common.logsumexp(xs)
    target_logit = jnp.take_along_axis(xs, labels[..., None], axis=-1)[..., 0]
    is_target = jnp.arange(num_classes) == labels[..., None]
    log_1mp = _common.logsumexp(jnp.where(is_target, -jnp.inf, xs)) - lse
    return target_logit - lse, log_1mp, lse

  return lax.cond(ok, fast, guarded)


@functools.partial(jax.custom_jvp, nondiff_argnums=(0,))
def _others_exp_sum(pieces, x, shift, is_target, cap):
  """``sum_c exp(z_c - shift)`` over the classes where ``is_target`` is False, per row, with
  ``z`` the soft-capped ``x`` (``cap`` None: ``z = x``).

  A ``custom_jvp`` only so that a term that is not finite (its row sends the batch to the
  guarded form, where this sum gets a zero cotangent) has a zero tangent, not ``0 * inf``;
  elsewhere the tangent is ``sum_c e_c (dz_c - d shift)``.
  """
  z = x if cap is None else softcap(x, cap)
  return _common.row_reduce(jnp.where(is_target, 0.0, jnp.exp(z - shift)), pieces)


@_others_exp_sum.defjvp
def _others_exp_sum_jvp(pieces, primals, tangents):
  x, shift, is_target, cap = primals
  t_x, t_shift, _, t_cap = tangents
  z = x if cap is None else softcap(x, cap)
  terms = jnp.where(is_target, 0.0, jnp.exp(z - shift))
  # The target's own term is 0 whatever its logit, whose slope may be NaN.
  keep = ~is_target & jnp.isfinite(terms)

  def coefficient(slope):
    # Selected after the product (a non-finite term's slope may be NaN) and before the
    # tangent, so that the transpose multiplies a zero cotangent by 0, never by NaN.
    return jnp.where(keep, terms * slope, 0.0)

  t_terms = -coefficient(1.0) * t_shift
  if cap is None:
    t_terms = t_terms + coefficient(1.0) * t_x
  else:
    d_x, d_c = softcap_derivatives(x, cap)
    t_terms = t_terms + coefficient(d_x) * t_x + coefficient(d_c) * t_cap
  return _common.row_reduce(terms, pieces), _common.row_reduce(t_terms, pieces)


@jax.custom_jvp
def _softcap_autodiff(x, cap):
  """:func:`softcap` whose derivatives stay finite at ``+-inf`` (plain autodiff of the
  clip would meet ``inf * 0`` in the softcap's derivative)."""
  return softcap(x, cap)


@_softcap_autodiff.defjvp
def _softcap_autodiff_jvp(primals, tangents):
  x, cap = primals
  t_x, t_cap = tangents
  d_x, d_cap = softcap_derivatives(x, cap)
  return softcap(x, cap), d_x * t_x + d_cap * t_cap


def _focal_class_sum(inputs: SparseInputs, cap, gamma) -> jax.Array:
  """``sum_c w_c (1 - p_c)^gamma (-log p_c)`` per example, the focal loss's smoothing sum."""
  x = _sanitize_logits(inputs)
  if cap is not None:
    x = _softcap_autodiff(x, cap)
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
  pieces = _common.row_pieces(x.shape[-1])
  z = _common.split_rows(x, pieces)
  lse = _common.fast_lse(z, _common.row_max(z, pieces), pieces)
  terms = _focal_class_terms(
    z, lse[_common.row_axes(pieces)], gamma, _common.split_rows(weights, pieces)
  )
  fast = _common.row_reduce(terms, pieces)
  finite = jnp.all(jnp.isfinite(fast) | ignored)
  exact = lambda: _exact_focal_class_sum(x, gamma, weights)  # noqa: E731
  return lax.cond(finite, lambda: fast, exact), lse


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
  # gamma and the weights (rarely moving): the exact form's jvp with x held fixed. Only the
  # inputs with a tangent enter it: a zero tangent, instantiated, would cost a pass over
  # [..., C] of its own.
  moving = [i for i in (1, 2) if not _common.is_symbolic_zero(tangents[i])]
  if moving:

    def exact(*values):
      args = [x, gamma, weights]
      for i, value in zip(moving, values, strict=True):
        args[i] = value
      return _exact_focal_class_sum(*args)

    moved = jax.jvp(exact, [primals[i] for i in moving], [tangents[i] for i in moving])
    t_out = t_out + moved[1]
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
  b = focal_weight(None, p, log_p, gamma)
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
  lse = _common.logsumexp(x)
  z = jnp.where(jnp.isinf(x), lse[..., None], x) if hold_infinite else x
  per_class = focal_scale(lse[..., None] - z, _log1m_softmax(x, lse), gamma)
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
  largest = _common.logsumexp(jnp.where(is_max, -jnp.inf, x)) - lse
  # Double where: the largest class's p never enters log1p, so its gradient stays finite.
  p = jnp.exp(jnp.where(is_max, -jnp.inf, x - lse[..., None]))
  return jnp.where(is_max, largest[..., None], jnp.log1p(-p))


def focal_modulator(one_minus_p, gamma, power):
  """``(1 - p)^gamma``: an integer power for a static whole ``gamma`` (``power``)."""
  if power is not None:
    return lax.integer_pow(one_minus_p, power)
  return jnp.power(one_minus_p, gamma)


def focal_weight(power, p, log_p, gamma, one_minus_p=None):
  """``A = (1 - p)^g - g p log(p) (1 - p)^(g - 1)`` with its limits at ``p = 0`` and 1
  (``one_minus_p``, when given, is ``1 - p`` computed exactly by the caller)."""
  if one_minus_p is None:
    one_minus_p = -jnp.expm1(log_p)
  # -> 0 as p -> 0; the where inside the product keeps second derivatives finite at -inf.
  p_log_p = p * jnp.where(p > 0, log_p, jnp.zeros_like(log_p))
  if power is not None:
    if power == 0:
      return jnp.ones_like(p)
    second = power * p_log_p * lax.integer_pow(one_minus_p, power - 1)
  else:
    # -> 0 as p -> 1 (p log p ~ -(1 - p)), also for gamma < 1 where (1 - p)^(g - 1) is inf.
    at_one = one_minus_p > 0
    safe = jnp.where(at_one, one_minus_p, jnp.ones_like(one_minus_p))
    second = jnp.where(at_one, gamma * p_log_p * jnp.power(safe, gamma - 1), 0.0)
  return focal_modulator(one_minus_p, gamma, power) - second


def focal_scale(ce, log_1mp, gamma) -> jax.Array:
  """``(1 - p)^gamma * ce`` with ``(1 - p)^gamma = exp(gamma * log(1 - p))``.

  Exactly ``ce`` for ``gamma = 0``. Where ``ce`` is infinite (a confidently wrong
  prediction) the modulator's own gradient is 0 and would meet ``inf`` in the product rule;
  that term is dropped there, which is its limit, so the gradient stays finite.
  """
  gamma = jnp.asarray(gamma, log_1mp.dtype)
  # Double where on log(1 - p) = -inf (p = 1) only: gamma * -inf would be NaN for gamma = 0
  # (and in its gradient). There (1 - p)^gamma is 1 for gamma = 0 and 0 otherwise, with zero
  # gradient in gamma (x^g log x -> 0); elsewhere exp(gamma log(1 - p)) keeps the exact
  # gradient in gamma, also at gamma = 0. A NaN log(1 - p) is not -inf, so it stays NaN.
  certain = log_1mp == -jnp.inf
  exponent = gamma * jnp.where(certain, jnp.zeros_like(log_1mp), log_1mp)
  at_certain = jnp.where(gamma == 0, jnp.ones_like(log_1mp), jnp.zeros_like(log_1mp))
  modulator = jnp.where(certain, at_certain, jnp.exp(exponent))
  frozen = jax.lax.stop_gradient(modulator)
  finite_ce = jnp.where(jnp.isfinite(ce), ce, jnp.zeros_like(ce))
  # Value: modulator * ce. Gradient: modulator * d ce + finite_ce * d modulator.
  return frozen * ce + (modulator - frozen) * finite_ce
