r"""Binary (elementwise, sigmoid) cross-entropy: from probabilities, from logits, focal.

Design rules:
  * Each loss has an exact formula, guarded by selects, and a fast one, arithmetic only (on
    XLA:CPU a compare or select keeps the loss from fusing into its sum); the fast one is
    exact on finite valid inputs and makes the sum non-finite otherwise.
  * ``binary_cross_entropy``'s clamps are NaN-propagating ``max``; its labels' range is two
    plain reductions (``min``, ``max``) joined to the fast sum's finiteness test.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.losses import _common, _frame, _rows, _validate
from xentax.losses._elementwise import (
  Opaque,
  contributions,
  exact_inputs,
  fast_contributions,
  opaque,
  out_of_unit,
  prepare,
  reduce_entries,
  scalar,
  smooth,
)
from xentax.losses._focal import focal_scale


def _bce_from_logits(x, y, pos_weight=None) -> jax.Array:
  """Exact elementwise ``-(pw y log sigmoid(x) + (1 - y) log sigmoid(-x))``."""
  pos_coef = y if pos_weight is None else pos_weight * y
  return -(
    _common.safe_mul(pos_coef, jax.nn.log_sigmoid(x))
    + _common.safe_mul(1 - y, jax.nn.log_sigmoid(-x))
  )


def _fast_bce_from_logits(x, y, pos_weight, k: Opaque) -> jax.Array:
  """``pw y softplus(-x) + (1 - y) softplus(x)``, ``softplus(+-x) = max(+-x, 0) +
  log1p(exp(-|x|))``: non-negative terms; an infinite ``x`` gives NaN or ``inf``."""
  soft = jnp.log1p(jnp.exp(-jnp.abs(x)))
  pos_coef = y if pos_weight is None else pos_weight * y
  neg_coef = k.one - y
  return (
    pos_coef * jnp.maximum(-x, k.zero)
    + neg_coef * jnp.maximum(x, k.zero)
    + (pos_coef + neg_coef) * soft
  )


def _focal(x, y, gamma, alpha) -> jax.Array:
  """Exact sigmoid focal loss, its modulator in log space."""
  ce = _bce_from_logits(x, y)
  log_1mpt = _rows.logsumexp(
    jnp.stack(
      [_safe_log(y) + jax.nn.log_sigmoid(-x), _safe_log(1 - y) + jax.nn.log_sigmoid(x)],
      axis=-1,
    )
  )
  losses = focal_scale(ce, log_1mpt, gamma)
  if alpha is not None:
    # safe_mul: a class weight alpha_t of 0 on an infinite loss adds 0 (0 * inf = 0).
    losses = _common.safe_mul(alpha * y + (1 - alpha) * (1 - y), losses)
  return losses


def _fast_focal(x, y, k: Opaque) -> jax.Array:
  """``a_t (1 - p_t)^g BCE``, ``1 - p_t = y sigmoid(-x) + (1 - y) sigmoid(x)`` (no cancellation)."""
  ce = _fast_bce_from_logits(x, y, None, k)
  # 1 / (1 + exp(-x)) with the opaque 1: XLA's logistic brings its own broadcast 1.
  one_minus_pt = y * (k.one / (k.one + jnp.exp(x))) + (k.one - y) * (k.one / (k.one + jnp.exp(-x)))
  losses = ce * one_minus_pt**k.gamma
  if k.alpha is not None:
    losses = (k.alpha * y + (k.one - k.alpha) * (k.one - y)) * losses
  return losses


def _focal_grad(x, y, gamma, alpha) -> jax.Array:
  """``d focal / d x = a_t [m^g (s - y) + g m^(g - 1) s (1 - s)(1 - 2y) B]``, ``m = 1 - p_t``;
  the second term is 0 (its limit) where ``m = 0`` or ``B`` is infinite."""
  s, s_neg = jax.nn.sigmoid(x), jax.nn.sigmoid(-x)
  m = y * s_neg + (1 - y) * s
  ce = _fast_bce_from_logits(x, y, None, Opaque(0.0, 1.0, None, None, None))
  ce = jnp.where(jnp.isfinite(ce), ce, jnp.zeros_like(ce))
  positive = m > 0
  m_safe = jnp.where(positive, m, jnp.ones_like(m))
  second = gamma * m_safe ** (gamma - 1) * s * s_neg * (1 - 2 * y) * ce
  g = m**gamma * (s - y) + jnp.where(positive, second, jnp.zeros_like(second))
  if alpha is not None:
    g = (alpha * y + (1 - alpha) * (1 - y)) * g
  return g


def _safe_log(y) -> jax.Array:
  """``log y`` with ``log 0 = -inf`` and a finite (zero) gradient there."""
  positive = y > 0
  log_y = jnp.log(jnp.where(positive, y, jnp.ones_like(y)))
  return jnp.where(positive, log_y, jnp.full_like(y, -jnp.inf))


@_frame.loss(weights="binary_weights", label_smoothing="binary_label_smoothing")
def binary_cross_entropy(
  probs,
  labels,
  *,
  weights=None,
  label_smoothing=0.0,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Binary cross-entropy between labels and predicted probabilities (torch's semantics).

  .. math::
    \ell = -w \left[ y' \max(\log p, -100) + (1 - y') \max(\log(1 - p), -100) \right],
    \quad y' = y (1 - \epsilon) + \epsilon / 2

  torch's clamp at -100: ``p = 0`` with ``y = 1`` gives 100, not ``inf``; ``0 log 0 = 0``.
  ``"sum_over_batch_size"`` is torch's ``(l * s).mean()``.

  Gradient: ``d l / d p = w (p - y') / (p (1 - p))``, each term 0 where its clamp is active.

  Args:
    probs: probabilities of the positive class in [0, 1], any shape; each entry is an
      example (the per-example shape is ``probs.shape``).
    labels: same shape, hard or soft labels in [0, 1].
    $options

  $contract

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.binary_cross_entropy(jnp.array(0.8), jnp.array(1.0)))  # doctest: +ELLIPSIS
    0.2231...
  """
  fn_name = "binary_cross_entropy"
  prepared = prepare(
    fn_name,
    probs,
    labels,
    where=where,
    reduction=reduction,
    params={"weights": weights},
    scalars={"label_smoothing": label_smoothing},
    sample_weight=sample_weight,
  )
  p_raw = prepared.scores
  kept = True if prepared.valid is None else prepared.valid
  bad_probs = ((p_raw < 0) | (p_raw > 1)) & kept
  _validate.check_values(fn_name, "probs must lie in [0, 1]", p_raw, bad_probs)
  eps = scalar(label_smoothing, p_raw.dtype)

  def exact(p, y, eps, w, s, prepared=prepared):
    p, y = exact_inputs(prepared, p, y, fill=0.5, extra_bad=(p < 0) | (p > 1))
    y = smooth(y, eps)
    losses = -(y * _common.clamped_log(p) + (1 - y) * _common.clamped_log1m(p))
    return contributions(prepared, losses if w is None else losses * w, s)

  def fast(p, y, eps, w, s):
    # Minus the loss: the sum's sign is flipped once, not each entry's.
    k = opaque(p.dtype, eps)
    y = smooth(y, k.eps, k.one)
    clamp = -100 * k.one
    minus = y * jnp.maximum(jnp.log(p), clamp) + (k.one - y) * jnp.maximum(jnp.log1p(-p), clamp)
    return fast_contributions(prepared, minus if w is None else minus * w, s)

  def labels_in_range(p, y, *_):
    # A bad label on a dropped entry only costs the exact sum.
    return (jnp.min(y) >= 0) & (jnp.max(y) <= 1)

  def grad_p(p, y, eps, w, s):
    p, y = exact_inputs(prepared, p, y, fill=0.5, extra_bad=(p < 0) | (p > 1))
    y = smooth(y, eps)
    # log p <= -100 iff p <= e^-100 (no log needed); `~(p <= tiny)` keeps a NaN p NaN.
    tiny = jnp.exp(jnp.asarray(-100.0, p.dtype))
    live_p = ~(p <= tiny)
    live_q = ~(1 - p <= tiny)
    g = jnp.where(live_p, -y / jnp.where(live_p, p, 1), 0) + jnp.where(
      live_q, (1 - y) / jnp.where(live_q, 1 - p, 1), 0
    )
    return contributions(prepared, g if w is None else g * w, s)

  args = (p_raw, prepared.labels, eps, prepared.params["weights"], prepared.sample_weight)
  return reduce_entries(
    prepared, (fast, exact, grad_p), args, reduction, fast_sign=-1, fast_ok=labels_in_range
  )


@_frame.loss(weights="binary_weights", label_smoothing="binary_label_smoothing")
def binary_cross_entropy_with_logits(
  logits,
  labels,
  *,
  pos_weight=None,
  weights=None,
  label_smoothing=0.0,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Binary cross-entropy from logits (torch's ``binary_cross_entropy_with_logits``).

  .. math::
    \ell = -w \left[ p_w\, y' \log \sigma(z) + (1 - y') \log \sigma(-z) \right],
    \quad y' = y (1 - \epsilon) + \epsilon / 2

  ``+-inf`` logits give a finite gradient and a finite loss (``+inf`` only where the true
  value is infinite). ``"sum_over_batch_size"`` is torch's ``(l * s).mean()``.

  Gradient: ``d l / d z = w [(p_w y' + 1 - y') sigmoid(z) - p_w y']``; with no options,
  logistic regression's ``y_pred - y = sigmoid(z) - y``.

  Args:
    logits: any shape; each entry is an example (the per-example shape is ``logits.shape``).
    labels: same shape, hard or soft labels in [0, 1].
    pos_weight: weight ``p_w`` of the positive term, broadcastable to ``logits.shape``
      (torch: one per class along the last axis, ``num_negatives / num_positives``).
    $options

  $contract

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.binary_cross_entropy_with_logits(
    ...     jnp.log(jnp.array(4.0)), jnp.array(1.0)))  # doctest: +ELLIPSIS
    0.2231...
  """
  fn_name = "binary_cross_entropy_with_logits"
  prepared = prepare(
    fn_name,
    logits,
    labels,
    where=where,
    reduction=reduction,
    params={"pos_weight": pos_weight, "weights": weights},
    scalars={"label_smoothing": label_smoothing},
    sample_weight=sample_weight,
  )
  eps = scalar(label_smoothing, prepared.scores.dtype)

  def exact(x, y, eps, pw, w, s, prepared=prepared):
    x, y = exact_inputs(prepared, x, y, fill=0.0)
    losses = _bce_from_logits(x, smooth(y, eps), pw)
    # safe_mul: a weight of 0 on an infinite loss adds 0 (0 * inf = 0).
    return contributions(prepared, losses if w is None else _common.safe_mul(w, losses), s)

  def fast(x, y, eps, pw, w, s):
    k = opaque(x.dtype, eps)
    losses = out_of_unit(y, k) + _fast_bce_from_logits(x, smooth(y, k.eps, k.one), pw, k)
    return fast_contributions(prepared, losses if w is None else losses * w, s)

  def grad_x(x, y, eps, pw, w, s):
    x, y = exact_inputs(prepared, x, y, fill=0.0)
    y = smooth(y, eps)
    pos_coef = y if pw is None else pw * y
    g = (pos_coef + 1 - y) * jax.nn.sigmoid(x) - pos_coef
    return contributions(prepared, g if w is None else g * w, s)

  params = prepared.params
  args = (
    prepared.scores,
    prepared.labels,
    eps,
    params["pos_weight"],
    params["weights"],
    prepared.sample_weight,
  )
  return reduce_entries(prepared, (fast, exact, grad_x), args, reduction)


@_frame.loss(label_smoothing="binary_label_smoothing")
def binary_focal_loss_with_logits(
  logits,
  labels,
  *,
  gamma=2.0,
  alpha=None,
  label_smoothing=0.0,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Sigmoid focal loss (torchvision's ``sigmoid_focal_loss``), computed in log space.

  .. math::
    \ell = \alpha_t (1 - p_t)^{\gamma}\, \mathrm{BCE}(z, y'), \quad
    1 - p_t = y'\, \sigma(-z) + (1 - y')\, \sigma(z), \quad
    \alpha_t = \alpha y' + (1 - \alpha)(1 - y')

  with ``y' = y (1 - epsilon) + epsilon / 2``, smoothed before ``p_t`` and ``alpha_t`` as in
  Keras's ``BinaryFocalCrossentropy``.

  Gradient, with ``s = sigmoid(z)`` and ``m = 1 - p_t``:
  ``d l / d z = alpha_t [m^g (s - y') + g m^(g - 1) s (1 - s) (1 - 2 y') BCE]`` (the second
  term 0 where ``m = 0``).

  Args:
    logits: any shape; each entry is an example (the per-example shape is ``logits.shape``).
    labels: same shape, hard or soft labels in [0, 1].
    gamma: focusing parameter, finite and >= 0; 0 gives the (alpha-weighted) cross-entropy.
    alpha: weight of positives in [0, 1] (negatives get ``1 - alpha``), or None for no
      class balance (torchvision's ``alpha < 0``).
    $options

  $contract

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.binary_focal_loss_with_logits(
    ...     jnp.log(jnp.array(4.0)), jnp.array(1.0)))  # doctest: +ELLIPSIS
    0.00892...

  References:
    Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
  """
  fn_name = "binary_focal_loss_with_logits"
  prepared = prepare(
    fn_name,
    logits,
    labels,
    where=where,
    reduction=reduction,
    scalars={"gamma": gamma, "alpha": alpha, "label_smoothing": label_smoothing},
    sample_weight=sample_weight,
  )
  dtype = prepared.scores.dtype
  eps = scalar(label_smoothing, dtype)
  gamma = jnp.asarray(gamma, dtype)
  alpha = None if alpha is None else jnp.asarray(alpha, dtype)

  def exact(x, y, eps, gamma, alpha, s, prepared=prepared):
    x, y = exact_inputs(prepared, x, y, fill=0.0)
    return contributions(prepared, _focal(x, smooth(y, eps), gamma, alpha), s)

  def fast(x, y, eps, gamma, alpha, s):
    k = opaque(x.dtype, eps, gamma, alpha)
    losses = out_of_unit(y, k) + _fast_focal(x, smooth(y, k.eps, k.one), k)
    return fast_contributions(prepared, losses, s)

  def grad_x(x, y, eps, gamma, alpha, s):
    x, y = exact_inputs(prepared, x, y, fill=0.0)
    return contributions(prepared, _focal_grad(x, smooth(y, eps), gamma, alpha), s)

  args = (prepared.scores, prepared.labels, eps, gamma, alpha, prepared.sample_weight)
  return reduce_entries(prepared, (fast, exact, grad_x), args, reduction)
