r"""Dense-target (one-hot or soft) categorical focal loss from logits, Keras 3's convention.

Design notes:
  * Keras 3's ``CategoricalFocalCrossentropy(from_logits=True)`` per example:
    ``-sum_c alpha_c t_c (1 - p_c)^gamma log p_c`` with ``p = softmax(z)``, the modulator
    taken per class (not only at the target), ``alpha = 0.25`` by default (a scalar or one
    value per class) and label smoothing ``t -> (1 - e) t + e / C``. Keras clips ``p`` to
    ``[1e-7, 1 - 1e-7]``; xentax does not clip: ``log p = z - lse(z)`` is exact, and
    ``1 - p = -expm1(log p)`` keeps the modulator accurate for small ``p``.
  * ``0 log 0 = 0``: a class with zero target mass contributes nothing, also where its logit
    is ``-inf``; the guard is on ``log p`` itself so its gradient stays finite.
  * Inputs, masking, bad targets and options share
    :func:`xentax.losses._categorical.prepare_logits` with the categorical cross-entropy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.losses import _categorical, _common, _validate


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

  the per-example value of Keras 3's ``CategoricalFocalCrossentropy(from_logits=True)``
  (without its clipping of ``p`` to ``[1e-7, 1 - 1e-7]``). ``gamma = 0`` and
  ``alpha = 1`` give :func:`xentax.categorical_cross_entropy_with_logits`.

  Gradient: with ``b_c = alpha_c q_c ((1 - p_c)^g - g p_c (1 - p_c)^(g - 1) log p_c)``,
  ``d l_n / d z_n = p sum_c b_c - b`` (the cross-entropy's ``p sum(q) - q`` with ``q``
  replaced by ``b``).

  Args:
    logits: ``[..., C, ...]`` unnormalised scores, class axis at ``axis``.
    targets: one-hot or soft distributions, same shape as ``logits``, entries in [0, 1].
    gamma: focusing parameter (finite, >= 0), Keras's default 2.
    alpha: balancing weight in [0, 1]: a scalar (Keras's default 0.25, as in Lin et al.)
      or ``[C]`` per-class values; None for no weighting (``alpha = 1``).
    axis: the class axis.
    label_smoothing: ``epsilon``, Keras's and torch's convention.
    where: boolean mask of the per-example shape (``logits.shape`` without ``axis``).
    sample_weight: per-example weights ``s_n``, broadcastable to the per-example shape.
    reduction: ``"none"``, ``"sum"``, ``"mean"`` (``sum(s_n l_n) / sum(s_n)`` over kept
      examples) or ``"sum_over_batch_size"`` (``sum(s_n l_n)`` / the number of kept
      examples, Keras's default).

  Returns:
    The loss, float32 (float64 for float64 logits).

  Raises:
    ValueError: shapes differ, unknown reduction, an option outside its domain, or a
    concrete target outside [0, 1] (NaN for that example under ``jit``).

  Example:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.categorical_focal_loss_with_logits(
    ...     jnp.log(jnp.array([0.2, 0.8])), jnp.array([0.0, 1.0])))  # doctest: +ELLIPSIS
    0.0022...

  References:
    Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017;
    ``keras.losses.CategoricalFocalCrossentropy``.
  """
  fn_name = "categorical_focal_loss_with_logits"
  _common.check_reduction(fn_name, reduction)
  inputs = _categorical.prepare_logits(
    fn_name,
    logits,
    targets,
    axis=axis,
    class_weights=None,
    label_smoothing=label_smoothing,
    where=where,
    sample_weight=sample_weight,
    gamma=gamma,
  )
  x = inputs.logits
  dtype = x.dtype
  valid = inputs.valid
  if valid is not None:
    # Dropped rows become zeros, so -inf or NaN there cannot leak into the gradient.
    x = jnp.where(valid[..., None], x, jnp.zeros_like(x))
  q = _categorical.coefficients(inputs.targets)
  if alpha is not None:
    alpha, nan = _alpha_vector(fn_name, alpha, x.shape[-1], dtype)
    q = q * alpha if nan is None else q * alpha + nan
  log_p = x - _common.logsumexp(x)[..., None]
  # 1 - p without cancellation for small p; its power has an exact (0) gradient at p = 1.
  modulator = jnp.power(-jnp.expm1(log_p), jnp.asarray(gamma, dtype))
  losses = -jnp.sum(_common.safe_mul(q * modulator, log_p), axis=-1)
  if valid is None:
    valid = jnp.ones(losses.shape, bool)
  return _common.reduce_losses(
    losses, valid=valid, sample_weight=inputs.sample_weight, reduction=reduction
  )
