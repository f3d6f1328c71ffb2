r"""Contrastive and retrieval losses over a batch of paired embeddings: in-batch softmax with
the popularity correction, CLIP's symmetric InfoNCE and SigLIP's pairwise sigmoid.

Design notes:
  * Each loss reads the ``[B, M]`` similarity matrix a block of rows at a time
    (``chunk_size``), under a checkpointed ``lax.scan``: the forward and the backward pass
    hold one ``[chunk, M]`` block, and the backward pass recomputes it. Gradients are
    reverse-mode through the blocks, so they are exact; ``xentax.gradcheck`` holds their
    closed forms.
  * CLIP's column direction (text to image) is an online log-sum-exp carried across row
    blocks, so each block of similarities is computed once for both directions.
  * Inside ``shard_map`` with ``axis_name``, the column embeddings are all-gathered (their
    gradient is reduce-scattered back by JAX's transpose), each device scores its own rows
    against every column, and the reduction is global: every device returns the loss of
    the global batch.
  * Dropped examples (``where``) leave both their row and their column: zeroed embeddings,
    ``-inf`` logits, so inf/NaN in them reaches neither the loss nor a gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import _common, _frame, _reduce, _rows, _validate

# Rows per block when ``chunk_size`` is None: blocks of at most this many similarities.
AUTO_BLOCK_ENTRIES = 2**22


def _row_blocks(block_fn, carry, rows, chunk: int):
  """``block_fn(carry, rows_block) -> (carry, out_block)`` over blocks of ``chunk`` rows.

  Each leaf of ``rows`` is ``[B, ...]``; the last block is padded (a padded row's ``valid``
  leaf is False) and the outputs cut back to ``B`` rows. One block runs unscanned.
  """
  count = jax.tree.leaves(rows)[0].shape[0]
  if chunk >= count:
    return block_fn(carry, rows)
  pad = -count % chunk

  def blocks(x):
    x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape(-1, chunk, *x.shape[1:])

  # checkpoint: the backward pass recomputes a block's similarities instead of storing all.
  carry, out = lax.scan(jax.checkpoint(block_fn), carry, jax.tree.map(blocks, rows))
  return carry, jax.tree.map(lambda o: o.reshape(-1, *o.shape[2:])[:count], out)


def _chunk(fn_name: str, chunk_size, cols: int) -> int:
  """Rows per block: ``chunk_size``, or blocks of at most :data:`AUTO_BLOCK_ENTRIES`."""
  if chunk_size is None:
    return max(1, AUTO_BLOCK_ENTRIES // max(cols, 1))
  return _validate.positive_int(fn_name, "chunk_size", chunk_size)


def _gathered(x, axis_name):
  """``x`` from every device along ``axis_name``, concatenated on axis 0 (``x`` itself
  outside ``shard_map``)."""
  if axis_name is None or x is None:
    return x
  return lax.all_gather(x, axis_name, tiled=True)


def _offset(count: int, axis_name):
  """The global index of this device's first row."""
  return 0 if axis_name is None else lax.axis_index(axis_name) * count


def _pairs(fn_name, a_name, a, b_name, b, where):
  """Checked ``[B, D]`` embeddings, their compute dtype and the ``[B]`` kept mask."""
  a = _validate.float_array(fn_name, a_name, a)
  b = _validate.float_array(fn_name, b_name, b)
  if a.ndim != 2 or a.shape != b.shape:
    raise ValueError(
      f"{fn_name}: {a_name} has shape {a.shape} and {b_name} {b.shape}; they must both be "
      f"[B, D], row n of {a_name} paired with row n of {b_name}."
    )
  dtype = _common.compute_dtype(jnp.result_type(a, b))
  valid = _validate.broadcast_mask(fn_name, where, a.shape[:1])
  if valid is None:
    valid = jnp.ones(a.shape[:1], bool)
  return a, b, dtype, valid


def _zero_dropped(x, valid):
  return jnp.where(valid[:, None], x, jnp.zeros((), x.dtype))


def _similarities(a_block, columns, scale, dtype):
  """``scale * a_block @ columns.T`` in ``dtype`` (bf16 inputs accumulate in float32)."""
  dots = jnp.dot(a_block, columns.T, preferred_element_type=dtype)
  return scale * dots


def _softmax_terms(
  a, columns, scale, shift, col_valid, targets, row_ids, col_ids, valid, chunk, with_columns
):
  """Per row: ``lse_j z_nj`` and ``z_n,target``, with ``z = scale a columns^T + shift``
  (``-inf`` at dropped columns and accidental hits); and, ``with_columns``, the online
  ``(max, sum of exp)`` of each column over the kept rows."""
  dtype = shift.dtype
  col_index = jnp.arange(columns.shape[0])

  def block(carry, rows):
    a_n, target, row_id, kept = rows
    z = _similarities(a_n, columns, scale, dtype) + shift
    dead = ~col_valid[None, :]
    if row_ids is not None:
      dead = dead | ((row_id[:, None] == col_ids[None, :]) & (col_index != target[:, None]))
    # Only kept rows mask: a dropped row keeps finite logits, so its zero cotangent stays 0.
    z = jnp.where(dead & kept[:, None], -jnp.inf, z)
    lse = _rows.logsumexp(z)
    positive = jnp.take_along_axis(z, target[:, None], axis=1)[:, 0]
    if carry is not None:
      carry = _column_update(carry, jnp.where(kept[:, None], z, -jnp.inf))
    return carry, (lse, positive)

  carry = None
  if with_columns:
    size = columns.shape[0]
    start = (jnp.full(size, jnp.finfo(dtype).min, dtype), jnp.zeros(size, dtype))
    carry = _common.varying_like(start, a, columns)
  if a.shape[0] == 0:  # an empty batch: nothing to score (a max over no entry has no identity)
    return carry, (jnp.zeros(0, dtype), jnp.zeros(0, dtype))
  ids = jnp.zeros(a.shape[:1], jnp.int32) if row_ids is None else row_ids
  return _row_blocks(block, carry, (a, targets, ids, valid), chunk)


def _column_update(carry, z):
  """The running ``(m, s)`` of each column's ``log sum exp`` after the rows of ``z``."""
  m, s = carry
  # stop_gradient: the result does not depend on m; its gradient would only cancel.
  m_new = lax.stop_gradient(jnp.maximum(m, jnp.max(z, axis=0)))
  return m_new, s * jnp.exp(m - m_new) + jnp.sum(jnp.exp(z - m_new), axis=0)


def _column_lse(carry, col_valid, axis_name):
  """Each column's ``log sum exp`` over the kept rows of every device."""
  m, s = carry
  if axis_name is not None:
    top = lax.stop_gradient(lax.pmax(m, axis_name))
    s, m = lax.psum(s * jnp.exp(m - top), axis_name), top
  # A dropped column has s = 0: log(1) keeps its (unused) cotangent finite.
  return m + jnp.log(jnp.where(col_valid, s, jnp.ones_like(s)))


def _axis(fn_name, axis_name):
  if axis_name is not None:
    _validate.axis_size(fn_name, "axis_name", axis_name)


@_frame.loss(
  chunk_size="contrastive_chunk_size", axis_name="contrastive_axis_name", where="contrastive_where"
)
def in_batch_softmax_cross_entropy(
  query,
  item,
  *,
  item_ids=None,
  log_q=None,
  temperature=1.0,
  sampled_item=None,
  sampled_log_q=None,
  sampled_ids=None,
  chunk_size: int | None = None,
  axis_name=None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""In-batch softmax cross-entropy for two-tower retrieval, with the popularity (logQ)
  correction (Yi et al., RecSys 2019; TensorFlow Recommenders' ``Retrieval`` task).

  Query ``n``'s positive is item ``n``; the batch's other items, and any extra sampled
  items (mixed negatives), are its negatives:

  .. math::
    z_{nj} = \frac{q_n \cdot v_j}{T} - \log Q_j, \qquad
    \ell_n = \log \sum_j e^{z_{nj}} - z_{nn},

  with ``z_nj = -inf`` where ``j != n`` and item ``j`` is the same item as item ``n``
  (``item_ids``: an accidental hit, which would otherwise be a false negative). Items enter
  the batch in proportion to their popularity, so without ``log Q`` (the log of each item's
  sampling probability) the loss pushes popular items down; with it, the softmax estimates
  the full-catalogue softmax.

  Gradient: with ``p_n = softmax(z_n)``, ``d l_n / d z_nj = p_nj - [j = n]``; so
  ``d l_n / d q_n = sum_j (p_nj - [j = n]) v_j / T``, the items get the transposed sum, and
  ``log Q_j`` gets ``-sum_n (p_nj - [j = n])``; ``T`` gets ``-sum_j (d l / d z_nj)
  (q_n . v_j) / T^2``.

  Args:
    query: ``[B, D]`` query embeddings.
    item: ``[B, D]`` embeddings of each query's positive item (row ``n`` pairs with
      query ``n``).
    item_ids: ``[B]`` integer ids of the items, or None: repeated ids are masked as
      accidental hits (and sampled items equal to a query's item, given ``sampled_ids``).
    log_q: ``[B]`` (or broadcastable) finite log sampling probabilities of the batch's
      items, subtracted from their logits, the positive's included; None: no correction.
    temperature: ``T``, finite and > 0; may be traced, with an exact gradient.
    sampled_item: ``[S, D]`` embeddings of extra sampled negatives shared by every query,
      or None (inside ``shard_map`` each device uses its own, not gathered).
    sampled_log_q: ``[S]`` finite corrections of the sampled items (their sampler's log
      probability); None: no correction.
    sampled_ids: ``[S]`` integer ids of the sampled items, for accidental hits with
      ``item_ids``.
    $options

  $contract

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> q, v = jax.random.normal(jax.random.key(0), (2, 4, 8))
    >>> ids = jnp.array([3, 7, 3, 1])  # rows 0 and 2 hold the same item
    >>> loss = xentax.in_batch_softmax_cross_entropy(
    ...   q, v, item_ids=ids, log_q=jnp.log(jnp.array([0.2, 0.1, 0.2, 0.05])))
    >>> bool(jnp.isfinite(loss))
    True

  References:
    Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item
    Recommendations", RecSys 2019; ``tfrs.tasks.Retrieval``.
  """
  name = "in_batch_softmax_cross_entropy"
  _reduce.check_reduction(name, reduction)
  _axis(name, axis_name)
  query, item, dtype, valid = _pairs(name, "query", query, "item", item, where)
  count = query.shape[0]
  bad = _validate.options(name, temperature=temperature)
  ids = _validate.id_vector(name, "item_ids", item_ids, count)
  shift = -_validate.finite_param(name, "log_q", log_q, (count,), dtype)
  weights = _validate.sample_weights(name, sample_weight, (count,), dtype)
  columns, col_shift, col_ids, col_valid = (
    _gathered(x, axis_name) for x in (_zero_dropped(item, valid), shift, ids, valid)
  )
  col_shift = jnp.where(col_valid, col_shift, 0.0)
  if sampled_item is not None:
    columns, col_shift, col_ids, col_valid = _with_sampled(
      name, sampled_item, sampled_log_q, sampled_ids, columns, col_shift, col_ids, col_valid
    )
  targets = _offset(count, axis_name) + jnp.arange(count)
  scale = 1 / jnp.asarray(temperature, dtype)
  chunk = _chunk(name, chunk_size, columns.shape[0])
  _, (lse, positive) = _softmax_terms(
    _zero_dropped(query, valid), columns, scale, col_shift, col_valid, targets, ids, col_ids,
    valid, chunk, with_columns=False,
  )  # fmt: skip
  losses = lse - positive
  if bad is not None:
    losses = losses + _common.nan_where(bad, dtype)
  return _reduce.reduce_losses(
    losses, valid=valid, sample_weight=weights, reduction=reduction, axis_name=axis_name
  )


def _with_sampled(name, sampled_item, sampled_log_q, sampled_ids, columns, shift, ids, valid):
  """The in-batch columns followed by the sampled ones (their shifts, ids, kept flags)."""
  sampled = _validate.float_array(name, "sampled_item", sampled_item)
  if sampled.ndim != 2 or sampled.shape[1] != columns.shape[1]:
    raise ValueError(
      f"{name}: sampled_item has shape {sampled.shape}; it must be [S, D] with "
      f"D = {columns.shape[1]}, the embeddings' size."
    )
  count = sampled.shape[0]
  sampled_shift = -_validate.finite_param(
    name, "sampled_log_q", sampled_log_q, (count,), shift.dtype
  )
  sampled_ids = _validate.id_vector(name, "sampled_ids", sampled_ids, count)
  if (sampled_ids is None) != (ids is None):
    raise ValueError(
      f"{name}: accidental hits with sampled items need both item_ids and sampled_ids; "
      "pass both or neither."
    )
  if ids is not None:
    ids = jnp.concatenate([ids, sampled_ids])
  return (
    jnp.concatenate([columns, sampled.astype(columns.dtype)]),
    jnp.concatenate([shift, sampled_shift]),
    ids,
    jnp.concatenate([valid, jnp.ones(count, bool)]),
  )


@_frame.loss(
  chunk_size="contrastive_chunk_size", axis_name="contrastive_axis_name", where="contrastive_where"
)
def clip_loss(
  image,
  text,
  *,
  logit_scale,
  chunk_size: int | None = None,
  axis_name=None,
  where=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""CLIP's symmetric contrastive loss (Radford et al. 2021; open_clip's ``ClipLoss``).

  With ``s`` the ``logit_scale`` (a multiplier: a model that learns its logarithm passes
  ``exp`` of it) and ``z_nm = s x_n . t_m``,

  .. math::
    \ell_n = \tfrac12 \Big(\log \sum_m e^{z_{nm}} - z_{nn}\Big)
      + \tfrac12 \Big(\log \sum_m e^{z_{mn}} - z_{nn}\Big),

  the image-to-text and text-to-image cross-entropies of pair ``n``; their mean is
  open_clip's ``(CE(logits_per_image) + CE(logits_per_text)) / 2``. The embeddings are
  used as given (normalise them in the model, as CLIP does).

  Gradient: with ``P = softmax`` along rows and ``P'`` along columns of ``z``,
  ``d L / d z = (P + P' - 2 I) / (2 B)`` for the mean; ``d L / d x = s (d L / d z) t``,
  ``d L / d t = s (d L / d z)^T x`` and ``d L / d s = sum (d L / d z) * (x t^T)``.

  Args:
    image: ``[B, D]`` image embeddings.
    text: ``[B, D]`` text embeddings, row ``n`` paired with image ``n``.
    logit_scale: ``s``, finite and > 0; may be traced, with an exact gradient.
    $options

  $contract

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> x, t = jax.random.normal(jax.random.key(0), (2, 8, 16))
    >>> unit = lambda e: e / jnp.linalg.norm(e, axis=1, keepdims=True)
    >>> loss = xentax.clip_loss(unit(x), unit(t), logit_scale=1 / 0.07)
    >>> bool(loss > 0)
    True

  References:
    Radford et al., "Learning Transferable Visual Models From Natural Language
    Supervision", 2021; open_clip's ``ClipLoss``.
  """
  name = "clip_loss"
  _reduce.check_reduction(name, reduction)
  _axis(name, axis_name)
  image, text, dtype, valid = _pairs(name, "image", image, "text", text, where)
  count = image.shape[0]
  bad = _validate.options(name, logit_scale=logit_scale)
  columns, col_valid = _gathered(_zero_dropped(text, valid), axis_name), _gathered(valid, axis_name)
  targets = _offset(count, axis_name) + jnp.arange(count)
  chunk = _chunk(name, chunk_size, columns.shape[0])
  carry, (lse, positive) = _softmax_terms(
    _zero_dropped(image, valid), columns, jnp.asarray(logit_scale, dtype),
    jnp.zeros(columns.shape[0], dtype), col_valid, targets, None, None, valid, chunk,
    with_columns=True,
  )  # fmt: skip
  column_lse = _column_lse(carry, col_valid, axis_name)
  mine = lax.dynamic_slice_in_dim(column_lse, _offset(count, axis_name), count)
  losses = 0.5 * (lse - positive) + 0.5 * (mine - positive)
  if bad is not None:
    losses = losses + _common.nan_where(bad, dtype)
  return _reduce.reduce_losses(losses, valid=valid, reduction=reduction, axis_name=axis_name)


@_frame.loss(
  chunk_size="contrastive_chunk_size", axis_name="contrastive_axis_name", where="contrastive_where"
)
def siglip_loss(
  image,
  text,
  *,
  logit_scale,
  logit_bias,
  chunk_size: int | None = None,
  axis_name=None,
  where=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""SigLIP's pairwise sigmoid loss (Zhai et al. 2023; open_clip's ``SigLipLoss``).

  With ``z_nm = s x_n . t_m + b`` (``s`` the ``logit_scale``, ``b`` the ``logit_bias``) and
  ``y_nm = 1`` for a matching pair (``m = n``), ``-1`` otherwise,

  .. math::
    \ell_n = -\sum_m \log \sigma(y_{nm} z_{nm}) = \sum_m \operatorname{softplus}(-y_{nm} z_{nm}),

  image ``n``'s binary losses against every text; the mean over ``n`` is the paper's sum
  over all ``B^2`` pairs divided by ``B``. Every pair is independent: no softmax, so no
  global normalisation across the batch.

  Gradient: ``d l_n / d z_nm = -y_nm sigma(-y_nm z_nm)``; through ``z`` it reaches
  ``x_n`` (times ``s t_m``), ``t_m`` (times ``s x_n``), ``s`` (times ``x_n . t_m``) and
  ``b`` (summed).

  Args:
    image: ``[B, D]`` image embeddings.
    text: ``[B, D]`` text embeddings, row ``n`` paired with image ``n``.
    logit_scale: ``s``, finite and > 0 (a multiplier, ``exp`` of the learned
      logarithm); may be traced, with an exact gradient.
    logit_bias: ``b``, finite (the paper starts it at -10); may be traced.
    $options

  $contract

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> x, t = jax.random.normal(jax.random.key(0), (2, 8, 16))
    >>> loss = xentax.siglip_loss(x, t, logit_scale=10.0, logit_bias=-10.0)
    >>> bool(loss > 0)
    True

  References:
    Zhai et al., "Sigmoid Loss for Language Image Pre-Training", 2023; open_clip's
    ``SigLipLoss``.
  """
  name = "siglip_loss"
  _reduce.check_reduction(name, reduction)
  _axis(name, axis_name)
  image, text, dtype, valid = _pairs(name, "image", image, "text", text, where)
  count = image.shape[0]
  bad = _validate.options(name, logit_scale=logit_scale, logit_bias=logit_bias)
  columns, col_valid = _gathered(_zero_dropped(text, valid), axis_name), _gathered(valid, axis_name)
  targets = _offset(count, axis_name) + jnp.arange(count)
  scale, bias = jnp.asarray(logit_scale, dtype), jnp.asarray(logit_bias, dtype)
  col_index = jnp.arange(columns.shape[0])

  def block(carry, rows):
    x_n, target = rows
    z = _similarities(x_n, columns, scale, dtype) + bias
    sign = jnp.where(col_index == target[:, None], -1.0, 1.0).astype(dtype)
    pair = jnp.where(col_valid[None, :], jax.nn.softplus(sign * z), 0.0)
    return carry, jnp.sum(pair, axis=1)

  chunk = _chunk(name, chunk_size, columns.shape[0])
  _, losses = _row_blocks(block, None, (_zero_dropped(image, valid), targets), chunk)
  if bad is not None:
    losses = losses + _common.nan_where(bad, dtype)
  return _reduce.reduce_losses(losses, valid=valid, reduction=reduction, axis_name=axis_name)
