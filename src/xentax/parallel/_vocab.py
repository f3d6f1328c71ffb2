"""Cross-entropy with the vocabulary (class) axis sharded over a mesh axis.

Design notes:
  * For use inside ``jax.shard_map``: each device holds ``[..., V / P]`` logits (or a
    ``[D, V / P]`` slice of the output projection) and all the labels. The forward pass
    needs two all-reduces over the vocabulary axis, a max and one stacked sum (sum of
    exponentials, target logit, weighted logit sum); no logits are gathered.
  * The backward pass is a ``custom_vjp`` that needs no communication for the logits:
    every device knows the global log-normaliser, so ``softmax - target`` of its own
    columns is local (Megatron-LM's vocab-parallel cross-entropy, Shoeybi et al., 2019).
  * The per-example loss comes from the losses' sparse terms
    (``xentax.losses.contract.SparseOptions``) with the global number of classes, so label
    smoothing, class weights and z-loss are exactly the dense loss's.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import contract


class _Config(NamedTuple):
  axis_name: str | tuple
  batch_axis_name: str | tuple | None
  options: contract.SparseOptions  # num_classes is the whole vocabulary


@contract.loss_entry
def vocab_parallel_cross_entropy(
  logits_shard,
  labels,
  *,
  axis_name,
  batch_axis_name=None,
  class_weights=None,
  ignore_index: int | None = None,
  label_smoothing=0.0,
  z_loss=0.0,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
):
  r"""Sparse cross-entropy from logits whose class axis is sharded over ``axis_name``.

  Call inside ``jax.shard_map`` with ``logits_shard`` of shape ``[..., V / P]`` (the class
  axis last, sharded over ``axis_name``, shard ``k`` holding classes
  ``[k V / P, (k + 1) V / P)``) and the full ``labels [...]``. The result equals
  :func:`xentax.sparse_categorical_cross_entropy_with_logits` on the gathered logits,
  with the same options, in value and gradient (one exception: the options' derivatives
  at a traced ``label_smoothing = 0`` with a ``-inf`` logit in a kept row, docs/contract.md, "Errors
  and edge cases"). Without options, with ``m = pmax_k max_j z_{kj}`` and ``psum`` over
  the shards:

  .. math::
    \ell_n = m + \log \mathrm{psum}_k \sum_j e^{z_{n,kj} - m} - z_{n,y_n}

  Gradient: every shard knows ``lse(z_n)``, so its block of ``softmax(z_n) - onehot(y_n)``
  is local (with options, the dense loss's gradient restricted to the shard's columns).

  Communication: two all-reduces over ``axis_name`` in the forward pass and none in the
  backward pass (plus one over ``batch_axis_name`` for the reduction when given).

  Args:
    logits_shard: ``[..., V / P]`` this device's slice of the logits.
    labels: ``[...]`` global class indices in ``[0, V)``, the per-example shape:
      ``logits_shard.shape`` without its last axis.
    axis_name: the mesh axis the classes are sharded over.
    batch_axis_name: the mesh axis the examples are sharded over, if any: ``"sum"``,
      ``"mean"`` and ``"sum_over_batch_size"`` are then over the global batch (the mean's
      denominator is all-reduced with the sum).
    class_weights: ``[V]`` all the class weights (replicated).
    ignore_index, label_smoothing, z_loss, where, sample_weight, reduction: as in
      :func:`xentax.sparse_categorical_cross_entropy_with_logits` (``label_smoothing``
      spreads ``e / V`` over the global vocabulary; ``sample_weight`` has the local
      labels' shape, sharded with the examples over ``batch_axis_name``).

  Returns:
    The loss, replicated over ``axis_name``: float32 (float64 for float64 logits);
    ``labels.shape`` for ``"none"``.

  Raises:
    TypeError: non-float logits or float labels. ValueError: a scalar ``logits_shard``,
      labels of another shape, an unknown reduction, an ``axis_name`` or
      ``batch_axis_name`` that is not an axis of the enclosing ``shard_map``, or (on
      concrete inputs) a label out of range or an option outside its domain (NaN under
      ``jit``), as the dense loss.

  Examples:
    >>> import functools, jax, jax.numpy as jnp, xentax
    >>> from jax.sharding import AxisType, PartitionSpec as P
    >>> mesh = jax.make_mesh((1,), ("vocab",), axis_types=(AxisType.Auto,))
    >>> loss = jax.shard_map(
    ...     functools.partial(xentax.parallel.vocab_parallel_cross_entropy, axis_name="vocab"),
    ...     mesh=mesh, in_specs=(P(None, "vocab"), P()), out_specs=P())
    >>> float(loss(jnp.zeros((2, 4)), jnp.array([0, 3])))  # doctest: +ELLIPSIS
    1.386...

  References:
    Shoeybi et al., "Megatron-LM: Training Multi-Billion Parameter Language Models Using
    Model Parallelism", 2019 (vocab-parallel cross-entropy).
  """
  fn_name = "vocab_parallel_cross_entropy"
  contract.check_reduction(fn_name, reduction)
  logits_shard = contract.float_array(fn_name, "logits_shard", logits_shard)
  labels, shown = contract.integer_labels(fn_name, labels, ignore_index)
  if logits_shard.ndim == 0:
    raise ValueError(f"{fn_name}: logits_shard must have a class axis, got a scalar.")
  if logits_shard.shape[:-1] != labels.shape:
    raise ValueError(
      f"{fn_name}: labels have shape {labels.shape} but logits_shard {logits_shard.shape} "
      f"needs labels of shape {logits_shard.shape[:-1]} (the class axis is the last one)."
    )
  contract.check_num_classes(fn_name, logits_shard.shape[-1], "logits_shard's class axis")
  dtype = contract.compute_dtype(logits_shard)
  num_classes = logits_shard.shape[-1] * contract.axis_size(fn_name, "axis_name", axis_name)
  if batch_axis_name is not None:
    contract.axis_size(fn_name, "batch_axis_name", batch_axis_name)
  option_bad = contract.options(fn_name, label_smoothing=label_smoothing, z_loss=z_loss)
  prepared = contract.prepare_labels(
    fn_name,
    labels,
    num_classes=num_classes,
    class_weights=class_weights,
    ignore_index=ignore_index,
    where=where,
    dtype=dtype,
    shown=shown,
    option_bad=option_bad,
  )
  weights = contract.sample_weights(fn_name, sample_weight, labels.shape, dtype)
  x = logits_shard.astype(dtype)
  x = jnp.where(prepared.valid[..., None], x, jnp.zeros((), dtype))
  x = x + contract.nan_where(prepared.bad, dtype)[..., None]
  config = _Config(
    axis_name=axis_name,
    batch_axis_name=batch_axis_name,
    options=contract.SparseOptions.of(num_classes, label_smoothing=label_smoothing, z_loss=z_loss),
  )
  losses = _vocab_parallel(
    config,
    x,
    prepared.labels,
    prepared.class_weights,
    jnp.asarray(label_smoothing, dtype),
    jnp.asarray(z_loss, dtype),
  )
  return contract.reduce_losses(
    losses,
    valid=prepared.valid,
    denominator=prepared.target_weight,
    sample_weight=weights,
    reduction=reduction,
    axis_name=batch_axis_name,
  )


def _local_columns(config: _Config, x):
  return lax.axis_index(config.axis_name) * x.shape[-1] + jnp.arange(x.shape[-1])


def _local_weights(config: _Config, class_weights, x):
  if class_weights is None:
    return jnp.ones((x.shape[-1],), x.dtype)
  start = lax.axis_index(config.axis_name) * x.shape[-1]
  return lax.dynamic_slice_in_dim(class_weights, start, x.shape[-1])


def _terms(config: _Config, x, labels, class_weights):
  columns = _local_columns(config, x)
  local_max = lax.stop_gradient(jnp.max(x, axis=-1))
  global_max = lax.pmax(local_max, config.axis_name)  # all-reduce 1
  global_max = jnp.where(jnp.isfinite(global_max), global_max, 0.0)
  parts = [
    jnp.sum(jnp.exp(x - global_max[..., None]), axis=-1),
    jnp.sum(jnp.where(columns == labels[..., None], x, 0.0), axis=-1),
  ]
  if config.options.smoothing:
    weights = _local_weights(config, class_weights, x)
    parts.append(jnp.sum(contract.safe_mul(weights, x), axis=-1))
  sums = lax.psum(jnp.stack(parts), config.axis_name)  # all-reduce 2
  lse = global_max + jnp.log(sums[0])
  weighted_sum = sums[2] if config.options.smoothing else None
  return lse, sums[1], weighted_sum


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _vocab_parallel(config, x, labels, class_weights, eps, z):
  """Per-example losses; saved for the backward pass: the local logits and three ``[...]``
  statistics (``lse``, target logit, weighted logit sum)."""
  return _forward(config, x, labels, class_weights, eps, z)[0]


def _losses(config, lse, target, weighted_sum, labels, class_weights, eps, z):
  return config.options.terms(labels, class_weights, eps, z).loss(lse, target, weighted_sum)


def _forward(config, x, labels, class_weights, eps, z):
  lse, target, weighted_sum = _terms(config, x, labels, class_weights)
  losses = _losses(config, lse, target, weighted_sum, labels, class_weights, eps, z)
  return losses, (x, labels, class_weights, eps, z, lse, target, weighted_sum)


def _backward(config, residuals, g_loss):
  x, labels, class_weights, eps, z, lse, target, weighted_sum = residuals
  terms = config.options.terms(labels, class_weights, eps, z)
  coef_p, coef_target, coef_weight = terms.grad_coefficients(g_loss, lse)
  probs = jnp.exp(x - lse[..., None])
  is_target = _local_columns(config, x) == labels[..., None]
  d_x = coef_p[..., None] * probs - jnp.where(is_target, coef_target[..., None], 0.0)
  if config.options.smoothing:
    d_x = d_x - coef_weight[..., None] * _local_weights(config, class_weights, x)

  # Options, with the statistics held fixed (they are replicated over the vocabulary
  # axis), plus the weighted logit sum's own term d (sum_c w_c x_c) / d w_c = x_c, which
  # each shard knows for its own columns only.
  def from_options(class_weights, eps, z):
    return _losses(config, lse, target, weighted_sum, labels, class_weights, eps, z)

  d_class_weights, d_eps, d_z = jax.vjp(from_options, class_weights, eps, z)[1](g_loss)
  if config.options.smoothing and class_weights is not None:
    rows = x.reshape(-1, x.shape[-1])
    local = -jnp.dot(coef_weight.reshape(-1), rows, precision=lax.Precision.HIGHEST)
    start = lax.axis_index(config.axis_name) * x.shape[-1]
    full = contract.varying_like(jnp.zeros((config.options.num_classes,), local.dtype), local)
    full = lax.dynamic_update_slice_in_dim(full, local, start, 0)
    full = lax.psum(full, config.axis_name)
    if config.batch_axis_name is not None:  # sum before adding an invariant term to it
      full = contract.psum_if_varying(full, config.batch_axis_name)
    d_class_weights = d_class_weights + full
  if config.batch_axis_name is not None:  # each example shard holds part of these
    d_class_weights, d_eps, d_z = (
      contract.psum_if_varying(d, config.batch_axis_name) for d in (d_class_weights, d_eps, d_z)
    )
  return d_x, None, d_class_weights, d_eps, d_z


_vocab_parallel.defvjp(_forward, _backward)


@contract.loss_entry
def vocab_parallel_fused_linear_cross_entropy(
  hidden,
  weight_shard,
  labels,
  *,
  axis_name,
  batch_axis_name=None,
  bias_shard=None,
  block_size: int | None = None,
  ignore_index: int | None = None,
  class_weights=None,
  label_smoothing=0.0,
  z_loss=0.0,
  softcap: float | None = None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
  return_lse: bool = False,
):
  """:func:`xentax.fused_linear_cross_entropy` with ``weight`` sharded along the vocabulary.

  Call inside ``jax.shard_map``: ``weight_shard [D, V / P]`` (and ``bias_shard [V / P]``)
  is this device's slice over ``axis_name``; ``hidden [..., D]`` and ``labels [...]`` are
  replicated over ``axis_name`` and may be sharded over ``batch_axis_name`` (data
  parallelism). The loss is the sparse cross-entropy of ``z = softcap(hidden @ W + b)``
  with the full ``W = [W_0, ..., W_{P-1}]``, equal in value and gradient to
  :func:`xentax.fused_linear_cross_entropy` on the gathered weight. Each device runs the
  blockwise loss over its own columns; the shards are combined with two all-reduces in the
  forward pass. Gradient: with ``G = d loss / d z`` (as for the fused loss),
  ``d hidden = sum_k G_k W_k^T`` (all-reduced over ``axis_name``), ``d W_k = h^T G_k``
  (all-reduced over ``batch_axis_name``) and ``d b_k = sum_n G_{n,k}``.

  Args:
    hidden: ``[..., D]`` activations, any float dtype.
    weight_shard: ``[D, V / P]`` this device's columns of the output projection.
    labels: ``[...]`` global indices in ``[0, V)``, the per-example shape: ``hidden.shape``
      without its last axis.
    axis_name: the mesh axis the vocabulary is sharded over.
    batch_axis_name: the mesh axis the tokens are sharded over, if any.
    bias_shard: optional ``[V / P]``.
    block_size: as in :func:`xentax.fused_linear_cross_entropy`, counting local columns, in
      ``[1, V / P]``.
    class_weights: ``[V]``, replicated.
    sample_weight: the local labels' shape, sharded with them over ``batch_axis_name``; the
      mean's denominator ``sum(s_n w[y_n])`` is all-reduced over it.

  The other options (``ignore_index, label_smoothing, z_loss, softcap, where, reduction,
  return_lse``) are as in :func:`xentax.fused_linear_cross_entropy`.

  Returns:
    The loss (replicated over ``axis_name``), float32 (float64 for float64 inputs); or
    ``(loss, lse)`` with ``return_lse``.

  Raises:
    TypeError / ValueError: as :func:`xentax.fused_linear_cross_entropy`; also
      ``ValueError`` for an ``axis_name`` or ``batch_axis_name`` that is not an axis of the
      enclosing ``shard_map``.

  Examples:
    >>> import functools, jax, jax.numpy as jnp, xentax
    >>> from jax.sharding import AxisType, PartitionSpec as P
    >>> mesh = jax.make_mesh((1,), ("vocab",), axis_types=(AxisType.Auto,))
    >>> loss = jax.shard_map(
    ...     functools.partial(xentax.parallel.vocab_parallel_fused_linear_cross_entropy,
    ...                       axis_name="vocab"),
    ...     mesh=mesh, in_specs=(P(), P(None, "vocab"), P()), out_specs=P())
    >>> float(loss(jnp.ones((2, 3)), jnp.zeros((3, 4)), jnp.array([0, 3])))  # doctest: +ELLIPSIS
    1.386...
  """
  return contract.fused_linear_cross_entropy_impl(
    "vocab_parallel_fused_linear_cross_entropy",
    hidden,
    weight_shard,
    labels,
    bias=bias_shard,
    block_size=block_size,
    ignore_index=ignore_index,
    class_weights=class_weights,
    label_smoothing=label_smoothing,
    z_loss=z_loss,
    softcap=softcap,
    where=where,
    sample_weight=sample_weight,
    reduction=reduction,
    return_lse=return_lse,
    axis_name=axis_name,
    batch_axis_name=batch_axis_name,
  )
