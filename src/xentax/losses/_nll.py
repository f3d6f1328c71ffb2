r"""Negative log-likelihood on log-probabilities (torch's ``nll_loss``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.losses import _common, _validate
from xentax.losses._sparse import prepare_sparse


def nll_loss(
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
  r"""Negative log-likelihood of integer labels under given log-probabilities.

  torch's ``F.nll_loss``: the input is used as given (not renormalised), so
  ``nll_loss(log_softmax(z), y)`` is the sparse cross-entropy of ``z``.

  .. math::
    \ell_n = -w_{y_n}\, x_{n, y_n}

  ``"mean"`` divides by ``sum(w[y_n])`` over kept examples, as torch does (0 when nothing
  is kept, where torch returns NaN); a NaN anywhere in a kept row (not only at the target,
  which is all torch reads) makes that row's loss NaN. Gradient:
  ``d l_n / d x_n = -w_{y_n} onehot(y_n)``;
  ``-inf`` entries off the target contribute nothing and get a zero gradient.

  Args:
    log_probs: ``[..., C, ...]`` log-probabilities, class axis at ``axis`` (torch puts it
      at 1: pass ``axis=1`` for torch's ``[N, C, d1, ...]`` layout).
    labels: integer class indices, ``log_probs.shape`` without ``axis``.
    axis: the class axis.
    class_weights: ``[C]`` per-class weights (torch's ``weight``).
    ignore_index: label value whose examples are dropped (torch's default is -100; here
      None keeps every example).
    where: boolean mask of the labels' shape.
    sample_weight: per-example weights ``s_n >= 0`` broadcastable to the labels' shape
      (Keras's ``sample_weight``), multiplying ``l_n``.
    reduction: ``"none"`` (``s_n l_n``), ``"sum"``, ``"mean"`` (``sum s_n l_n / sum s_n
      w_{y_n}`` over kept examples: torch's ``(nll_loss(reduction="none") * s).sum() /
      (s * weight[y]).sum()``) or ``"sum_over_batch_size"`` (``sum s_n l_n`` over the
      number of kept examples: torch's ``(nll_loss(reduction="none") * s).mean()``).

  Returns:
    The loss, float32 (float64 for float64 input).

  Raises:
    TypeError: float labels, non-float input or a non-numeric ``sample_weight``.
    ValueError: shapes that do not match, an unknown reduction, or (concrete inputs) a
    label out of range or a negative or non-finite ``sample_weight`` (NaN under ``jit``).

  Example:
    >>> import jax.numpy as jnp, xentax
    >>> float(xentax.nll_loss(jnp.log(jnp.array([[0.2, 0.8]])), jnp.array([1])))
    ... # doctest: +ELLIPSIS
    0.2231...

  References:
    ``torch.nn.functional.nll_loss``.
  """
  fn_name = "nll_loss"
  _common.check_reduction(fn_name, reduction)
  inputs = prepare_sparse(
    fn_name,
    log_probs,
    labels,
    axis=axis,
    class_weights=class_weights,
    ignore_index=ignore_index,
    where=where,
  )
  x = inputs.scores
  # Dropped rows may hold -inf or NaN: select before gathering so they cannot leak.
  x = jnp.where(inputs.valid[..., None], x, jnp.zeros_like(x))
  target = jnp.take_along_axis(x, inputs.labels[..., None], axis=-1)[..., 0]
  # torch reads only the target entry; a NaN elsewhere in a kept row still makes the row's
  # loss and gradient NaN (the contract of every xentax loss): a factor of exactly 1 or NaN.
  # A bad label or option: NaN too, in value and gradient.
  row_nan = jnp.any(jnp.isnan(x), axis=-1) | inputs.bad
  losses = -target * (1 + _common.nan_where(row_nan, x.dtype))
  if inputs.target_weight is not None:
    losses = inputs.target_weight * losses
  weights = _validate.sample_weights(fn_name, sample_weight, inputs.valid.shape, x.dtype)
  return _common.reduce_losses(
    losses,
    valid=inputs.valid,
    denominator=inputs.target_weight,
    sample_weight=weights,
    reduction=reduction,
  )
