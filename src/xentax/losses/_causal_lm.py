r"""Next-token cross-entropy for causal language models: shift, mask, normalise."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.losses import _frame, _reduce, _validate
from xentax.losses._sparse import sparse_categorical_cross_entropy_with_logits
from xentax.losses._sparse_terms import prepare_labels

NORMALIZATIONS = ("token", "sequence")


@_frame.loss
def causal_lm_cross_entropy_with_logits(
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
  r"""Next-token cross-entropy: ``logits[..., t, :]`` against ``labels[..., t + shift]``.

  .. math::
    \ell_{b,t} = \mathrm{lse}(z_{b,t}) - z_{b,t,y_{b,t+s}}, \quad t = 0 \ldots L - s - 1

  ``normalization="token"``: ``sum_{b,t} l_{b,t} / N_kept`` (``F.cross_entropy`` on the
  flattened tokens); ``"sequence"``: ``mean_b (sum_t l_{b,t} / N_b)`` over the sequences with
  ``N_b > 0`` kept tokens.

  Gradient: ``d l_{b,t} / d z_{b,t} = softmax(z_{b,t}) - onehot(y_{b,t+s})`` times the
  token's factor in the reduction; the last ``shift`` positions and dropped tokens get 0.

  Per-token weights ``s`` replace counts by weight sums: ``"token"`` gives
  ``sum s l / sum s``; ``"sequence"`` the plain mean, over the sequences of positive kept
  weight, of ``sum_t s l / sum_t s``, which cancels a per-sequence weight ``[..., 1]``.

  Args:
    logits: ``[..., L, V]`` logits for every position (sequence axis -2, vocabulary last).
    labels: ``[..., L]`` token ids for the *same* positions (the inputs, typically); the
      helper shifts them.
    shift: how many positions ahead each logit predicts (1 for next-token prediction).
    normalization: ``"token"`` or ``"sequence"`` (used by ``reduction="mean"`` only).
    $options
    where: boolean mask broadcastable to the labels' shape ``[..., L]``, aligned with them
      (``where[..., t + shift]`` keeps label ``t + shift``); dropped tokens are 0 for
      ``"none"``, left out of every sum and denominator, with zero gradient.
    sample_weight: per-token weights, finite and ``>= 0``, broadcastable to ``[..., L]``
      (``[..., 1]``: one per sequence) and aligned with the labels like ``where``.
    reduction: ``"none"`` (``[..., L - shift]`` weighted per-token losses, 0 where
      dropped), ``"sum"``, ``"mean"`` (by ``normalization``) or ``"sum_over_batch_size"``
      (``sum s l`` over the number of kept tokens, whatever ``normalization``).

  Returns:
    The loss, float32 (float64 for float64 ``logits``): a scalar, or ``[..., L - shift]``
    for ``"none"``.

  Raises:
    $raises
    ValueError: also ``shift`` not an int in ``[1, L)`` or an unknown ``normalization``.

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> z = jnp.zeros((1, 3, 4))  # uniform predictions over 4 tokens
    >>> round(float(xentax.causal_lm_cross_entropy_with_logits(z, jnp.array([[0, 1, 2]]))), 4)
    1.3863

  References:
    Cut Cross-Entropy's ``shift`` option (Wijmans et al., 2024); Hugging Face's
    ``ForCausalLMLoss``.
  """
  fn_name = "causal_lm_cross_entropy_with_logits"
  _reduce.check_reduction(fn_name, reduction)
  if normalization not in NORMALIZATIONS:
    raise ValueError(
      f"{fn_name}: normalization={normalization!r} is not supported; choose one of "
      f"{NORMALIZATIONS}."
    )
  _validate.float_array(fn_name, "logits", logits)
  labels, shown = _validate.integer_labels(fn_name, labels, ignore_index)
  logits = jnp.asarray(logits)
  if logits.ndim < 2 or labels.shape != logits.shape[:-1]:
    raise ValueError(
      f"{fn_name}: logits have shape {logits.shape} and labels {labels.shape}; they must be "
      "[..., L, V] and [..., L] (labels for the same positions; the helper shifts them)."
    )
  length = labels.shape[-1]
  if not isinstance(shift, int) or not 1 <= shift < length:
    raise ValueError(f"{fn_name}: shift={shift!r} must be an int in [1, L={length}).")
  full_mask = _validate.broadcast_mask(fn_name, where, labels.shape)
  # Checked here, so that an error names this function and the label's own position; the
  # first `shift` labels are never targets.
  targets_mask = full_mask & (jnp.arange(length) >= shift)
  prepare_labels(
    fn_name,
    labels,
    num_classes=logits.shape[-1],
    class_weights=None,
    ignore_index=ignore_index,
    where=targets_mask,
    dtype=logits.dtype,
    shown=shown,
  )
  mask = full_mask[..., shift:]
  losses = sparse_categorical_cross_entropy_with_logits(
    logits[..., :-shift, :],
    # The original labels, so the cross-entropy checks (and names) them in their own dtype.
    shown[..., shift:],
    ignore_index=ignore_index,
    where=mask,
    reduction="none",
  )
  valid = mask if ignore_index is None else mask & (labels[..., shift:] != ignore_index)
  weights = _validate.sample_weights(fn_name, sample_weight, labels.shape, losses.dtype)
  if weights is not None:
    weights = weights[..., shift:]
  if reduction != "mean" or normalization == "token":
    return _reduce.reduce_losses(losses, valid=valid, sample_weight=weights, reduction=reduction)
  per_token = _reduce.reduce_losses(losses, valid=valid, sample_weight=weights, reduction="none")
  if weights is None:
    kept_weight = jnp.sum(valid, axis=-1).astype(losses.dtype)
  else:
    kept_weight = jnp.sum(jnp.where(valid, weights, 0.0), axis=-1)
  # `~(w <= 0)`, not `w > 0`: a NaN weight keeps its sequence, whose mean is then NaN.
  kept = ~(kept_weight <= 0)
  per_sequence = jnp.sum(per_token, axis=-1) / jnp.where(kept, kept_weight, 1.0)
  return _reduce.reduce_losses(per_sequence, valid=kept, reduction="mean")
