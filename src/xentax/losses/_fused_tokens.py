r"""Fused linear + cross-entropy by token chunks: the ``"tokens"`` schedule.

* A chunk's ``[chunk, V]`` logits are the only logits buffer; the last chunk overlaps, not pads.
* Dropped rows are masked on ``[chunk]`` results and ``d logits``, never by an ``[N, D]`` copy.
* The loss is a scalar: the forward rule forms every gradient, the backward rule scales them.
* ``symbolic_zeros``: the gradients of unperturbed inputs are never formed.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.sharding import AxisType

from xentax.losses import _common, _fused_auto, _reduce, _rows
from xentax.losses._columns import slice_columns
from xentax.losses._sparse_terms import SparseOptions

# Temporaries flat in V; a chunk of more rows outgrows the CPU caches and runs slower.
_AUTO_CHUNK_ELEMENTS = 1 << 24
_AUTO_CHUNK_MAX_ROWS = 512
# d W columns per inner step: as fast as one whole update, with bounded temporaries.
_COLUMN_BLOCK = 8192
_WHOLE_UPDATE_ELEMENTS = 1 << 18


class TokensConfig(NamedTuple):
  """Static settings of one token-chunked call (hashable: a ``custom_vjp`` nondiff arg)."""

  chunk_size: int
  num_chunks: int
  num_tokens: int  # the chunks cover them; the last may overlap the one before it
  column_block: int
  options: SparseOptions
  softcap: bool  # a softcap value is passed (it is a differentiable argument)


def auto_chunk_size(num_tokens: int, vocab_size: int, dim: int = 0) -> int:
  """At most 2^24 logits and 512 rows, a multiple of 8 rows; where a chunk's ``1.5 V + 4 D``
  values a row outweigh the full logits, one chunk of every row (or, past 2^24 logits,
  equal chunks that fit)."""
  chunk = max(8, (_AUTO_CHUNK_ELEMENTS // max(vocab_size, 1)) // 8 * 8)
  chunk = max(1, min(chunk, _AUTO_CHUNK_MAX_ROWS, num_tokens))
  logits = num_tokens * vocab_size
  per_row = 3 * vocab_size // 2 + 4 * dim
  if chunk < num_tokens and chunk * per_row > logits:
    if logits <= _AUTO_CHUNK_ELEMENTS:
      return num_tokens
    num_chunks = -(-num_tokens // max(1, logits // per_row))
    chunk = -(-num_tokens // num_chunks)
    chunk = max(8, min(-(-chunk // 8) * 8, num_tokens))
  return chunk


def column_block(chunk_size: int, dim: int, vocab_size: int) -> int:
  """Columns per ``d W`` update: at most 8192 and ``V``, and a ``[D, block]`` product of at
  most half a chunk's logits (multiples of 8) unless ``D V <= 2^18``."""
  if dim * vocab_size <= _WHOLE_UPDATE_ELEMENTS:
    return min(vocab_size, _COLUMN_BLOCK)
  block = max(8, (chunk_size * vocab_size // (2 * max(dim, 1))) // 8 * 8)
  return min(block, _COLUMN_BLOCK, vocab_size)


def tokens_loss(
  h,
  weight,
  bias,
  labels,
  valid,
  bad,
  class_weights,
  target_weight,
  label_smoothing,
  z_loss,
  softcap,
  sample_weight=None,
  *,
  reduction: str,
  chunk_size: int | None = None,
):
  """``(loss, lse [N])`` of the prepared, flattened inputs (``reduction`` not ``"none"``).

  ``valid``: the kept rows (a dropped row of ``h`` may hold anything); ``bad``: kept rows
  whose label was out of range (NaN loss); ``target_weight``: ``w[y]`` or None; Python 0.0
  skips the smoothing or z-loss term.
  """
  dtype = _common.compute_dtype(jnp.result_type(h, weight))
  num_tokens, vocab_size = h.shape[0], weight.shape[1]
  if chunk_size is None:
    chunk_size = auto_chunk_size(num_tokens, vocab_size, h.shape[1])
  chunk_size = max(1, min(chunk_size, num_tokens))
  num_chunks = max(1, -(-num_tokens // chunk_size))
  row_nan = _common.nan_where(bad, dtype)
  if not num_tokens:
    # The loop body slices a chunk even when it runs no iterations: one dropped row.
    h = jnp.zeros((1, h.shape[1]), h.dtype)
    labels, valid, row_nan = jnp.zeros(1, labels.dtype), jnp.zeros(1, bool), jnp.zeros(1, dtype)
    if sample_weight is not None:
      sample_weight = jnp.zeros(1, sample_weight.dtype)
  config = TokensConfig(
    chunk_size=chunk_size,
    num_chunks=num_chunks,
    num_tokens=max(num_tokens, 1),
    column_block=column_block(chunk_size, h.shape[1], vocab_size),
    options=SparseOptions.of(vocab_size, label_smoothing=label_smoothing, z_loss=z_loss),
    softcap=softcap is not None,
  )
  total, lse = _tokens(
    config,
    h,
    weight,
    bias,
    labels,
    valid,
    row_nan,
    class_weights,
    jnp.asarray(label_smoothing, dtype),
    jnp.asarray(z_loss, dtype),
    None if softcap is None else jnp.asarray(softcap, dtype),
    sample_weight,
  )
  lse = lse[:num_tokens]
  if reduction == "sum":
    return total, lse
  # The mean as `_reduce.reduce_losses` takes it: 0 with zero gradient when nothing is kept.
  valid = valid[:num_tokens]
  if sample_weight is not None:
    sample_weight = sample_weight[:num_tokens]
    target_weight = sample_weight if target_weight is None else sample_weight * target_weight
  if reduction == "sum_over_batch_size" or target_weight is None:
    denom = jnp.sum(valid, dtype=dtype)
  else:
    denom = jnp.sum(jnp.where(valid, target_weight, jnp.zeros_like(target_weight)))
  loss = _reduce.mean_of(total, denom)
  return loss, lse


class _Chunk(NamedTuple):
  """One chunk of tokens: its rows, logits and statistics."""

  start: jax.Array  # its first row: the last chunk overlaps its predecessor, not padded
  fresh: jax.Array  # [C] bool: rows no earlier chunk covered
  h: jax.Array  # [C, D], dropped rows zero
  labels: jax.Array  # [C]
  valid: jax.Array  # [C] bool
  sample_weight: jax.Array | None  # [C]
  raw: jax.Array  # [C, V] h W + b (before the softcap)
  tanh: jax.Array | None  # [C, V] tanh(raw / cap) with a softcap
  logits: jax.Array  # [C, V] z
  exp: jax.Array  # [C, V] exp(z - max)
  sum_exp: jax.Array  # [C]
  nan: jax.Array  # [C]: 0, or NaN for a bad label
  lse: jax.Array  # [C]
  target: jax.Array  # [C] z_y


def _chunk(
  config: TokensConfig, i, h, weight, bias, labels, valid, row_nan, softcap, sample_weight=None
) -> _Chunk:
  """Chunk ``i``'s rows, full-vocabulary logits and row statistics (see :class:`_Chunk`)."""
  dtype = _common.compute_dtype(jnp.result_type(h, weight))
  start = jnp.minimum(i * config.chunk_size, config.num_tokens - config.chunk_size)
  fresh = start + jnp.arange(config.chunk_size) >= i * config.chunk_size
  h_c = lax.dynamic_slice_in_dim(h, start, config.chunk_size)
  labels_c = lax.dynamic_slice_in_dim(labels, start, config.chunk_size)
  valid_c = lax.dynamic_slice_in_dim(valid, start, config.chunk_size) & fresh
  nan_c = lax.dynamic_slice_in_dim(row_nan, start, config.chunk_size)
  weight_c = None
  if sample_weight is not None:
    weight_c = lax.dynamic_slice_in_dim(sample_weight, start, config.chunk_size)
  raw = jnp.dot(h_c, weight, preferred_element_type=dtype)
  if bias is not None:
    raw = raw + bias.astype(dtype)
  tanh, logits = None, raw
  if config.softcap:
    tanh = jnp.tanh(raw / softcap)
    logits = softcap * tanh
  row_max = _rows.finite_shift(jnp.max(logits, axis=1))
  exp = jnp.exp(logits - row_max[:, None])
  sum_exp = jnp.sum(exp, axis=1)
  # A bad label's row is NaN from its lse on (its loss and gradient).
  lse = jnp.log(sum_exp) + row_max + nan_c
  target = jnp.take_along_axis(logits, labels_c[:, None], axis=1)[:, 0]
  # Zeroed for d W's h^T; the row statistics and d logits are masked where they are used.
  h_c = jnp.where(valid_c[:, None], h_c, jnp.zeros((), h_c.dtype))
  return _Chunk(
    start,
    fresh,
    h_c,
    labels_c,
    valid_c,
    weight_c,
    raw,
    tanh,
    logits,
    exp,
    sum_exp,
    nan_c,
    lse,
    target,
  )


def _write_rows(out, rows, c: _Chunk):
  """``out`` with the chunk's fresh ``rows`` written at its rows (the others kept)."""
  current = lax.dynamic_slice_in_dim(out, c.start, rows.shape[0])
  fresh = c.fresh.reshape(-1, *(1,) * (rows.ndim - 1))
  return lax.dynamic_update_slice_in_dim(out, jnp.where(fresh, rows, current), c.start, 0)


def _chunk_losses(config: TokensConfig, c: _Chunk, class_weights, eps, z):
  """The chunk's per-token losses (not weighted by the sample weights), 0 for dropped
  tokens: a dropped row's NaN must not meet an option's zero cotangent."""
  keep = lambda x: jnp.where(c.valid, x, jnp.zeros_like(x))  # noqa: E731
  weighted_sum = None
  if config.options.smoothing and class_weights is None:
    weighted_sum = keep(jnp.sum(c.logits, axis=1))
  elif config.options.smoothing:
    # Masked per entry: d / d w_c reads every row's z_c, under a dropped row's zero cotangent.
    logits = jnp.where(c.valid[:, None], c.logits, jnp.zeros((), c.logits.dtype))
    weighted_sum = jnp.sum(_common.safe_mul(class_weights, logits), axis=1)
  terms = config.options.terms(c.labels, class_weights, eps, z)
  return keep(terms.loss(keep(c.lse), keep(c.target), weighted_sum))


def _chunk_total(config: TokensConfig, c: _Chunk, class_weights, eps, z):
  """Sum of the chunk's kept (weighted) losses, as a function of the options (logits fixed)."""
  losses = _chunk_losses(config, c, class_weights, eps, z)
  if c.sample_weight is not None:
    losses = _common.safe_mul(c.sample_weight, losses)
  return jnp.sum(jnp.where(c.valid, losses, jnp.zeros_like(losses)))


def _d_sample_weight(config: TokensConfig, c: _Chunk, class_weights, eps, z):
  """``d total / d s_n = l_n`` for kept tokens (0 where ``s_n = 0`` meets an infinite loss,
  the derivative of ``safe_mul``), 0 for the others."""
  losses = _chunk_losses(config, c, class_weights, eps, z)
  dropped = ~c.valid | ((c.sample_weight == 0) & jnp.isinf(losses))
  return jnp.where(dropped, jnp.zeros_like(losses), losses)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _tokens(
  config, h, weight, bias, labels, valid, row_nan, class_weights, eps, z, softcap, sample_weight
):
  """Sum of the kept tokens' (sample-weighted) losses and ``lse [N]``.

  The forward rule saves the gradients (in the compute dtype) and, for ``d total / d s``,
  the ``[N]`` kept losses; undifferentiated, one matmul per chunk.
  """

  def body(i, carry):
    total, lse = carry
    c = _chunk(config, i, h, weight, bias, labels, valid, row_nan, softcap, sample_weight)
    total = total + _chunk_total(config, c, class_weights, eps, z)
    return total, _write_rows(lse, c.lse, c)

  dtype = _common.compute_dtype(jnp.result_type(h, weight))
  init = (jnp.zeros((), dtype), jnp.zeros((h.shape[0],), dtype))
  inputs = (h, weight, bias, labels, valid, row_nan, class_weights, eps, z, softcap, sample_weight)
  return lax.fori_loop(0, config.num_chunks, body, _common.varying_like(init, *inputs))


class _Needs(NamedTuple):
  """Which gradients the forward rule computes (the perturbed inputs)."""

  h: bool
  weight: bool
  bias: bool
  options: bool  # class weights, smoothing or z-loss
  softcap: bool
  sample_weight: bool = False


def _accumulate_d_weight(config: TokensConfig, h_c, d_raw, d_weight):
  """``d_weight += h_c^T d_raw``, one block of columns at a time (no [D, V] temporary)."""
  dtype = d_weight.dtype
  d_raw = d_raw.astype(h_c.dtype)
  if config.num_chunks == 1:
    # One chunk: no [D, block] temporary or h^T copy, so it holds what full logits hold.
    return jnp.dot(h_c.T, d_raw, preferred_element_type=dtype)
  # Materialise h^T: XLA:CPU runs a dot with a transposed left operand on a slower kernel.
  h_t = lax.optimization_barrier(h_c.T)
  block = config.column_block
  vocab_size = d_weight.shape[1]

  def update(d_weight, start, size):
    d_block = lax.dynamic_slice_in_dim(d_raw, start, size, axis=1)
    current = lax.dynamic_slice_in_dim(d_weight, start, size, axis=1)
    new = current + jnp.dot(h_t, d_block, preferred_element_type=dtype)
    return lax.dynamic_update_slice_in_dim(d_weight, new, start, axis=1)

  full = vocab_size // block
  d_weight = lax.fori_loop(0, full, lambda j, dw: update(dw, j * block, block), d_weight)
  if vocab_size % block:
    d_weight = update(d_weight, full * block, vocab_size % block)
  return d_weight


def _d_hidden(config: TokensConfig, d_raw, weight):
  """``d_raw W^T`` for one chunk."""
  dtype = d_raw.dtype
  if weight.dtype.itemsize >= 4:
    return jnp.dot(d_raw.astype(weight.dtype), weight.T, preferred_element_type=dtype)
  # Column blocks in the weight's dtype: a whole-weight dot hoists a float32 copy (XLA:CPU).
  block = config.column_block
  vocab_size = weight.shape[1]

  def add(total, start, size):
    w_block = slice_columns(weight, start, size)
    d_block = lax.dynamic_slice_in_dim(d_raw, start, size, axis=1).astype(weight.dtype)
    return total + jnp.dot(d_block, w_block.T, preferred_element_type=dtype)

  full = vocab_size // block
  total = jnp.zeros((d_raw.shape[0], weight.shape[0]), dtype)
  total = lax.fori_loop(0, full, lambda j, t: add(t, j * block, block), total)
  if vocab_size % block:
    total = add(total, full * block, vocab_size % block)
  return total


def _backprop_chunk(config, needs: _Needs, i, c: _Chunk, weight, softcap, d_logits, grads):
  """Add chunk ``i``'s ``d logits`` to the gradients ``(d h, d W, d b, d softcap)``."""
  d_h, d_weight, d_bias, d_softcap = grads
  keep = lambda x: jnp.where(c.valid[:, None], x, jnp.zeros((), x.dtype))  # noqa: E731
  d_raw = keep(d_logits)
  if config.softcap:
    if needs.softcap:
      # z = c tanh(u / c), so dz/dc = tanh(u / c) - (u / c) (1 - tanh(u / c)^2).
      dz_dc = c.tanh - c.raw / softcap * (1 - jnp.square(c.tanh))  # type: ignore[arg-type]  # tanh is set with a softcap
      d_softcap = d_softcap + jnp.sum(keep(d_logits * dz_dc))
    d_raw = keep(d_logits * (1 - jnp.square(c.tanh)))  # type: ignore[arg-type]  # tanh is set with a softcap
  if needs.h:
    d_h = _write_rows(d_h, _d_hidden(config, d_raw, weight), c)
  if needs.weight:
    d_weight = _accumulate_d_weight(config, c.h, d_raw, d_weight)
  if needs.bias:
    d_bias = d_bias + jnp.sum(d_raw, axis=0)
  return d_h, d_weight, d_bias, d_softcap


def _init_grads(needs: _Needs, h, weight, dtype):
  """Zero accumulators for the needed gradients (None for the others)."""
  return (
    jnp.zeros(h.shape, dtype) if needs.h else None,
    jnp.zeros(weight.shape, dtype) if needs.weight else None,
    jnp.zeros((weight.shape[1],), dtype) if needs.bias else None,
    jnp.zeros((), dtype) if needs.softcap else None,
  )


def _loss_d_logits(config: TokensConfig, c: _Chunk, class_weights, eps, z):
  """``d (sum of kept losses) / d z`` for one chunk: ``a p - b onehot(y) - c w``."""
  dtype = c.lse.dtype
  terms = config.options.terms(c.labels, class_weights, eps, z)
  cotangent = c.valid.astype(dtype)
  if c.sample_weight is not None:  # d (s_n l_n) / d z = s_n d l_n / d z
    cotangent = jnp.where(c.valid, c.sample_weight, jnp.zeros_like(c.sample_weight))
  coef_p, coef_target, coef_weight = terms.grad_coefficients(cotangent, c.lse)
  # Not `c.exp`: as d logits' last [C, V] input the logits can lend it their buffer.
  probs = jnp.exp(c.logits - c.lse[:, None])
  columns = jnp.arange(config.options.num_classes, dtype=c.labels.dtype)
  d_logits = coef_p[:, None] * probs - jnp.where(
    columns == c.labels[:, None], coef_target[:, None], jnp.zeros((), dtype)
  )
  if config.options.smoothing:
    d_logits = d_logits - coef_weight[:, None] * terms.weights(dtype)
  return d_logits


def _is_zero(x) -> bool:
  return x is None or isinstance(x, jax.custom_derivatives.SymbolicZero)


def _tokens_fwd(
  config, h, weight, bias, labels, valid, row_nan, class_weights, eps, z, softcap, sample_weight
):
  perturbed = lambda p: p is not None and p.perturbed  # noqa: E731
  value = lambda p: None if p is None else p.value  # noqa: E731
  needs = _Needs(
    h=perturbed(h),
    weight=perturbed(weight),
    bias=perturbed(bias),
    options=perturbed(class_weights) or perturbed(eps) or perturbed(z),
    softcap=perturbed(softcap),
    sample_weight=perturbed(sample_weight),
  )
  h, weight, bias, labels, valid, row_nan, class_weights, eps, z, softcap, sample_weight = map(
    value, (h, weight, bias, labels, valid, row_nan, class_weights, eps, z, softcap, sample_weight)
  )
  dtype = _common.compute_dtype(jnp.result_type(h, weight))
  inputs = (h, weight, bias, labels, valid, row_nan, class_weights, eps, z, softcap, sample_weight)
  # Inside shard_map, options vary with the tokens before the loop: their chunk gradients
  # are then summed over the token shards once, in the backward rule, not in every chunk.
  options = _common.varying_like((class_weights, eps, z), *inputs)

  def body(i, carry):
    total, lse, grads, d_options, d_weights = carry
    c = _chunk(config, i, h, weight, bias, labels, valid, row_nan, softcap, sample_weight)
    chunk_total = functools.partial(_chunk_total, config, c)
    if needs.options:
      # Option gradients with the logits held fixed (they do not depend on the options).
      value, option_vjp = jax.vjp(chunk_total, *options)
      one = _common.varying_like(jnp.ones((), dtype), value)
      d_options = jax.tree.map(jnp.add, d_options, option_vjp(one))
    else:
      value = chunk_total(*options)
    d_logits = _loss_d_logits(config, c, class_weights, eps, z)
    grads = _backprop_chunk(config, needs, i, c, weight, softcap, d_logits, grads)
    lse = _write_rows(lse, c.lse, c)
    if needs.sample_weight:
      d_weights = _write_rows(d_weights, _d_sample_weight(config, c, class_weights, eps, z), c)
    return total + value, lse, grads, d_options, d_weights

  d_options = jax.tree.map(jnp.zeros_like, options) if needs.options else None
  init = (
    jnp.zeros((), dtype),
    jnp.zeros((h.shape[0],), dtype),
    _init_grads(needs, h, weight, dtype),
    d_options,
    jnp.zeros((h.shape[0],), dtype) if needs.sample_weight else None,
  )
  total, lse, (d_h, d_weight, d_bias, d_softcap), d_options, d_weights = lax.fori_loop(
    0, config.num_chunks, body, _common.varying_like(init, *inputs)
  )
  # Uncast: the backward rule scales and casts in one pass (no second weight-sized buffer).
  grads = (d_h, d_weight, d_bias, d_softcap, d_options, d_weights)
  inputs = (h, weight, bias, labels, valid, row_nan, softcap, sample_weight, lse)
  return (total, lse), (grads, inputs, (class_weights, eps, z))


def _lse_pass(config, needs: _Needs, g_lse, h, weight, bias, labels, valid, row_nan, softcap):
  """Gradients of ``sum(g_lse * lse)``: one more pass, ``d lse / d z = softmax(z)``."""
  dtype = g_lse.dtype

  def body(i, grads):
    c = _chunk(config, i, h, weight, bias, labels, valid, row_nan, softcap)
    g = lax.dynamic_slice_in_dim(g_lse, c.start, config.chunk_size)
    d_logits = (g / c.sum_exp + c.nan)[:, None] * c.exp
    return _backprop_chunk(config, needs, i, c, weight, softcap, d_logits, grads)

  init = _init_grads(needs, h, weight, dtype)
  inputs = (g_lse, h, weight, bias, labels, valid, row_nan, softcap)
  return lax.fori_loop(0, config.num_chunks, body, _common.varying_like(init, *inputs))


def _tokens_bwd(config, residuals, cotangents):
  (d_h, d_weight, d_bias, d_softcap, d_options, d_weights), inputs, options = residuals
  h, weight, bias, labels, valid, row_nan, softcap, sample_weight, lse = inputs
  g_total, g_lse = cotangents
  dtype = lse.dtype
  grads = [d_h, d_weight, d_bias, d_softcap]
  needs = _Needs(*(g is not None for g in grads[:3]), d_options is not None, d_softcap is not None)
  d_options = (None, None, None) if d_options is None else d_options
  if _is_zero(g_total):
    grads = [None if g is None else jnp.zeros_like(g) for g in grads]
    d_options = tuple(None if g is None else jnp.zeros_like(g) for g in d_options)
    d_weights = None if d_weights is None else jnp.zeros_like(d_weights)
  else:
    g_total = g_total.astype(dtype)
    grads = [None if g is None else g_total * g for g in grads]
    d_options = tuple(None if g is None else g_total * g for g in d_options)
    d_weights = None if d_weights is None else g_total * d_weights
  if not _is_zero(g_lse):
    g_lse = g_lse.astype(dtype)
    extra = _lse_pass(config, needs, g_lse, h, weight, bias, labels, valid, row_nan, softcap)
    grads = [g if e is None else g + e for g, e in zip(grads, extra, strict=True)]
  d_h, d_weight, d_bias, d_softcap = grads
  d_class_weights, d_eps, d_z = d_options
  cast = lambda d, x: None if d is None else d.astype(x.dtype)  # noqa: E731
  grads = (
    cast(d_h, h),
    cast(d_weight, weight),
    cast(d_bias, bias),
    None,
    None,
    None,
    d_class_weights,
    d_eps,
    d_z,
    d_softcap,
    cast(d_weights, sample_weight),
  )
  primals = (h, weight, bias, labels, valid, row_nan, *options, softcap, sample_weight)
  return tuple(map(_common.cotangent_like, grads, primals))


_tokens.defvjp(_tokens_fwd, _tokens_bwd, symbolic_zeros=True)


SCHEDULES = ("auto", "tokens", "vocab")
# Bytes of a 16-bit weight's float32 d W accumulator "auto" accepts (a float32 weight's
# accumulator is the gradient's output buffer).
TOKENS_ACCUMULATOR_BUDGET = 1 << 28
# Backends where "auto" may pick "tokens": elsewhere the fourth matmul of "vocab" is cheap.
TOKENS_BACKENDS = ("cpu",)


def choose_schedule(
  fn_name,
  schedule,
  *,
  reduction,
  weight,
  sharded,
  block_size=None,
  chunk_size=None,
  partitioned=False,
) -> str:
  """Resolve ``schedule`` to ``"tokens"`` or ``"vocab"`` (the rule of ``"auto"`` is in
  ``fused_linear_cross_entropy``); ``ValueError`` for an unknown one or a ``"tokens"`` that
  cannot run (``reduction="none"``, a sharded vocabulary or batch). On an Auto mesh
  (``partitioned``) only ``"vocab"`` is partitioned: ``"auto"`` picks it, ``"tokens"`` warns."""
  if schedule not in SCHEDULES:
    raise ValueError(
      f"{fn_name}: schedule={schedule!r} is not supported; choose one of {SCHEDULES}."
    )
  unsupported = None
  if reduction == "none":
    unsupported = 'reduction="none" (per-token cotangents are unknown in the forward pass)'
  elif sharded:
    unsupported = "a sharded vocabulary or batch"
  if schedule == "tokens" and unsupported:
    raise ValueError(
      f'{fn_name}: schedule="tokens" cannot handle {unsupported}; use schedule="vocab" or "auto".'
    )
  if partitioned and schedule == "tokens":
    _fused_auto.warn_unpartitioned(fn_name, 'schedule="tokens"')
  if schedule != "auto":
    return schedule
  if unsupported or partitioned or (block_size is not None and chunk_size is None):
    return "vocab"
  if AxisType.Manual in jax.sharding.get_abstract_mesh().axis_types:
    return "vocab"  # inside shard_map: an eager one cannot run a rule with symbolic zeros
  if jax.default_backend() not in TOKENS_BACKENDS:
    return "vocab"
  dtype = jnp.result_type(weight)
  accumulator_bytes = 0 if dtype.itemsize >= 4 else weight.shape[0] * weight.shape[1] * 4
  return "tokens" if accumulator_bytes <= TOKENS_ACCUMULATOR_BUDGET else "vocab"
