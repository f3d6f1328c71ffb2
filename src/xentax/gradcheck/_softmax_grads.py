"""Closed-form gradients of the softmax (categorical) losses with respect to their inputs.

Design notes:
  * Each function takes exactly the arguments of the loss it differentiates and returns
    ``d loss / d scores`` in the scores' shape (for ``reduction="none"``, the gradient of
    the sum of the per-example losses; see :mod:`xentax.gradcheck._grad_common`).
  * Each formula is derived in its docstring from the loss's definition and shares no code
    with :mod:`xentax.losses`, so it can check it.
  * They hold where the loss is differentiable: finite logits, and probabilities whose
    logarithm is above the -100 clamp.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

from xentax.gradcheck._grad_common import (
  check_inputs,
  check_reduction,
  float_dtype,
  kept_mask,
  reduce_grad,
)

_CLAMP = -100.0  # the losses clamp log(p) at -100, as torch does; the gradient is 0 below


def _softcap(s, softcap):
  """``(z, dz/ds)``: ``z = c tanh(s / c)`` and ``1 - (z / c)^2`` (``s`` and 1 without a cap)."""
  if softcap is None:
    return s, None
  c = jnp.asarray(softcap, s.dtype)
  z = c * jnp.tanh(s / c)
  return z, 1 - jnp.square(z / c)


def _sparse_setup(scores, labels, axis, class_weights, ignore_index, where):
  dtype = float_dtype(scores)
  s = jnp.moveaxis(jnp.asarray(scores), axis, -1).astype(dtype)
  labels = jnp.asarray(labels)
  num_classes = s.shape[-1]
  kept = kept_mask(where, labels.shape)
  if ignore_index is not None:
    kept = kept & (labels != ignore_index)
  safe = jnp.where(kept, labels, 0)
  w = jnp.ones(num_classes, dtype) if class_weights is None else jnp.asarray(class_weights, dtype)
  return s, kept, jax.nn.one_hot(safe, num_classes, dtype=dtype), w, w[safe]


def sparse_categorical_cross_entropy_with_logits_grad(
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
  r"""Gradient of :func:`xentax.sparse_categorical_cross_entropy_with_logits` w.r.t. logits.

  Per example, with ``p = softmax(z)``, ``lse = logsumexp(z)``, ``W = sum_c w_c``:

  .. math::
    \ell = (1 - \epsilon) w_y (\mathrm{lse} - z_y)
      + \frac{\epsilon}{C} \sum_c w_c (\mathrm{lse} - z_c) + \lambda\, \mathrm{lse}^2

  Since ``d lse / dz = p`` and ``d z_y / dz = onehot(y)``:

  .. math::
    \frac{\partial \ell}{\partial z} = (1 - \epsilon) w_y (p - \mathrm{onehot}(y))
      + \frac{\epsilon}{C} (W p - w) + 2 \lambda\, \mathrm{lse}\, p

  With no options this is softmax regression's ``y_pred - y``. ``"mean"`` divides by
  ``sum w_{y_n}`` over kept examples (their count when unweighted); ignored and masked
  examples get 0. With ``softcap`` ``c`` the loss sees ``z = c tanh(u / c)`` of the raw
  logits ``u``, so the gradient above (at ``z``) is multiplied by ``d z / d u = 1 -
  (z / c)^2``. Sample weights ``s_n`` multiply example ``n``'s gradient by ``s_n`` and
  enter the mean's denominator as ``sum s_n w_{y_n}``
  (:func:`~xentax.gradcheck._grad_common.reduce_grad`).

  Its arguments (``logits, labels, axis, class_weights, ignore_index, label_smoothing,
  z_loss, softcap, where, sample_weight, reduction``) are as for
  :func:`xentax.sparse_categorical_cross_entropy_with_logits` (``labels`` of the per-example
  shape, ``logits.shape`` without ``axis``).

  Returns:
    ``logits.shape``, float64 for float64 logits, float32 otherwise.

  Raises:
    TypeError / ValueError: as the loss (shapes, labels out of range, options outside
      their domain, an unknown reduction).

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> xentax.gradcheck.sparse_categorical_cross_entropy_with_logits_grad(
    ...     jnp.zeros((1, 2)), jnp.array([0])).tolist()  # softmax(z) - onehot(y)
    [[-0.5, 0.5]]
  """
  fn_name = "sparse_categorical_cross_entropy_with_logits_grad"
  check_reduction(fn_name, reduction)
  logits, labels = check_inputs(
    fn_name,
    "sparse",
    logits,
    labels,
    axis=axis,
    ignore_index=ignore_index,
    where=where,
    class_weights=class_weights,
    label_smoothing=label_smoothing,
    z_loss=z_loss,
    softcap=softcap,
    sample_weight=sample_weight,
  )
  u, kept, onehot, w, w_y = _sparse_setup(logits, labels, axis, class_weights, ignore_index, where)
  # Dropped rows may hold -inf or NaN; their gradient is 0 whatever they hold.
  z, dz_du = _softcap(jnp.where(kept[..., None], u, jnp.zeros_like(u)), softcap)
  num_classes = z.shape[-1]
  eps = jnp.asarray(label_smoothing, z.dtype)
  lam = jnp.asarray(z_loss, z.dtype)
  p = jax.nn.softmax(z, axis=-1)
  lse = logsumexp(z, axis=-1)
  g = (1 - eps) * w_y[..., None] * (p - onehot)
  g = g + eps / num_classes * (jnp.sum(w) * p - w)
  g = g + 2 * lam * lse[..., None] * p
  if dz_du is not None:
    g = g * dz_du
  denominator = None if class_weights is None else w_y
  g = reduce_grad(g, kept, reduction, denominator, _sample_weight(sample_weight, kept))
  return jnp.moveaxis(g, -1, axis)


def _sample_weight(sample_weight, kept):
  if sample_weight is None:
    return None
  return jnp.broadcast_to(jnp.asarray(sample_weight), kept.shape)


def sparse_categorical_cross_entropy_grad(
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
  r"""Gradient of :func:`xentax.sparse_categorical_cross_entropy` w.r.t. the probabilities.

  ``l = -w_y max(log p_y, -100)`` depends on the target probability only:

  .. math::
    \frac{\partial \ell}{\partial p_c} = -\frac{w_y}{p_y} [c = y]
      \quad (0 \text{ where } \log p_y < -100)

  Args:
    probs, labels, axis, class_weights, ignore_index, where, sample_weight, reduction: as
      for :func:`xentax.sparse_categorical_cross_entropy`.

  Returns:
    ``probs.shape``, float64 for float64 probabilities, float32 otherwise.

  Raises:
    TypeError / ValueError: as the loss (also a probability outside ``[0, 1]``).

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> xentax.gradcheck.sparse_categorical_cross_entropy_grad(
    ...     jnp.array([[0.5, 0.5]]), jnp.array([0])).tolist()  # -1 / p_y at the label
    [[-2.0, -0.0]]
  """
  fn_name = "sparse_categorical_cross_entropy_grad"
  check_reduction(fn_name, reduction)
  probs, labels = check_inputs(
    fn_name,
    "sparse",
    probs,
    labels,
    axis=axis,
    ignore_index=ignore_index,
    where=where,
    probabilities=True,
    class_weights=class_weights,
    sample_weight=sample_weight,
  )
  p, kept, onehot, _, w_y = _sparse_setup(probs, labels, axis, class_weights, ignore_index, where)
  p_y = jnp.sum(onehot * p, axis=-1)
  active = kept & (p_y > jnp.exp(jnp.asarray(_CLAMP, p.dtype)))
  g_y = jnp.where(active, -w_y / jnp.where(active, p_y, 1), 0)
  g = reduce_grad(
    onehot * g_y[..., None],
    kept,
    reduction,
    None if class_weights is None else w_y,
    _sample_weight(sample_weight, kept),
  )
  return jnp.moveaxis(g, -1, axis)


def sparse_categorical_focal_loss_with_logits_grad(
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
  r"""Gradient of :func:`xentax.sparse_categorical_focal_loss_with_logits` w.r.t. logits.

  ``l = -w_y (1 - p_y)^g log p_y``. With ``d p_y / d z_c = p_y ([c = y] - p_c)`` and
  ``d l / d p_y = w_y [g (1 - p_y)^(g-1) log p_y - (1 - p_y)^g / p_y]``:

  .. math::
    \frac{\partial \ell}{\partial z_c} = w_y (p_c - [c = y])
      \left[ (1 - p_y)^{\gamma} - \gamma\, p_y \log p_y\, (1 - p_y)^{\gamma - 1} \right]

  ``gamma = 0`` gives the weighted cross-entropy's ``w_y (p - onehot(y))``. ``1 - p_y`` is
  computed as the sum of the other probabilities, so it keeps its digits when ``p_y`` is
  close to 1.

  With label smoothing the loss is ``sum_c a_c f_c`` with ``a = w q``,
  ``q = (1 - e) onehot(y) + e / C`` and ``f_c = -(1 - p_c)^g log p_c``. The same steps
  give ``d f_c / d z_k = (p_k - [c = k]) A_c`` with
  ``A_c = (1 - p_c)^g - g p_c log p_c (1 - p_c)^(g - 1)``, so

  .. math::
    \frac{\partial \ell}{\partial z} = p \sum_c a_c A_c - a \odot A

  (the formula above when ``e = 0``). With ``softcap`` the gradient at ``z = c tanh(u / c)``
  is multiplied by ``1 - (z / c)^2``; sample weights scale each example's gradient.

  Its arguments (``logits, labels, gamma, class_weights, ignore_index, label_smoothing,
  softcap, axis, where, sample_weight, reduction``) are as for
  :func:`xentax.sparse_categorical_focal_loss_with_logits`.

  Returns:
    ``logits.shape``, float64 for float64 logits, float32 otherwise.

  Raises:
    TypeError / ValueError: as the loss.

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> z, y = jnp.array([[2.0, 0.5, -1.0]]), jnp.array([1])
    >>> closed = xentax.gradcheck.sparse_categorical_focal_loss_with_logits_grad(z, y)
    >>> auto = jax.grad(xentax.sparse_categorical_focal_loss_with_logits)(z, y)
    >>> bool(jnp.allclose(closed, auto, atol=1e-6))
    True
  """
  fn_name = "sparse_categorical_focal_loss_with_logits_grad"
  check_reduction(fn_name, reduction)
  logits, labels = check_inputs(
    fn_name,
    "sparse",
    logits,
    labels,
    axis=axis,
    ignore_index=ignore_index,
    where=where,
    class_weights=class_weights,
    gamma=gamma,
    label_smoothing=label_smoothing,
    softcap=softcap,
    sample_weight=sample_weight,
  )
  u, kept, onehot, w, w_y = _sparse_setup(logits, labels, axis, class_weights, ignore_index, where)
  z, dz_du = _softcap(jnp.where(kept[..., None], u, jnp.zeros_like(u)), softcap)
  num_classes = z.shape[-1]
  p = jax.nn.softmax(z, axis=-1)
  log_p = z - logsumexp(z, axis=-1, keepdims=True)
  # 1 - p_c as the sum of the other probabilities: exact digits where p_c is close to 1.
  others = (1 - jnp.eye(num_classes, dtype=z.dtype)) * p[..., None, :]
  one_minus = jnp.sum(others, axis=-1)
  gamma = jnp.asarray(gamma, z.dtype)
  second = jnp.where(gamma == 0, 0, gamma * p * log_p * one_minus ** (gamma - 1))
  big_a = one_minus**gamma - second
  eps = jnp.asarray(label_smoothing, z.dtype)
  a = (1 - eps) * w_y[..., None] * onehot + eps / num_classes * w
  g = p * jnp.sum(a * big_a, axis=-1, keepdims=True) - a * big_a
  if dz_du is not None:
    g = g * dz_du
  denominator = None if class_weights is None else w_y
  g = reduce_grad(g, kept, reduction, denominator, _sample_weight(sample_weight, kept))
  return jnp.moveaxis(g, -1, axis)


def _dense_coefficients(scores, targets, axis, class_weights, label_smoothing, where):
  dtype = float_dtype(scores)
  s = jnp.moveaxis(jnp.asarray(scores), axis, -1).astype(dtype)
  t = jnp.moveaxis(jnp.asarray(targets), axis, -1).astype(dtype)
  num_classes = s.shape[-1]
  eps = jnp.asarray(label_smoothing, dtype)
  q = (1 - eps) * t + eps / num_classes
  if class_weights is not None:
    q = q * jnp.asarray(class_weights, dtype)
  return s, q, kept_mask(where, s.shape[:-1])


def categorical_cross_entropy_with_logits_grad(
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
  r"""Gradient of :func:`xentax.categorical_cross_entropy_with_logits` w.r.t. logits.

  With ``a_c = w_c q_c`` (``q = (1 - e) y + e / C``), ``u = c tanh(z / c)`` (``u = z``
  without a softcap) and ``l = -sum_c a_c log softmax(u)_c + lambda lse(u)^2
  = (sum_c a_c) lse(u) - sum_c a_c u_c + lambda lse(u)^2``, so

  .. math::
    \frac{\partial \ell}{\partial z} = \big(p (\textstyle\sum_c a_c
      + 2 \lambda\, \mathrm{lse}(u)) - a\big)\, (1 - \tanh^2(z / c))

  which for one-hot targets and no options is softmax regression's ``y_pred - y``.
  ``"mean"`` divides by the number of kept examples (their total sample weight when
  weighted).

  Its arguments (``logits, targets, axis, class_weights, label_smoothing, z_loss, softcap,
  where, sample_weight, reduction``) are as for
  :func:`xentax.categorical_cross_entropy_with_logits` (``targets`` of the logits' shape).

  Returns:
    ``logits.shape``, float64 for float64 logits, float32 otherwise.

  Raises:
    TypeError / ValueError: as the loss (shapes, targets outside ``[0, 1]``, options
      outside their domain, an unknown reduction).

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> xentax.gradcheck.categorical_cross_entropy_with_logits_grad(
    ...     jnp.zeros((1, 2)), jnp.array([[1.0, 0.0]])).tolist()
    [[-0.5, 0.5]]
  """
  fn_name = "categorical_cross_entropy_with_logits_grad"
  check_reduction(fn_name, reduction)
  check_inputs(
    fn_name,
    "dense",
    logits,
    targets,
    axis=axis,
    class_weights=class_weights,
    label_smoothing=label_smoothing,
    z_loss=z_loss,
    softcap=softcap,
    sample_weight=sample_weight,
  )
  z, a, kept = _dense_coefficients(logits, targets, axis, class_weights, label_smoothing, where)
  z = jnp.where(kept[..., None], z, jnp.zeros_like(z))
  slope = jnp.ones_like(z)
  if softcap is not None:
    cap = jnp.asarray(softcap, z.dtype)
    slope = 1 - jnp.tanh(z / cap) ** 2
    z = cap * jnp.tanh(z / cap)
  lse = logsumexp(z, axis=-1, keepdims=True)
  p = jnp.exp(z - lse)
  coef = jnp.sum(a, axis=-1, keepdims=True) + 2 * jnp.asarray(z_loss, z.dtype) * lse
  g = (p * coef - a) * slope
  g = reduce_grad(g, kept, reduction, sample_weight=sample_weight)
  return jnp.moveaxis(g, -1, axis)


def categorical_focal_loss_with_logits_grad(
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
  r"""Gradient of :func:`xentax.categorical_focal_loss_with_logits` w.r.t. logits.

  With ``a_c = alpha_c q_c``, ``m_c = (1 - p_c)^g`` and
  ``l = -sum_c a_c m_c log p_c``: ``d log p_c / d z_j = [c = j] - p_j`` and
  ``d m_c / d z_j = -g (1 - p_c)^(g - 1) p_c ([c = j] - p_j)``, so with
  ``b_c = a_c (m_c - g p_c (1 - p_c)^(g - 1) log p_c)``

  .. math::
    \frac{\partial \ell}{\partial z} = p \sum_c b_c - b

  (``g = 0``, ``alpha = 1``: the cross-entropy's ``p sum(q) - q``).

  Args:
    logits, targets, gamma, alpha, axis, label_smoothing, where, sample_weight, reduction:
      as for :func:`xentax.categorical_focal_loss_with_logits`.

  Returns:
    ``logits.shape``, float64 for float64 logits, float32 otherwise.

  Raises:
    TypeError / ValueError: as the loss.
  """
  fn_name = "categorical_focal_loss_with_logits_grad"
  check_reduction(fn_name, reduction)
  check_inputs(
    fn_name,
    "dense",
    logits,
    targets,
    axis=axis,
    label_smoothing=label_smoothing,
    gamma=gamma,
    alpha=alpha,
    sample_weight=sample_weight,
  )
  z, q, kept = _dense_coefficients(logits, targets, axis, None, label_smoothing, where)
  z = jnp.where(kept[..., None], z, jnp.zeros_like(z))
  a = q if alpha is None else q * jnp.asarray(alpha, z.dtype)
  log_p = jax.nn.log_softmax(z, axis=-1)
  p = jnp.exp(log_p)
  gamma = jnp.asarray(gamma, z.dtype)
  one_minus = 1 - p
  second = jnp.where(gamma == 0, 0, gamma * p * log_p * one_minus ** (gamma - 1))
  b = a * (one_minus**gamma - second)
  g = p * jnp.sum(b, axis=-1, keepdims=True) - b
  g = reduce_grad(g, kept, reduction, sample_weight=sample_weight)
  return jnp.moveaxis(g, -1, axis)


def categorical_cross_entropy_grad(
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
  r"""Gradient of :func:`xentax.categorical_cross_entropy` w.r.t. the probabilities.

  ``l = -sum_c a_c max(log p_c, -100)`` with ``a_c = w_c q_c``, so

  .. math::
    \frac{\partial \ell}{\partial p_c} = -\frac{a_c}{p_c}
      \quad (0 \text{ where } \log p_c < -100)

  Args:
    probs, targets, axis, class_weights, label_smoothing, where, sample_weight, reduction:
      as for :func:`xentax.categorical_cross_entropy`.

  Returns:
    ``probs.shape``, float64 for float64 probabilities, float32 otherwise.

  Raises:
    TypeError / ValueError: as the loss (also a probability outside ``[0, 1]``).

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> xentax.gradcheck.categorical_cross_entropy_grad(
    ...     jnp.array([[0.5, 0.5]]), jnp.array([[1.0, 0.0]])).tolist()  # -q / p
    [[-2.0, -0.0]]
  """
  fn_name = "categorical_cross_entropy_grad"
  check_reduction(fn_name, reduction)
  check_inputs(
    fn_name,
    "dense",
    probs,
    targets,
    axis=axis,
    probabilities=True,
    class_weights=class_weights,
    label_smoothing=label_smoothing,
    sample_weight=sample_weight,
  )
  p, a, kept = _dense_coefficients(probs, targets, axis, class_weights, label_smoothing, where)
  active = p > jnp.exp(jnp.asarray(_CLAMP, p.dtype))
  g = jnp.where(active, -a / jnp.where(active, p, 1), 0)
  g = reduce_grad(g, kept, reduction, sample_weight=sample_weight)
  return jnp.moveaxis(g, -1, axis)
