"""Closed-form gradients of the binary (sigmoid) losses with respect to their inputs.

Design notes:
  * The binary losses are elementwise, so each gradient is elementwise too: an example of
    a binary loss is one entry.
  * ``"mean"`` divides by the number of kept entries (``weights`` do not enter the
    denominator), or by the kept entries' total ``sample_weight``.
  * Nothing is shared with :mod:`xentax.losses`, so these formulas can check it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.gradcheck._grad_common import (
  check_inputs,
  check_reduction,
  float_dtype,
  kept_mask,
  reduce_grad,
)

_CLAMP = -100.0


def _setup(scores, labels, weights, where):
  dtype = float_dtype(scores)
  s = jnp.asarray(scores).astype(dtype)
  y = jnp.asarray(labels).astype(dtype)
  w = jnp.ones((), dtype) if weights is None else jnp.asarray(weights, dtype)
  return s, y, w, kept_mask(where, s.shape)


def binary_cross_entropy_grad(
  probs,
  labels,
  *,
  weights=None,
  label_smoothing=0.0,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Gradient of :func:`xentax.binary_cross_entropy` w.r.t. the probabilities.

  ``l = -w [y' max(log p, -100) + (1 - y') max(log(1 - p), -100)]`` with ``y' = y (1 - e) +
  e / 2``, so, where neither clamp is active (``y`` standing for ``y'``),

  .. math::
    \frac{\partial \ell}{\partial p} = w \left( \frac{1 - y}{1 - p} - \frac{y}{p} \right)
      = w \frac{p - y}{p (1 - p)}

  and each term is 0 where its clamp is active. Sample weights ``s`` scale it by ``s``
  (and ``"mean"`` divides by ``sum s`` over kept entries).

  Args:
    probs, labels, weights, label_smoothing, where, sample_weight, reduction: as for
      :func:`xentax.binary_cross_entropy` (``probs`` and ``labels`` of one shape).

  Returns:
    ``probs.shape``, float64 for float64 probabilities, float32 otherwise.

  Raises:
    TypeError / ValueError: as the loss (shapes, labels or probabilities outside
      ``[0, 1]``, options outside their domain, an unknown reduction).

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> xentax.gradcheck.binary_cross_entropy_grad(
    ...     jnp.array([0.5, 0.5]), jnp.array([1.0, 0.0])).tolist()
    [-1.0, 1.0]
  """
  check_reduction("binary_cross_entropy_grad", reduction)
  check_inputs(
    "binary_cross_entropy_grad",
    "binary",
    probs,
    labels,
    probabilities=True,
    weights=weights,
    label_smoothing=label_smoothing,
    sample_weight=sample_weight,
  )
  p, y, w, kept = _setup(probs, labels, weights, where)
  eps = jnp.asarray(label_smoothing, p.dtype)
  y = y * (1 - eps) + eps / 2
  tiny = jnp.exp(jnp.asarray(_CLAMP, p.dtype))
  pos = p > tiny
  neg = (1 - p) > tiny
  g = jnp.where(pos, -y / jnp.where(pos, p, 1), 0) + jnp.where(
    neg, (1 - y) / jnp.where(neg, 1 - p, 1), 0
  )
  return reduce_grad(w * g, kept, reduction, sample_weight=_sample(sample_weight, p))


def binary_cross_entropy_with_logits_grad(
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
  r"""Gradient of :func:`xentax.binary_cross_entropy_with_logits` w.r.t. the logits.

  With ``y' = y (1 - e) + e / 2``, ``s = sigmoid(z)`` and ``l = -w [p_w y' log s + (1 - y')
  log(1 - s)]``; using ``d log s / dz = 1 - s`` and ``d log(1 - s) / dz = -s``:

  .. math::
    \frac{\partial \ell}{\partial z} = w \left[ (p_w y' + 1 - y')\, s - p_w y' \right]

  which for ``p_w = w = 1`` is logistic regression's ``y_pred - y = sigmoid(z) - y``.

  Args:
    logits, labels, pos_weight, weights, label_smoothing, where, sample_weight, reduction:
      as for :func:`xentax.binary_cross_entropy_with_logits` (``logits`` and ``labels`` of
      one shape).

  Returns:
    ``logits.shape``, float64 for float64 logits, float32 otherwise.

  Raises:
    TypeError / ValueError: as the loss.

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> xentax.gradcheck.binary_cross_entropy_with_logits_grad(  # (sigmoid(0) - y) / 2
    ...     jnp.zeros(2), jnp.array([1.0, 0.0])).tolist()
    [-0.25, 0.25]
  """
  check_reduction("binary_cross_entropy_with_logits_grad", reduction)
  check_inputs(
    "binary_cross_entropy_with_logits_grad",
    "binary",
    logits,
    labels,
    pos_weight=pos_weight,
    weights=weights,
    label_smoothing=label_smoothing,
    sample_weight=sample_weight,
  )
  z, y, w, kept = _setup(logits, labels, weights, where)
  eps = jnp.asarray(label_smoothing, z.dtype)
  y = y * (1 - eps) + eps / 2
  pw = jnp.ones((), z.dtype) if pos_weight is None else jnp.asarray(pos_weight, z.dtype)
  s = jax.nn.sigmoid(z)
  g = w * ((pw * y + 1 - y) * s - pw * y)
  return reduce_grad(g, kept, reduction, sample_weight=_sample(sample_weight, z))


def binary_focal_loss_with_logits_grad(
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
  r"""Gradient of :func:`xentax.binary_focal_loss_with_logits` w.r.t. the logits.

  ``l = a_t m^g B`` with ``s = sigmoid(z)``, ``B = -(y log s + (1 - y) log(1 - s))``,
  ``m = 1 - p_t = y (1 - s) + (1 - y) s`` and ``a_t = a y + (1 - a)(1 - y)``. Since
  ``dB/dz = s - y`` and ``dm/dz = s (1 - s)(1 - 2y)``:

  .. math::
    \frac{\partial \ell}{\partial z} = a_t \left[ m^{\gamma} (s - y)
      + \gamma\, m^{\gamma - 1} s (1 - s) (1 - 2y)\, B \right]

  which holds for soft labels too (so for the smoothed ``y' = y (1 - e) + e / 2``, which
  replaces ``y`` everywhere); ``gamma = 0`` gives ``a_t (s - y)``.

  Args:
    logits, labels, gamma, alpha, label_smoothing, where, sample_weight, reduction: as for
      :func:`xentax.binary_focal_loss_with_logits` (``logits`` and ``labels`` of one shape).

  Returns:
    ``logits.shape``, float64 for float64 logits, float32 otherwise.

  Raises:
    TypeError / ValueError: as the loss.

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> z, y = jnp.array([1.5, -0.5]), jnp.array([1.0, 0.0])
    >>> closed = xentax.gradcheck.binary_focal_loss_with_logits_grad(z, y)
    >>> auto = jax.grad(xentax.binary_focal_loss_with_logits)(z, y)
    >>> bool(jnp.allclose(closed, auto, atol=1e-6))
    True
  """
  check_reduction("binary_focal_loss_with_logits_grad", reduction)
  check_inputs(
    "binary_focal_loss_with_logits_grad",
    "binary",
    logits,
    labels,
    gamma=gamma,
    alpha=alpha,
    label_smoothing=label_smoothing,
    sample_weight=sample_weight,
  )
  z, y, _, kept = _setup(logits, labels, None, where)
  eps = jnp.asarray(label_smoothing, z.dtype)
  y = y * (1 - eps) + eps / 2
  s = jax.nn.sigmoid(z)
  bce = -(y * jax.nn.log_sigmoid(z) + (1 - y) * jax.nn.log_sigmoid(-z))
  m = y * jax.nn.sigmoid(-z) + (1 - y) * s
  gamma = jnp.asarray(gamma, z.dtype)
  second = jnp.where(gamma == 0, 0, gamma * m ** (gamma - 1) * s * (1 - s) * (1 - 2 * y) * bce)
  g = m**gamma * (s - y) + second
  if alpha is not None:
    alpha = jnp.asarray(alpha, z.dtype)
    g = (alpha * y + (1 - alpha) * (1 - y)) * g
  return reduce_grad(g, kept, reduction, sample_weight=_sample(sample_weight, z))


def _sample(sample_weight, scores):
  """Sample weights broadcast to the scores' shape (an example of a binary loss is one entry)."""
  if sample_weight is None:
    return None
  return jnp.broadcast_to(jnp.asarray(sample_weight, scores.dtype), scores.shape)
