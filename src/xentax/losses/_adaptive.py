r"""Adaptive softmax (Grave et al. 2017): a head over the frequent classes and one token per
cluster of rarer classes, each cluster a smaller softmax behind a down-projection."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from xentax.losses import _common, _frame, _reduce, _validate
from xentax.losses._fused import fused_linear_cross_entropy
from xentax.losses._sparse_terms import prepare_labels


@_frame.loss
def adaptive_softmax_cross_entropy(
  hidden,
  head_weight,
  tail_weights,
  labels,
  *,
  cutoffs,
  head_bias=None,
  ignore_index: int | None = None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Adaptive softmax cross-entropy, ``torch.nn.AdaptiveLogSoftmaxWithLoss``'s loss.

  The classes are split by ``cutoffs = [c_0 < c_1 < ... < c_{K-1}] < V``: the shortlist
  ``[0, c_0)`` and clusters ``i = 1..K`` of ``[c_{i-1}, c_i)`` (``c_K = V``). The head scores
  the shortlist and one token per cluster, ``log p_head = log_softmax(h W_head + b)``; cluster
  ``i`` scores its classes with ``log p_i = log_softmax(h P_i O_i)``. A class ``y`` in
  cluster ``i`` has

  .. math::
    \log p(y) = \log p_{head}(c_0 + i - 1) + \log p_i(y - c_{i-1}),

  a shortlist class ``\log p_{head}(y)``; the loss is ``-\log p(y_n)``. The probabilities of
  all ``V`` classes sum to 1 (:func:`adaptive_log_softmax` gives them).

  Gradient: the sparse cross-entropy's ``softmax - onehot`` for the head (target: ``y`` or
  its cluster's token) and, for an example in cluster ``i``, for cluster ``i``'s logits;
  through ``h W_head`` and ``h P_i O_i`` by the chain rule. Each cluster's term is
  :func:`xentax.fused_linear_cross_entropy` of ``h P_i`` and ``O_i`` over the examples in it
  (static shapes: its logits are computed for every example, a block at a time, never
  stored whole).

  Args:
    hidden: ``[..., D]`` hidden states.
    head_weight: ``[D, c_0 + K]``: torch's ``head.weight`` transposed.
    tail_weights: ``K`` pairs ``(P_i [D, d_i], O_i [d_i, n_i])``, ``n_i = c_i - c_{i-1}``:
      torch's ``tail[i][0].weight`` and ``tail[i][1].weight``, transposed.
    labels: integer classes in ``[0, V)``, ``hidden.shape[:-1]`` (the per-example shape).
    cutoffs: torch's ``cutoffs``: increasing positive ints below ``V``.
    head_bias: ``[c_0 + K]``, or None (torch's ``head_bias=False``).
    $options

  $contract

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> k = jax.random.split(jax.random.key(0), 4)
    >>> h = jax.random.normal(k[0], (3, 8))
    >>> head = jax.random.normal(k[1], (8, 4 + 2))  # 4 frequent classes, 2 clusters
    >>> tails = [(jax.random.normal(k[2], (8, 2)), jnp.ones((2, 6))),   # classes 4..9
    ...          (jax.random.normal(k[3], (8, 2)), jnp.ones((2, 10)))]  # classes 10..19
    >>> y = jnp.array([0, 7, 19])
    >>> loss = xentax.adaptive_softmax_cross_entropy(h, head, tails, y, cutoffs=[4, 10])
    >>> log_p = xentax.adaptive_log_softmax(h, head, tails, cutoffs=[4, 10])
    >>> bool(jnp.allclose(loss, -jnp.mean(log_p[jnp.arange(3), y]), rtol=1e-5))
    True

  References:
    Grave et al., "Efficient softmax approximation for GPUs", ICML 2017;
    ``torch.nn.AdaptiveLogSoftmaxWithLoss``.
  """
  name = "adaptive_softmax_cross_entropy"
  _reduce.check_reduction(name, reduction)
  labels, shown = _validate.integer_labels(name, labels, ignore_index)
  hidden, head_weight, tails, head_bias, cuts = _check(
    name, hidden, head_weight, tail_weights, cutoffs, head_bias
  )
  if labels.shape != hidden.shape[:-1]:
    raise ValueError(
      f"{name}: labels have shape {labels.shape} but hidden {hidden.shape} needs labels of "
      f"shape {hidden.shape[:-1]}."
    )
  dtype = _common.compute_dtype(jnp.result_type(hidden, head_weight))
  prepared = prepare_labels(
    name,
    labels,
    num_classes=cuts[-1],
    class_weights=None,
    ignore_index=ignore_index,
    where=where,
    dtype=dtype,
    shown=shown,
  )
  weights = _validate.sample_weights(name, sample_weight, labels.shape, dtype)
  # Dropped rows become zeros, so inf/NaN there reaches neither the loss nor a gradient.
  h = jnp.where(prepared.valid[..., None], hidden, jnp.zeros((), hidden.dtype))
  losses = _losses(h, head_weight, tails, head_bias, cuts, prepared.labels)
  losses = jnp.where(prepared.valid, losses, 0.0) + _common.nan_where(prepared.bad, losses.dtype)
  return _reduce.reduce_losses(
    losses, valid=prepared.valid, sample_weight=weights, reduction=reduction
  )


@_frame.loss
def adaptive_log_softmax(hidden, head_weight, tail_weights, *, cutoffs, head_bias=None):
  r"""The ``[..., V]`` log-probabilities of the adaptive softmax
  (``AdaptiveLogSoftmaxWithLoss.log_prob``): the head's for the shortlist, and for a class of
  cluster ``i`` its cluster token's plus its own within the cluster (see
  :func:`adaptive_softmax_cross_entropy`, which takes the same arguments).

  Args:
    hidden: ``[..., D]`` hidden states.
    head_weight: ``[D, c_0 + K]``.
    tail_weights: ``K`` pairs ``(P_i [D, d_i], O_i [d_i, n_i])``.
    cutoffs: increasing positive ints below ``V``.
    head_bias: ``[c_0 + K]``, or None.

  Returns:
    ``[..., V]`` log-probabilities, float32 (float64 for float64 inputs); each row's
    probabilities sum to 1.

  Raises:
    TypeError: a non-float ``hidden`` or weight.
    ValueError: shapes that do not fit the cutoffs, or cutoffs that are not positive and
      increasing, named with the shapes each cluster needs.

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> h = jax.random.normal(jax.random.key(0), (2, 8))
    >>> tails = [(jnp.ones((8, 2)), jnp.ones((2, 6)))]  # one cluster: classes 4..9
    >>> log_p = xentax.adaptive_log_softmax(h, jnp.ones((8, 5)), tails, cutoffs=[4])
    >>> log_p.shape, bool(jnp.allclose(jnp.exp(log_p).sum(-1), 1.0))
    ((2, 10), True)
  """
  name = "adaptive_log_softmax"
  hidden, head_weight, tails, head_bias, cuts = _check(
    name, hidden, head_weight, tail_weights, cutoffs, head_bias
  )
  dtype = _common.compute_dtype(jnp.result_type(hidden, head_weight))
  head = jax.nn.log_softmax(_head_logits(hidden, head_weight, head_bias, dtype), axis=-1)
  shortlist = cuts[0]
  pieces = [head[..., :shortlist]]
  for i, (proj, out) in enumerate(tails):
    z = jnp.dot(_projected(hidden, proj, out, dtype), out, preferred_element_type=dtype)
    pieces.append(head[..., shortlist + i, None] + jax.nn.log_softmax(z, axis=-1))
  return jnp.concatenate(pieces, axis=-1)


def _head_logits(h, head_weight, head_bias, dtype):
  logits = jnp.dot(h, head_weight, preferred_element_type=dtype)
  return logits if head_bias is None else logits + head_bias.astype(dtype)


def _projected(h, proj, out, dtype):
  """``h P_i``, accumulated in ``dtype``, in ``O_i``'s dtype for the next matmul."""
  return jnp.dot(h, proj, preferred_element_type=dtype).astype(out.dtype)


def _losses(h, head_weight, tails, head_bias, cuts, labels):
  """``-log p(y)`` of in-range labels: the head's cross-entropy at ``y`` or its cluster's
  token, plus the cluster's at ``y - c_{i-1}`` where ``y`` is in cluster ``i``."""
  dtype = _common.compute_dtype(jnp.result_type(h, head_weight))
  logits = _head_logits(h, head_weight, head_bias, dtype)
  shortlist = cuts[0]
  head_target = labels
  losses = jnp.zeros(labels.shape, dtype)
  for i, (proj, out) in enumerate(tails):
    inside = (labels >= cuts[i]) & (labels < cuts[i + 1])
    head_target = jnp.where(inside, shortlist + i, head_target)
    local = jnp.where(inside, labels - cuts[i], 0)
    projected = _projected(h, proj, out, dtype)
    cluster = fused_linear_cross_entropy(projected, out, local, where=inside, reduction="none")
    losses = losses + cluster.astype(dtype)
  target = jnp.take_along_axis(logits, head_target[..., None], axis=-1)[..., 0]
  return losses + jax.nn.logsumexp(logits, axis=-1) - target


def _check(name, hidden, head_weight, tail_weights, cutoffs, head_bias):
  """Checked inputs and the cutoffs with ``V`` appended; ``ValueError`` naming the shapes."""
  hidden = _validate.float_array(name, "hidden", hidden)
  head_weight = _validate.float_array(name, "head_weight", head_weight)
  if isinstance(cutoffs, int) or not all(isinstance(c, int | np.integer) for c in cutoffs):
    raise ValueError(f"{name}: cutoffs={cutoffs!r} must be a sequence of ints (torch's cutoffs).")
  cutoffs = tuple(int(c) for c in cutoffs)
  if not cutoffs or cutoffs[0] < 1 or any(a >= b for a, b in itertools.pairwise(cutoffs)):
    raise ValueError(f"{name}: cutoffs={list(cutoffs)} must be positive and increasing.")
  try:
    tails = tuple((p, o) for p, o in tail_weights)
  except (TypeError, ValueError):
    raise ValueError(f"{name}: tail_weights must be a sequence of (proj, out) pairs.") from None
  if len(tails) != len(cutoffs):
    raise ValueError(
      f"{name}: {len(cutoffs)} cutoffs make {len(cutoffs)} clusters, but tail_weights has "
      f"{len(tails)} (proj, out) pairs."
    )
  tails = tuple(
    (
      _validate.float_array(name, f"tail_weights[{i}][0]", p),
      _validate.float_array(name, f"tail_weights[{i}][1]", o),
    )
    for i, (p, o) in enumerate(tails)
  )
  dim = hidden.shape[-1] if hidden.ndim else None
  want_head = (dim, cutoffs[0] + len(cutoffs))
  if hidden.ndim < 1 or head_weight.shape != want_head:
    raise ValueError(
      f"{name}: hidden has shape {hidden.shape} and head_weight {head_weight.shape}; they must "
      f"be [..., D] and [D, shortlist + clusters] = {want_head}."
    )
  vocab = cutoffs[-1] + (tails[-1][1].shape[-1] if tails[-1][1].ndim == 2 else 0)
  bounds = (*cutoffs, vocab)
  for i, (p, o) in enumerate(tails):
    size = bounds[i + 1] - bounds[i]
    if (
      p.ndim != 2
      or o.ndim != 2
      or p.shape[0] != dim
      or o.shape[0] != p.shape[1]
      or (o.shape[1] != size)
    ):
      raise ValueError(
        f"{name}: tail_weights[{i}] has shapes {p.shape} and {o.shape}; cluster {i + 1} holds "
        f"classes [{bounds[i]}, {bounds[i + 1]}) and needs [D, d] and [d, {size}] (D = {dim})."
      )
  if vocab <= cutoffs[-1]:
    raise ValueError(f"{name}: the last cutoff {cutoffs[-1]} must be below V = {vocab}.")
  if head_bias is not None:
    head_bias = _validate.float_array(name, "head_bias", head_bias)
    if head_bias.shape != want_head[1:]:
      raise ValueError(
        f"{name}: head_bias has shape {head_bias.shape}; it must be {want_head[1:]}."
      )
  return hidden, head_weight, tails, head_bias, bounds
