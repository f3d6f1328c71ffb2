"""The fused loss's ``"vocab"`` schedule: the logits a vocabulary block at a time.

* Per vocabulary block, ``[N]`` online log-sum-exp, target logit and weighted logit sum.
* Only those and the inputs are saved; the backward pass recomputes each block's logits.
* The last block starts at ``V - block`` and masks the overlap; the backward writes it first.
* On an Auto mesh the same rule runs as two partitioned ops (:mod:`._fused_auto`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import _columns, _common, _fused_auto, _rows
from xentax.losses._sparse_terms import SparseOptions

# The column cap keeps a small batch from turning one block into the full logits.
_AUTO_BLOCK_ELEMENTS = 1 << 24
_AUTO_BLOCK_MAX_COLUMNS = 8192


class Config(NamedTuple):
  """Static settings of one fused call (hashable: a ``custom_vjp`` nondiff argument)."""

  block_size: int
  num_blocks: int
  vocab_size: int  # columns of `weight` here (a shard's when the vocabulary is sharded)
  options: SparseOptions  # num_classes is the whole vocabulary
  softcap: bool  # logits are soft-capped (the cap itself is an array argument)
  axis_name: str | tuple | None = None  # mesh axis the vocabulary is sharded over
  batch_axis_name: str | tuple | None = None  # mesh axis the tokens are sharded over
  auto_block: bool = False  # block_size was chosen by auto_block_size (a share chooses its own)


def auto_block_size(num_tokens: int, vocab_size: int) -> int:
  """At most 2^24 logits and 8192 columns, a multiple of 128, at most ``vocab_size``."""
  block = max(128, (_AUTO_BLOCK_ELEMENTS // max(num_tokens, 1)) // 128 * 128)
  return min(block, _AUTO_BLOCK_MAX_COLUMNS, vocab_size)


class _Block(NamedTuple):
  start: jax.Array  # first local column of the block
  w_block: jax.Array  # [D, block]
  logits: jax.Array  # [N, block], after the softcap
  raw: jax.Array  # [N, block], before the softcap (the same array without one)
  columns: jax.Array  # [block] global column indices
  fresh: jax.Array  # [block] bool: not already covered by the previous block


def _block(config: Config, h, weight, bias, cap, i) -> _Block:
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


def _column_offset(config: Config):
  """Index of this shard's first vocabulary column (0 unless the vocabulary is sharded)."""
  if config.axis_name is None:
    return 0
  return lax.axis_index(config.axis_name) * config.vocab_size


def _block_weights(config: Config, class_weights, start, dtype):
  """``[block]`` class weights of the block starting at local column ``start`` (ones if None)."""
  if class_weights is None:
    return jnp.ones((config.block_size,), dtype)
  start = _column_offset(config) + start
  return lax.dynamic_slice_in_dim(class_weights, start, config.block_size)


def _forward_terms(config: Config, h, weight, bias, labels, class_weights, cap):
  """One pass over the blocks: log-normaliser, target logit, weighted logit sum."""
  dtype = _common.compute_dtype(jnp.result_type(h, weight))
  num_tokens = h.shape[0]

  def body(i, carry):
    running_max, running_sum, target, weighted_sum = carry
    start, _, logits, _, columns, fresh = _block(config, h, weight, bias, cap, i)
    masked = jnp.where(fresh, logits, -jnp.inf)
    new_max = jnp.maximum(running_max, jnp.max(masked, axis=1))
    shift = _rows.finite_shift(new_max)
    running_sum = running_sum * jnp.exp(_rows.finite_shift(running_max) - shift) + jnp.sum(
      jnp.exp(masked - shift[:, None]), axis=1
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
    rescale = jnp.exp(_rows.finite_shift(running_max) - _rows.finite_shift(global_max))
    partial_sums = jnp.stack([running_sum * rescale, target, weighted_sum])
    running_sum, target, weighted_sum = lax.psum(partial_sums, config.axis_name)
    running_max = global_max
  lse = _rows.finite_shift(running_max) + jnp.log(running_sum)
  return lse, target, weighted_sum


def _losses(config, lse, target, weighted_sum, labels, class_weights, eps, z):
  """Per-token losses from the ``[N]`` row statistics of :func:`_forward_terms`."""
  return config.options.terms(labels, class_weights, eps, z).loss(lse, target, weighted_sum)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def vocab_loss(config, h, weight, bias, labels, class_weights, eps, z, cap):
  """Per-token losses and ``lse``; saves the inputs and three ``[N]`` vectors, no logits."""
  lse, target, weighted_sum = _forward_terms(config, h, weight, bias, labels, class_weights, cap)
  return _losses(config, lse, target, weighted_sum, labels, class_weights, eps, z), lse


def _vocab_loss_fwd(config, h, weight, bias, labels, class_weights, eps, z, cap):
  lse, target, weighted_sum = _forward_terms(config, h, weight, bias, labels, class_weights, cap)
  losses = _losses(config, lse, target, weighted_sum, labels, class_weights, eps, z)
  residuals = (h, weight, bias, labels, class_weights, eps, z, cap, lse, target, weighted_sum)
  return (losses, lse), residuals


def _vocab_loss_bwd(config, residuals, cotangents):
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


def _zero_grads(config: Config, h, weight, bias, track_weights: bool, dtype):
  """The backward loop's initial ``(d h, d weight, d bias, d class weights, d cap)``."""
  return (
    jnp.zeros(h.shape, dtype),
    jnp.zeros_like(weight),
    None if bias is None else jnp.zeros_like(bias),
    jnp.zeros((config.vocab_size,), dtype) if track_weights else None,
    jnp.zeros((), dtype) if config.softcap else None,
  )


def _gather_class_weights(config: Config, d_local_weights):
  """``d class_weights`` from each vocabulary shard's columns, summed over token shards."""
  if config.axis_name is not None:  # each vocabulary shard holds its own columns
    full = jnp.zeros((config.options.num_classes,), d_local_weights.dtype)
    full = _common.varying_like(full, d_local_weights)
    full = lax.dynamic_update_slice_in_dim(full, d_local_weights, _column_offset(config), 0)
    d_local_weights = lax.psum(full, config.axis_name)
  if config.batch_axis_name is not None:  # sum before adding an invariant term to it
    d_local_weights = _common.psum_if_varying(d_local_weights, config.batch_axis_name)
  return d_local_weights


def _sum_over_shards(config: Config, d_h, d_weight, d_bias, d_class_weights, d_eps, d_z, d_cap):
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


vocab_loss.defvjp(_vocab_loss_fwd, _vocab_loss_bwd)

# On an Auto mesh: the inputs and outputs of the two partitioned ops, by role.
_NAME = "fused_linear_cross_entropy"
_INPUTS: tuple[str, ...] = ("hidden", "weight", "bias", "labels", "class_weights")
_INPUTS += ("label_smoothing", "z_loss", "softcap")
_STATS = ("lse", "target", "weighted_sum")
_TOKENWISE = ("labels", "losses", *_STATS, "g_loss", "g_lse")


def _roles(rank: int) -> tuple:
  """Each array's factors for tokens of ``rank`` axes: one factor per token axis, so a
  sharded sequence axis is cut, not gathered by a flattening."""
  tokens = tuple(f"n{i}" for i in range(rank))
  return (
    *((k, (*tokens, "d")) for k in ("hidden", "d_hidden")),
    *((k, ("d", "v")) for k in ("weight", "d_weight")),
    *((k, ("v",)) for k in ("bias", "d_bias")),
    *((k, tokens) for k in _TOKENWISE),
    *((k, None) for k in _INPUTS[4:]),
    *((f"d_{k}", None) for k in _INPUTS[4:]),
  )


def _share_config(config: Config, shards: _fused_auto.Shards, hidden, weight) -> Config:
  """One device's share: its own columns, its own automatic block size."""
  vocab = weight.shape[1]
  auto = auto_block_size(hidden.shape[0], vocab)
  block = auto if config.auto_block else min(config.block_size, vocab)
  return config._replace(
    block_size=block, num_blocks=-(-vocab // block), vocab_size=vocab, axis_name=shards.vocab
  )


def _forward_share(config: Config, shards, **arrays):
  tokens = arrays["labels"].shape  # this device's, unflattened
  h = arrays["hidden"].reshape(-1, arrays["hidden"].shape[-1])
  labels = arrays["labels"].reshape(-1)
  weight, bias, class_weights, eps, z, cap = (
    arrays.get(k)
    for k in ("weight", "bias", "class_weights", "label_smoothing", "z_loss", "softcap")
  )
  config = _share_config(config, shards, h, weight)
  lse, target, weighted_sum = _forward_terms(config, h, weight, bias, labels, class_weights, cap)
  losses = _losses(config, lse, target, weighted_sum, labels, class_weights, eps, z)
  out = {"losses": losses, "lse": lse, "target": target, "weighted_sum": weighted_sum}
  return {k: v.reshape(tokens) for k, v in out.items()}


def _backward_share(config: Config, shards, *, g_loss, g_lse, **arrays):
  hidden_shape = arrays["hidden"].shape  # this device's, unflattened
  flat = {k: v.reshape(-1) for k, v in arrays.items() if k in _TOKENWISE}
  arrays = {**arrays, **flat, "hidden": arrays["hidden"].reshape(-1, hidden_shape[-1])}
  config = _share_config(config, shards, arrays["hidden"], arrays["weight"])
  residuals = tuple(arrays.get(k) for k in _INPUTS + _STATS)
  grads = _vocab_loss_bwd(config, residuals, (g_loss.reshape(-1), g_lse.reshape(-1)))
  grads = {f"d_{k}": d for k, d in zip(_INPUTS, grads, strict=True) if d is not None}
  grads["d_hidden"] = grads["d_hidden"].reshape(hidden_shape)
  if shards.tokens is None:
    return grads
  # Each token share holds part of every gradient but its own rows'.
  return {k: d if k == "d_hidden" else lax.psum(d, shards.tokens) for k, d in grads.items()}


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def vocab_loss_partitioned(config, h, weight, bias, labels, class_weights, eps, z, cap):
  """:func:`vocab_loss` as partitioned ops."""
  inputs = (h, weight, bias, labels, class_weights, eps, z, cap)
  return _partitioned_fwd(config, *inputs)[0]


def _partitioned_fwd(config, *inputs):
  outputs = ("losses", *_STATS)
  roles = _roles(inputs[0].ndim - 1)
  call = _fused_auto.Call(_NAME, _forward_share, config, _INPUTS, outputs, roles)
  out = _fused_auto.run(call, dict(zip(_INPUTS, inputs, strict=True)))
  return (out["losses"], out["lse"]), (inputs, tuple(out[k] for k in _STATS))


def _partitioned_bwd(config, residuals, cotangents):
  inputs, stats = residuals
  names = (*_INPUTS, *_STATS, "g_loss", "g_lse")
  arrays = dict(zip(names, (*inputs, *stats, *cotangents), strict=True))
  grads = tuple(f"d_{k}" for k, x in zip(_INPUTS, inputs, strict=True) if x is not None)
  grads = tuple(k for k in grads if k != "d_labels")
  roles = _roles(inputs[0].ndim - 1)
  call = _fused_auto.Call(_NAME, _backward_share, config, names, grads, roles)
  out = _fused_auto.run(call, arrays)
  return tuple(out.get(f"d_{k}") for k in _INPUTS)


vocab_loss_partitioned.defvjp(_partitioned_fwd, _partitioned_bwd)
