"""Fused linear + cross-entropy without the logits: the public function, ``"vocab"`` schedule.

* Per vocabulary block, ``[N]`` online log-sum-exp, target logit and weighted logit sum.
* Only those and the inputs are saved; the backward pass recomputes each block's logits.
* The last block starts at ``V - block`` and masks the overlap; the backward writes it first.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import (
  _columns,
  _common,
  _frame,
  _fused_layout,
  _fused_tokens,
  _reduce,
  _validate,
)
from xentax.losses._sparse_terms import SparseOptions, prepare_labels

# The column cap keeps a small batch from turning one block into the full logits.
_AUTO_BLOCK_ELEMENTS = 1 << 24
_AUTO_BLOCK_MAX_COLUMNS = 8192


class _Config(NamedTuple):
  """Static settings of one fused call (hashable: a ``custom_vjp`` nondiff argument)."""

  block_size: int
  num_blocks: int
  vocab_size: int  # columns of `weight` here (a shard's when the vocabulary is sharded)
  options: SparseOptions  # num_classes is the whole vocabulary
  softcap: bool  # logits are soft-capped (the cap itself is an array argument)
  axis_name: str | tuple | None = None  # mesh axis the vocabulary is sharded over
  batch_axis_name: str | tuple | None = None  # mesh axis the tokens are sharded over


def auto_block_size(num_tokens: int, vocab_size: int) -> int:
  """At most 2^24 logits and 8192 columns, a multiple of 128, at most ``vocab_size``."""
  block = max(128, (_AUTO_BLOCK_ELEMENTS // max(num_tokens, 1)) // 128 * 128)
  return min(block, _AUTO_BLOCK_MAX_COLUMNS, vocab_size)


@_frame.loss(reduction="reduction_weighted")
def fused_linear_cross_entropy(
  hidden,
  weight,
  labels,
  *,
  bias=None,
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
  schedule: str = "auto",
  chunk_size: int | None = None,
):
  r"""Sparse cross-entropy of ``hidden @ weight + bias`` without materialising the logits.

  Equals ``sparse_categorical_cross_entropy_with_logits(hidden @ weight + bias, labels,
  ...)`` with the same options, in value and gradients, while holding only a slice of the
  ``[N, V]`` logits at a time. The classes are the ``V`` columns of ``weight`` (``C = V``).

  .. math::
    z = \mathrm{softcap}(h W + b), \quad
    \ell_n = (1 - \epsilon)\, w_{y_n} (\mathrm{lse}(z_n) - z_{n,y_n})
      + \frac{\epsilon}{V} \sum_c w_c (\mathrm{lse}(z_n) - z_{n,c})
      + \lambda_z \mathrm{lse}(z_n)^2

  Gradient: with ``p_n = softmax(z_n)`` and ``G_n = d l_n / d z_n = (1 - e) w_{y_n} (p_n -
  onehot(y_n)) + (e / V) (sum(w) p_n - w) + 2 lambda_z lse(z_n) p_n``, each row times its
  reduction factor, ``d hidden = G W^T``, ``d weight = h^T G`` and ``d bias = sum_n G_n``;
  a softcap multiplies ``G`` by ``1 - (z / c)^2`` first. Every option's gradient is exact.

  Schedules (``schedule``), the same loss and gradients in two orders:

  * ``"tokens"``: chunks of ``chunk_size`` tokens with their full ``[chunk_size, V]``
    logits; the gradients are formed in the forward pass, three matmuls as for full
    logits (Liger-Kernel's scheme). Scalar reductions only; a cotangent on ``lse`` costs
    one more pass, and a 16-bit weight adds a float32 ``[D, V]`` ``d weight`` accumulator.
  * ``"vocab"``: blocks of ``block_size`` columns with an online log-sum-exp; the backward
    pass recomputes each block's logits, four matmuls (Cut Cross-Entropy's scheme). Every
    reduction, and a sharded vocabulary
    (:func:`xentax.parallel.vocab_parallel_fused_linear_cross_entropy`).
  * ``"auto"`` (default): ``"tokens"`` on the CPU backend, where one matmul fewer wins;
    ``"vocab"`` on accelerators, where the extra matmul is cheap and the ``[chunk_size,
    V]`` buffers are not; also ``"vocab"`` for ``reduction="none"``, for a ``block_size``
    given without a ``chunk_size``, inside ``shard_map``, and for a 16-bit weight whose
    float32 accumulator (``4 D V`` bytes) exceeds 256 MiB.

  Peak memory grows linearly with ``chunk_size`` (``"tokens"``) or ``block_size``
  (``"vocab"``), on top of O(N D); a larger slice means fewer, wider matmuls, faster only
  until it outgrows the cache. The defaults hold no more than full logits do.

  Sharded inputs: on a mesh with Explicit axes, tokens sharded (``hidden`` ``P(<tokens>,
  None)``) and ``weight`` sharded over the vocabulary (``P(None, <vocab>)``) run each
  device's share under ``jit``, ``"vocab"`` schedule (``block_size`` counts a shard's
  columns); collectives are all-reduces of ``[N]`` statistics, ``d hidden``, ``d weight``
  and ``d bias``, never a gather. Inside a user's ``shard_map`` the loss is that of the
  device's tokens, and a replicated input's gradient is summed over the devices.

  Args:
    hidden: ``[..., D]`` activations, any float dtype.
    weight: ``[D, V]`` output projection (flax ``Dense`` kernel layout; pass
      ``embedding.T`` for a tied head).
    labels: ``[...]`` integer targets in ``[0, V)``, the per-example shape:
      ``hidden.shape`` without its last axis.
    bias: optional ``[V]``.
    block_size: vocabulary columns per block of ``"vocab"``, in ``[1, V]``; None picks at
      most 2^24 logits and 8192 columns, a multiple of 128.
    $options
    return_lse: also return the per-token ``lse(z)``, of the labels' shape (0 for dropped
      tokens), so a z-loss can be logged without a second pass.
    schedule: ``"auto"``, ``"tokens"`` or ``"vocab"`` (see above).
    chunk_size: tokens per chunk of ``"tokens"``; None keeps a chunk at 2^24 logits and
      512 rows at most (a multiple of 8 rows).

  Returns:
    The loss, float32 (float64 for float64 ``hidden``): a scalar, or ``labels.shape`` for
    ``"none"``; ``(loss, lse)`` with ``return_lse=True``.

  Raises:
    $raises
    ValueError: also a ``block_size`` outside ``[1, V]``, an unknown ``schedule``, or
      ``schedule="tokens"`` with ``reduction="none"``.
    TypeError: also a non-integer ``block_size``, or forward-mode differentiation
      (``jax.jvp``), which a ``custom_vjp`` does not support.

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> h = jax.random.normal(jax.random.key(0), (8, 16))
    >>> w = jax.random.normal(jax.random.key(1), (16, 1000)) / 4
    >>> y = jnp.arange(8)
    >>> fused = xentax.fused_linear_cross_entropy(h, w, y, block_size=256)
    >>> dense = xentax.sparse_categorical_cross_entropy_with_logits(h @ w, y)
    >>> bool(jnp.allclose(fused, dense, rtol=1e-5))
    True

  References:
    Wijmans et al., "Cut Your Losses in Large-Vocabulary Language Models", 2024;
    Liger-Kernel's ``FusedLinearCrossEntropy``.
  """
  name = "fused_linear_cross_entropy"
  core = functools.partial(
    fused_linear_cross_entropy_impl,
    name,
    block_size=block_size,
    ignore_index=ignore_index,
    reduction=reduction,
    return_lse=return_lse,
    schedule=schedule,
    chunk_size=chunk_size,
  )
  options = {
    "bias": bias,
    "class_weights": class_weights,
    "label_smoothing": label_smoothing,
    "z_loss": z_loss,
    "softcap": softcap,
    "where": where,
    "sample_weight": sample_weight,
  }
  layout = _fused_layout.explicit_layout(name, hidden, weight)
  if layout is None:
    _fused_layout.warn_on_auto_mesh(name)
    return core(hidden, weight, labels, **options)
  _reduce.check_reduction(name, reduction)
  hidden, weight, labels, _ = _check_head(name, hidden, weight, labels, ignore_index)
  _check_rest(name, hidden, weight, None, labels, None, None)  # the global shapes
  per_token = reduction == "none"
  return _fused_layout.run(
    name, layout, core, hidden, weight, labels, options, per_token=per_token, return_lse=return_lse
  )


def fused_linear_cross_entropy_impl(
  fn_name,
  hidden,
  weight,
  labels,
  *,
  bias,
  block_size,
  ignore_index,
  class_weights,
  label_smoothing,
  z_loss,
  softcap,
  where,
  reduction,
  return_lse,
  sample_weight=None,
  axis_name=None,
  batch_axis_name=None,
  schedule="vocab",
  chunk_size=None,
):
  """:func:`fused_linear_cross_entropy`, optionally inside ``shard_map`` with ``weight``
  sharded along the vocabulary over ``axis_name`` and tokens over ``batch_axis_name``."""
  _reduce.check_reduction(fn_name, reduction)
  hidden, weight, labels, shown = _check_head(fn_name, hidden, weight, labels, ignore_index)
  schedule = _fused_tokens.choose_schedule(
    fn_name,
    schedule,
    reduction=reduction,
    weight=weight,
    sharded=axis_name is not None or batch_axis_name is not None,
    block_size=block_size,
    chunk_size=chunk_size,
  )
  bias, num_classes = _check_rest(fn_name, hidden, weight, bias, labels, axis_name, batch_axis_name)
  vocab_size = weight.shape[1]
  if block_size is None:
    block_size = auto_block_size(int(jnp.size(labels)), vocab_size)
  block_size = _validate.block_size(fn_name, block_size, vocab_size)
  option_bad = _validate.options(
    fn_name, label_smoothing=label_smoothing, z_loss=z_loss, softcap=softcap
  )
  dtype = _common.compute_dtype(jnp.result_type(hidden, weight))
  prepared = prepare_labels(
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
  weights = _validate.sample_weights(fn_name, sample_weight, labels.shape, dtype)
  h = hidden.reshape(-1, hidden.shape[-1])
  options = (label_smoothing, z_loss, softcap)
  if schedule == "tokens":
    # The token chunks sanitize their own rows: no [N, D] copy of the hidden states.
    flat = None if weights is None else weights.reshape(-1)
    loss, lse = _tokens_schedule(h, weight, bias, prepared, options, flat, reduction, chunk_size)
  else:
    # Dropped rows become zeros (so inf/NaN there cannot leak); bad labels make their row NaN.
    h = jnp.where(prepared.valid.reshape(-1)[:, None], h, jnp.zeros((), h.dtype))
    h = h + _common.nan_where(prepared.bad.reshape(-1), h.dtype)[:, None]
    config = _Config(
      block_size=block_size,
      num_blocks=-(-vocab_size // block_size),
      vocab_size=vocab_size,
      options=SparseOptions.of(num_classes, label_smoothing=label_smoothing, z_loss=z_loss),
      softcap=softcap is not None,
      axis_name=axis_name,
      batch_axis_name=batch_axis_name,
    )
    loss, lse = _vocab_schedule(config, h, weight, bias, prepared, options, weights, reduction)
  if return_lse:
    lse = jnp.where(prepared.valid, lse.reshape(labels.shape), jnp.zeros((), lse.dtype))
    return loss, lse
  return loss


def _check_head(fn_name, hidden, weight, labels, ignore_index):
  """``hidden [..., D]``, ``weight [D, V]`` and the labels (checked, and as shown)."""
  hidden = _validate.float_array(fn_name, "hidden", hidden)
  weight = _validate.float_array(fn_name, "weight", weight)
  labels, shown = _validate.integer_labels(fn_name, labels, ignore_index)
  if weight.ndim != 2 or hidden.ndim < 1 or hidden.shape[-1] != weight.shape[0]:
    raise ValueError(
      f"{fn_name}: hidden has shape {hidden.shape} and weight {weight.shape}; they must be "
      "[..., D] and [D, V] (flax Dense kernel layout; pass embedding.T for a tied head)."
    )
  return hidden, weight, labels, shown


def _check_rest(fn_name, hidden, weight, bias, labels, axis_name, batch_axis_name):
  """Checks the labels' shape, ``V``, the mesh axes and ``bias [V]``; ``(bias, total V)``."""
  if labels.shape != hidden.shape[:-1]:
    raise ValueError(
      f"{fn_name}: labels have shape {labels.shape} but hidden {hidden.shape} needs labels "
      f"of shape {hidden.shape[:-1]}."
    )
  vocab_size = weight.shape[1]
  _validate.check_num_classes(fn_name, vocab_size, "weight's vocabulary axis (V)")
  shards = 1 if axis_name is None else _validate.axis_size(fn_name, "axis_name", axis_name)
  if batch_axis_name is not None:
    _validate.axis_size(fn_name, "batch_axis_name", batch_axis_name)
  if bias is not None:
    bias = _validate.float_array(fn_name, "bias", bias)
    if bias.shape != (vocab_size,):
      raise ValueError(f"{fn_name}: bias has shape {bias.shape}; it must be ({vocab_size},).")
  return bias, vocab_size * shards


def _tokens_schedule(h, weight, bias, prepared, options, weights, reduction, chunk_size):
  """``(loss, lse)`` of the token-chunked schedule (:mod:`._fused_tokens`)."""
  target_weight = prepared.target_weight
  return _fused_tokens.tokens_loss(
    h,
    weight,
    bias,
    prepared.labels.reshape(-1),
    prepared.valid.reshape(-1),
    prepared.bad.reshape(-1),
    prepared.class_weights,
    None if target_weight is None else target_weight.reshape(-1),
    *options,
    weights,
    reduction=reduction,
    chunk_size=chunk_size,
  )


def _vocab_schedule(config, h, weight, bias, prepared, options, weights, reduction):
  """``(loss, lse)`` of the vocabulary-blocked schedule (:func:`_fused`)."""
  dtype = _common.compute_dtype(jnp.result_type(h, weight))
  label_smoothing, z_loss, softcap = options
  losses, lse = _fused(
    config,
    h,
    weight,
    bias,
    prepared.labels.reshape(-1),
    prepared.class_weights,
    jnp.asarray(label_smoothing, dtype),
    jnp.asarray(z_loss, dtype),
    None if softcap is None else jnp.asarray(softcap, dtype),
  )
  loss = _reduce.reduce_losses(
    losses.reshape(prepared.valid.shape),
    valid=prepared.valid,
    denominator=prepared.target_weight,
    sample_weight=weights,
    reduction=reduction,
    axis_name=config.batch_axis_name,
  )
  return loss, lse


class _Block(NamedTuple):
  start: jax.Array  # first local column of the block
  w_block: jax.Array  # [D, block]
  logits: jax.Array  # [N, block], after the softcap
  raw: jax.Array  # [N, block], before the softcap (the same array without one)
  columns: jax.Array  # [block] global column indices
  fresh: jax.Array  # [block] bool: not already covered by the previous block


def _block(config: _Config, h, weight, bias, cap, i) -> _Block:
  """Logits of vocabulary block ``i`` (see :class:`_Block`)."""
  dtype = _common.compute_dtype(jnp.result_type(h, weight))
  start = jnp.minimum(i * config.block_size, config.vocab_size - config.block_size)
  w_block = _columns.slice_columns(weight, start, config.block_size)  # never upcast
  raw = jnp.dot(h, w_block, preferred_element_type=dtype)
  if bias is not None:
    raw = raw + lax.dynamic_slice_in_dim(bias, start, config.block_size).astype(dtype)
  logits = cap * jnp.tanh(raw / cap) if config.softcap else raw
  local_columns = start + jnp.arange(config.block_size)
  fresh = local_columns >= i * config.block_size  # not already covered by the previous block
  return _Block(start, w_block, logits, raw, _column_offset(config) + local_columns, fresh)


def _column_offset(config: _Config):
  """Index of this shard's first vocabulary column (0 unless the vocabulary is sharded)."""
  if config.axis_name is None:
    return 0
  return lax.axis_index(config.axis_name) * config.vocab_size


def _block_weights(config: _Config, class_weights, start, dtype):
  """``[block]`` class weights of the block starting at local column ``start`` (ones if None)."""
  if class_weights is None:
    return jnp.ones((config.block_size,), dtype)
  start = _column_offset(config) + start
  return lax.dynamic_slice_in_dim(class_weights, start, config.block_size)


def _forward_terms(config: _Config, h, weight, bias, labels, class_weights, cap):
  """One pass over the blocks: log-normaliser, target logit, weighted logit sum."""
  dtype = _common.compute_dtype(jnp.result_type(h, weight))
  num_tokens = h.shape[0]

  def body(i, carry):
    running_max, running_sum, target, weighted_sum = carry
    start, _, logits, _, columns, fresh = _block(config, h, weight, bias, cap, i)
    masked = jnp.where(fresh, logits, -jnp.inf)
    new_max = jnp.maximum(running_max, jnp.max(masked, axis=1))
    running_sum = running_sum * jnp.exp(running_max - new_max) + jnp.sum(
      jnp.exp(masked - new_max[:, None]), axis=1
    )
    hit = (columns == labels[:, None]) & fresh
    target = target + jnp.sum(jnp.where(hit, logits, 0.0), axis=1)
    if config.options.smoothing:
      w_block = _block_weights(config, class_weights, start, dtype)
      terms = jnp.where(fresh, _common.safe_mul(w_block, logits), 0.0)
      weighted_sum = weighted_sum + jnp.sum(terms, axis=1)
    return new_max, running_sum, target, weighted_sum

  zeros = jnp.zeros((num_tokens,), dtype)
  init = (jnp.full((num_tokens,), -jnp.inf, dtype), zeros, zeros, zeros)
  init = _common.varying_like(init, h, weight, bias, labels, class_weights, cap)
  running_max, running_sum, target, weighted_sum = lax.fori_loop(0, config.num_blocks, body, init)
  if config.axis_name is not None:
    # Two all-reduces combine the shards: the max, then the rescaled sums together.
    global_max = lax.pmax(running_max, config.axis_name)
    partial_sums = jnp.stack(
      [running_sum * jnp.exp(running_max - global_max), target, weighted_sum]
    )
    running_sum, target, weighted_sum = lax.psum(partial_sums, config.axis_name)
    running_max = global_max
  lse = running_max + jnp.log(running_sum)
  return lse, target, weighted_sum


def _losses(config, lse, target, weighted_sum, labels, class_weights, eps, z):
  """Per-token losses from the ``[N]`` row statistics of :func:`_forward_terms`."""
  return config.options.terms(labels, class_weights, eps, z).loss(lse, target, weighted_sum)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused(config, h, weight, bias, labels, class_weights, eps, z, cap):
  """Per-token losses and ``lse``; saves the inputs and three ``[N]`` vectors, no logits."""
  lse, target, weighted_sum = _forward_terms(config, h, weight, bias, labels, class_weights, cap)
  return _losses(config, lse, target, weighted_sum, labels, class_weights, eps, z), lse


def _fused_fwd(config, h, weight, bias, labels, class_weights, eps, z, cap):
  lse, target, weighted_sum = _forward_terms(config, h, weight, bias, labels, class_weights, cap)
  losses = _losses(config, lse, target, weighted_sum, labels, class_weights, eps, z)
  residuals = (h, weight, bias, labels, class_weights, eps, z, cap, lse, target, weighted_sum)
  return (losses, lse), residuals


def _fused_bwd(config, residuals, cotangents):
  h, weight, bias, labels, class_weights, eps, z, cap, lse, target, weighted_sum = residuals
  g_loss, g_lse = cotangents
  dtype = lse.dtype
  terms = config.options.terms(labels, class_weights, eps, z)
  coef_p, coef_target, coef_weight = terms.grad_coefficients(g_loss, lse, g_lse)

  # Options with the [N] statistics fixed; d (sum_c w_c z_c) / d w_c = z_c needs the
  # logits and is accumulated block by block below.
  def from_options(class_weights, eps, z):
    return _losses(config, lse, target, weighted_sum, labels, class_weights, eps, z)

  d_class_weights, d_eps, d_z = jax.vjp(from_options, class_weights, eps, z)[1](g_loss)
  track_weights = config.options.smoothing and class_weights is not None

  def body(j, carry):
    d_h, d_weight, d_bias, d_local_weights, d_cap = carry
    i = config.num_blocks - 1 - j  # last block first: see the module notes
    blk = _block(config, h, weight, bias, cap, i)
    probs = jnp.exp(blk.logits - lse[:, None])
    d_logits = coef_p[:, None] * probs - jnp.where(
      blk.columns == labels[:, None], coef_target[:, None], 0.0
    )
    if config.options.smoothing:
      d_logits = d_logits - coef_weight[:, None] * _block_weights(
        config, class_weights, blk.start, dtype
      )
    d_logits = jnp.where(blk.fresh, d_logits, 0.0)
    if track_weights:  # d loss / d w_c += -(e / C) sum_n g_n z_nc
      d_w = -jnp.dot(coef_weight, jnp.where(blk.fresh, blk.logits, 0.0))
      d_local_weights = lax.dynamic_update_slice_in_dim(d_local_weights, d_w, blk.start, 0)
    if config.softcap:
      # z = c tanh(u / c): dz/du = 1 - t^2 and dz/dc = t - (u / c)(1 - t^2), t = z / c.
      t = blk.logits / cap
      d_cap = d_cap + jnp.sum(d_logits * (t - blk.raw / cap * (1 - jnp.square(t))))
      d_logits = d_logits * (1 - jnp.square(t))
    d_h = d_h + jnp.dot(
      d_logits.astype(blk.w_block.dtype), blk.w_block.T, preferred_element_type=dtype
    )
    d_w_block = jnp.dot(h.T, d_logits.astype(h.dtype), preferred_element_type=dtype)
    d_weight = _columns.update_columns(d_weight, d_w_block, blk.start)
    if d_bias is not None:
      d_bias = lax.dynamic_update_slice_in_dim(
        d_bias, jnp.sum(d_logits, axis=0).astype(bias.dtype), blk.start, axis=0
      )
    return d_h, d_weight, d_bias, d_local_weights, d_cap

  init = _common.varying_like(
    _zero_grads(config, h, weight, bias, track_weights, dtype),
    *(h, weight, bias, labels, class_weights, cap, coef_p, coef_target),
  )
  d_h, d_weight, d_bias, d_local_weights, d_cap = lax.fori_loop(0, config.num_blocks, body, init)
  if track_weights:
    d_local_weights = _gather_class_weights(config, d_local_weights)
    # Summed over the token shards before it meets the (already summed) invariant term.
    d_class_weights = d_class_weights + _common.cotangent_like(d_local_weights, class_weights)
  grads = _sum_over_shards(config, d_h, d_weight, d_bias, d_class_weights, d_eps, d_z, d_cap)
  d_h, d_weight, d_bias, d_class_weights, d_eps, d_z, d_cap = grads
  d_cap = None if d_cap is None else d_cap.astype(cap.dtype)
  grads = (d_h.astype(h.dtype), d_weight, d_bias, None, d_class_weights, d_eps, d_z, d_cap)
  return tuple(map(_common.cotangent_like, grads, residuals[:8]))  # residuals start as inputs


def _zero_grads(config: _Config, h, weight, bias, track_weights: bool, dtype):
  """The backward loop's initial ``(d h, d weight, d bias, d class weights, d cap)``."""
  return (
    jnp.zeros(h.shape, dtype),
    jnp.zeros_like(weight),
    None if bias is None else jnp.zeros_like(bias),
    jnp.zeros((config.vocab_size,), dtype) if track_weights else None,
    jnp.zeros((), dtype) if config.softcap else None,
  )


def _gather_class_weights(config: _Config, d_local_weights):
  """``d class_weights`` from each vocabulary shard's columns, summed over token shards."""
  if config.axis_name is not None:  # each vocabulary shard holds its own columns
    full = jnp.zeros((config.options.num_classes,), d_local_weights.dtype)
    full = _common.varying_like(full, d_local_weights)
    full = lax.dynamic_update_slice_in_dim(full, d_local_weights, _column_offset(config), 0)
    d_local_weights = lax.psum(full, config.axis_name)
  if config.batch_axis_name is not None:  # sum before adding an invariant term to it
    d_local_weights = _common.psum_if_varying(d_local_weights, config.batch_axis_name)
  return d_local_weights


def _sum_over_shards(config: _Config, d_h, d_weight, d_bias, d_class_weights, d_eps, d_z, d_cap):
  """The gradients summed over the shards that hold part of them (nothing unsharded)."""
  if config.axis_name is not None:  # each vocabulary shard holds part of d hidden
    d_h = lax.psum(d_h, config.axis_name)
    d_cap = None if d_cap is None else lax.psum(d_cap, config.axis_name)
  if config.batch_axis_name is not None:  # each token shard holds part of d weight
    d_weight = lax.psum(d_weight, config.batch_axis_name)
    d_bias = None if d_bias is None else lax.psum(d_bias, config.batch_axis_name)
    # jax.vjp already summed a replicated option's cotangent; only varying ones remain.
    d_class_weights, d_eps, d_z, d_cap = (
      _common.psum_if_varying(d, config.batch_axis_name)
      for d in (d_class_weights, d_eps, d_z, d_cap)
    )
  return d_h, d_weight, d_bias, d_class_weights, d_eps, d_z, d_cap


_fused.defvjp(_fused_fwd, _fused_bwd)
