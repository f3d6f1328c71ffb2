r"""Closed-form gradients of the NLL, poly-1 and causal-LM losses.

Design notes:
  * Written from each loss's definition, independently of :mod:`xentax.losses`.
  * The causal-LM gradient is the sparse cross-entropy's ``p - onehot(y)`` placed at the
    shifted positions, zero for the last ``shift`` positions (their logits predict
    nothing).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.gradcheck._grad_common import check_reduction, float_dtype, kept_mask, reduce_grad


def _setup(scores, labels, axis, ignore_index, where):
  dtype = float_dtype(scores)
  x = jnp.moveaxis(jnp.asarray(scores), axis, -1).astype(dtype)
  labels = jnp.asarray(labels)
  kept = kept_mask(where, labels.shape)
  if ignore_index is not None:
    kept = kept & (labels != ignore_index)
  onehot = jax.nn.one_hot(jnp.where(kept, labels, 0), x.shape[-1], dtype=dtype)
  return x, kept, onehot


def nll_loss_grad(
  log_probs,
  labels,
  *,
  axis: int = -1,
  class_weights=None,
  ignore_index: int | None = None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Gradient of :func:`xentax.nll_loss`: ``l = -w_y x_y``, so ``d l / d x = -w_y onehot(y)``.

  ``"mean"`` divides by ``sum s_n w_{y_n}`` over kept examples (``s_n`` the sample weight).

  Args:
    log_probs, labels, axis, class_weights, ignore_index, where, sample_weight, reduction:
      as for :func:`xentax.nll_loss`.

  Returns:
    ``log_probs.shape``, float64 for float64 input, float32 otherwise.

  Raises:
    ValueError: an unknown reduction (the inputs are not validated: pass what the loss
      accepts).

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> xentax.gradcheck.nll_loss_grad(
    ...     jnp.log(jnp.array([[0.5, 0.5]])), jnp.array([1])).tolist()  # -onehot(y)
    [[-0.0, -1.0]]
  """
  check_reduction("nll_loss_grad", reduction)
  x, kept, onehot = _setup(log_probs, labels, axis, ignore_index, where)
  w = jnp.ones(x.shape[-1], x.dtype) if class_weights is None else jnp.asarray(class_weights)
  w_y = jnp.sum(onehot * w.astype(x.dtype), axis=-1)
  g = -w_y[..., None] * onehot
  g = reduce_grad(
    g, kept, reduction, None if class_weights is None else w_y, sample_weight=sample_weight
  )
  return jnp.moveaxis(g, -1, axis)


def poly1_cross_entropy_with_logits_grad(
  logits,
  labels,
  *,
  epsilon=2.0,
  axis: int = -1,
  ignore_index: int | None = None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Gradient of :func:`xentax.poly1_cross_entropy_with_logits`.

  ``l = -log p_y + eps (1 - p_y)``; ``d(-log p_y)/dz = p - onehot(y)`` and
  ``d p_y / dz = p_y (onehot(y) - p)``, so

  .. math::
    \frac{\partial \ell}{\partial z} = (1 + \epsilon\, p_y)(p - \mathrm{onehot}(y))

  Args:
    logits, labels, epsilon, axis, ignore_index, where, sample_weight, reduction: as for
      :func:`xentax.poly1_cross_entropy_with_logits`.

  Returns:
    ``logits.shape``, float64 for float64 logits, float32 otherwise.

  Raises:
    ValueError: an unknown reduction (the inputs are not validated: pass what the loss
      accepts).

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> xentax.gradcheck.poly1_cross_entropy_with_logits_grad(  # (1 + 2 * 0.5)(p - onehot(y))
    ...     jnp.zeros((1, 2)), jnp.array([0])).tolist()
    [[-1.0, 1.0]]
  """
  check_reduction("poly1_cross_entropy_with_logits_grad", reduction)
  z, kept, onehot = _setup(logits, labels, axis, ignore_index, where)
  z = jnp.where(kept[..., None], z, 0.0)
  p = jax.nn.softmax(z, axis=-1)
  p_y = jnp.sum(p * onehot, axis=-1)
  g = (1 + jnp.asarray(epsilon, z.dtype) * p_y)[..., None] * (p - onehot)
  g = reduce_grad(g, kept, reduction, sample_weight=sample_weight)
  return jnp.moveaxis(g, -1, axis)


def causal_lm_cross_entropy_with_logits_grad(
  logits,
  labels,
  *,
  shift: int = 1,
  normalization: str = "token",
  ignore_index: int | None = None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Gradient of :func:`xentax.causal_lm_cross_entropy_with_logits` w.r.t. all logits.

  Position ``t < L - shift`` gets ``s (softmax(z_t) - onehot(y_{t+shift})) / D`` with
  ``s`` the token's weight (1 without ``sample_weight``; the weight at ``t + shift``) and
  ``D`` the kept tokens' total weight (``"token"``) or ``B' S_b`` (``"sequence"``: ``B'``
  sequences with positive kept weight, ``S_b`` the kept weight of sequence ``b``); the
  last ``shift`` positions get 0.

  Args:
    logits, labels, shift, normalization, ignore_index, where, sample_weight, reduction: as
      for :func:`xentax.causal_lm_cross_entropy_with_logits` (``logits [..., L, C]``,
      ``labels [..., L]``).

  Returns:
    ``logits.shape``, float64 for float64 logits, float32 otherwise.

  Raises:
    ValueError: an unknown reduction (the inputs are not validated: pass what the loss
      accepts).

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> xentax.gradcheck.causal_lm_cross_entropy_with_logits_grad(
    ...     jnp.zeros((1, 3, 2)), jnp.array([[0, 1, 0]])).tolist()
    [[[0.25, -0.25], [-0.25, 0.25], [0.0, 0.0]]]
  """
  check_reduction("causal_lm_cross_entropy_with_logits_grad", reduction)
  logits = jnp.asarray(logits)
  labels = jnp.asarray(labels)
  mask = kept_mask(where, labels.shape)[..., shift:]
  z, kept, onehot = _setup(logits[..., :-shift, :], labels[..., shift:], -1, ignore_index, mask)
  z = jnp.where(kept[..., None], z, 0.0)
  g = jax.nn.softmax(z, axis=-1) - onehot
  s = None
  if sample_weight is not None:
    s = jnp.broadcast_to(jnp.asarray(sample_weight, z.dtype), labels.shape)[..., shift:]
  if reduction == "mean" and normalization == "sequence":
    # Each sequence's weighted mean sum_t s l / sum_t s, then the mean over sequences.
    s_kept = jnp.where(kept, 1.0 if s is None else s, 0.0)
    per_seq = jnp.sum(s_kept, axis=-1, keepdims=True)
    sequences = jnp.sum(per_seq > 0).astype(z.dtype)
    g = jnp.where(kept[..., None], g * s_kept[..., None], 0.0)
    g = jnp.where(per_seq[..., None] > 0, g / jnp.where(per_seq > 0, per_seq, 1)[..., None], 0.0)
    g = jnp.where(sequences > 0, g / jnp.maximum(sequences, 1), 0.0)
  else:
    g = reduce_grad(g, kept, reduction, sample_weight=s)
  pad = [(0, 0)] * (g.ndim - 2) + [(0, shift), (0, 0)]
  return jnp.pad(g, pad)
