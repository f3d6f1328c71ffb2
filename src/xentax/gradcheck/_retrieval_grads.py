r"""Closed-form gradients of the in-batch softmax, CLIP and SigLIP losses.

Written independently of :mod:`xentax.losses`. Each loss is a function of one similarity
matrix ``z = s A C^T + shift`` of a batch's left embeddings ``A`` (queries, images) and its
columns ``C`` (items and sampled items, texts); with ``G = d L / d z`` (from the softmax or
sigmoid of ``z`` and the reduction's weights ``r_n = d L / d l_n``) the chain rule gives
every input's: ``d A = s G C``, ``d C = s G^T A``, ``d s = sum G * (A C^T)`` and each
column shift gets its column's sum of ``G``.

Design notes:
  * The closed forms take the losses' arguments except ``chunk_size`` and ``axis_name``:
    the row blocks and the mesh change how a loss is computed, not its value, so the
    gradient of the whole batch on one device is the reference for every block size (and,
    on the gathered batch, for a mesh).
  * A dropped pair (``where``) leaves both its row and its column, and its embeddings are
    replaced by zeros first, as in the losses, so inf/NaN in them reaches no gradient.
  * ``reduction="none"``: the gradients of the sum of the per-example losses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.gradcheck._grad_common import check_reduction, float_dtype, reduce_grad
from xentax.losses import contract


def _pairs(fn_name, a_name, a, b_name, b, where):
  """``[B, D]`` embeddings (dropped rows zeroed), their float dtype and the kept mask."""
  a = contract.float_array(fn_name, a_name, a)
  b = contract.float_array(fn_name, b_name, b)
  if a.ndim != 2 or a.shape != b.shape:
    raise ValueError(
      f"{fn_name}: {a_name} has shape {a.shape} and {b_name} {b.shape}; they must both be "
      f"[B, D], row n of {a_name} paired with row n of {b_name}."
    )
  dtype = float_dtype(jnp.result_type(a, b))
  kept = contract.broadcast_mask(fn_name, where, a.shape[:1])
  return _zero_dropped(a.astype(dtype), kept), _zero_dropped(b.astype(dtype), kept), dtype, kept


def _zero_dropped(x, kept):
  return jnp.where(kept[:, None], x, jnp.zeros((), x.dtype))


def _sum_to(g, shape) -> jax.Array:
  """``g`` (``[K]`` or a scalar) summed back to ``shape``, the shape of an input that was
  broadcast to it (``()``, ``(1,)`` or ``g``'s own)."""
  return g if g.shape == tuple(shape) else jnp.reshape(jnp.sum(g), shape)


def _sampled_columns(fn_name, sampled_item, sampled_log_q, sampled_ids, item_ids, dim, dtype):
  """The sampled items ``[S, D]``, their corrections and ids (all None without any)."""
  if sampled_item is None:
    return None, None, None
  sampled = contract.float_array(fn_name, "sampled_item", sampled_item)
  if sampled.ndim != 2 or sampled.shape[1] != dim:
    raise ValueError(
      f"{fn_name}: sampled_item has shape {sampled.shape}; it must be [S, D] with "
      f"D = {dim}, the embeddings' size."
    )
  count = sampled.shape[0]
  ids = contract.id_vector(fn_name, "sampled_ids", sampled_ids, count)
  if (ids is None) != (item_ids is None):
    raise ValueError(
      f"{fn_name}: accidental hits with sampled items need both item_ids and sampled_ids; "
      "pass both or neither."
    )
  correction = contract.finite_param(fn_name, "sampled_log_q", sampled_log_q, (count,), dtype)
  return sampled.astype(dtype), correction, ids


def in_batch_softmax_cross_entropy_grad(
  query,
  item,
  *,
  item_ids=None,
  log_q=None,
  temperature=1.0,
  sampled_item=None,
  sampled_log_q=None,
  sampled_ids=None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> dict:
  r"""Gradient of :func:`xentax.in_batch_softmax_cross_entropy` with respect to every float
  input.

  Over the columns ``[v_1 .. v_B, u_1 .. u_S]`` (the batch's items, then the sampled ones),
  ``z_nj = q_n . c_j / T - log Q_j``, ``p_n = softmax(z_n)`` with ``p_nj = 0`` where
  ``z_nj = -inf`` (a dropped column, an accidental hit) and ``G_n = r_n (p_n - e_n)``:

  .. math::
    \frac{\partial L}{\partial q_n} = \frac{1}{T} \sum_j G_{nj} c_j, \quad
    \frac{\partial L}{\partial c_j} = \frac{1}{T} \sum_n G_{nj} q_n, \quad
    \frac{\partial L}{\partial \log Q_j} = -\sum_n G_{nj}, \quad
    \frac{\partial L}{\partial T} = -\frac{1}{T^2} \sum_{n, j} G_{nj}\, q_n \cdot c_j,

  ``r_n`` the reduction's weight of example ``n`` (its ``sample_weight`` over the mean's
  denominator; 0 where dropped).

  Args:
    query: ``[B, D]`` query embeddings.
    item: ``[B, D]`` item embeddings, row ``n`` query ``n``'s positive.
    item_ids: ``[B]`` integer item ids (accidental hits), or None.
    log_q: corrections of the batch's items, broadcastable to ``[B]``, or None.
    temperature: ``T``, finite and > 0.
    sampled_item: ``[S, D]`` extra sampled negatives, or None.
    sampled_log_q: corrections of the sampled items, broadcastable to ``[S]``, or None.
    sampled_ids: ``[S]`` integer ids of the sampled items (with ``item_ids``), or None.
    where: ``[B]`` boolean mask of the pairs that enter the loss, or None.
    sample_weight: per-example weights broadcastable to ``[B]``, or None.
    reduction: as the loss takes it. ``chunk_size`` and ``axis_name`` are not taken: the
      gradient does not depend on them.

  Returns:
    A dict with ``d_query`` and ``d_item`` (``[B, D]``), ``d_log_q`` (``log_q``'s shape;
    None without it), ``d_temperature`` (``temperature``'s shape), ``d_sampled_item``
    (``[S, D]``; None without sampled items) and ``d_sampled_log_q`` (None without it).
    For ``reduction="none"``, the gradients of the sum of the per-example losses.

  Raises:
    ValueError: shapes that do not pair up, a bad reduction, a temperature outside its
      domain, non-finite corrections, or sampled ids without item ids (or the reverse).
    TypeError: non-float embeddings, non-integer ids or a non-boolean ``where``.

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> q, v = jax.random.normal(jax.random.key(0), (2, 4, 3))
    >>> ids = jnp.array([3, 7, 3, 1])
    >>> g = xentax.gradcheck.in_batch_softmax_cross_entropy_grad(
    ...   q, v, item_ids=ids, temperature=0.5)
    >>> auto = jax.grad(lambda q: xentax.in_batch_softmax_cross_entropy(
    ...   q, v, item_ids=ids, temperature=0.5))(q)
    >>> bool(jnp.allclose(g["d_query"], auto, atol=1e-6))
    True
  """
  fn_name = "in_batch_softmax_cross_entropy_grad"
  check_reduction(fn_name, reduction)
  q, v, dtype, kept = _pairs(fn_name, "query", query, "item", item, where)
  count = q.shape[0]
  contract.options(fn_name, temperature=temperature)
  t = jnp.asarray(temperature, dtype)
  ids = contract.id_vector(fn_name, "item_ids", item_ids, count)
  weights = contract.sample_weights(fn_name, sample_weight, (count,), dtype)
  sampled, sampled_correction, sampled_id = _sampled_columns(
    fn_name, sampled_item, sampled_log_q, sampled_ids, ids, q.shape[1], dtype
  )
  columns, correction = v, contract.finite_param(fn_name, "log_q", log_q, (count,), dtype)
  alive = jnp.broadcast_to(kept[None, :], (count, count))
  if ids is not None:
    alive = alive & ((ids[:, None] != ids[None, :]) | jnp.eye(count, dtype=bool))
  if sampled is not None:
    columns = jnp.concatenate([columns, sampled])
    correction = jnp.concatenate([correction, sampled_correction])
    hits = jnp.zeros((count, len(sampled)), bool)
    if sampled_id is not None:
      hits = ids[:, None] == sampled_id[None, :]
    alive = jnp.concatenate([alive, ~hits], axis=1)
  dots = q @ columns.T
  z = jnp.where(alive, dots / t - correction, -jnp.inf)
  # A dropped row keeps finite logits: its weight r_n = 0 then zeroes its gradient.
  z = jnp.where(kept[:, None], z, jnp.zeros((), dtype))
  onehot = jax.nn.one_hot(jnp.arange(count), columns.shape[0], dtype=dtype)
  g = reduce_grad(jax.nn.softmax(z, axis=1) - onehot, kept, reduction, sample_weight=weights)
  d_columns = g.T @ q / t
  d_correction = -jnp.sum(g, axis=0)
  return {
    "d_query": g @ columns / t,
    "d_item": d_columns[:count],
    "d_log_q": None if log_q is None else _sum_to(d_correction[:count], jnp.shape(log_q)),
    "d_temperature": _sum_to(-jnp.sum(g * dots) / t**2, jnp.shape(temperature)),
    "d_sampled_item": None if sampled is None else d_columns[count:],
    "d_sampled_log_q": (
      None if sampled_log_q is None else _sum_to(d_correction[count:], jnp.shape(sampled_log_q))
    ),
  }


def clip_loss_grad(image, text, *, logit_scale, where=None, reduction: str = "mean") -> dict:
  r"""Gradient of :func:`xentax.clip_loss` with respect to both embeddings and the scale.

  With ``z_nm = s x_n . t_m`` over the kept pairs, ``P`` its softmax along rows, ``P'``
  along columns and ``r`` the reduction's weights, pair ``n``'s row term weighs row ``n``
  and its column term column ``n``:

  .. math::
    G = \tfrac12 \big(\operatorname{diag}(r) (P - I) + (P' - I) \operatorname{diag}(r)\big),
    \quad
    \frac{\partial L}{\partial x} = s G t, \quad
    \frac{\partial L}{\partial t} = s G^T x, \quad
    \frac{\partial L}{\partial s} = \sum_{n, m} G_{nm}\, x_n \cdot t_m.

  Args:
    image: ``[B, D]`` image embeddings.
    text: ``[B, D]`` text embeddings, row ``n`` paired with image ``n``.
    logit_scale: ``s``, finite and > 0.
    where: ``[B]`` boolean mask of the pairs that enter the loss, or None.
    reduction: as the loss takes it. ``chunk_size`` and ``axis_name`` are not taken: the
      gradient does not depend on them.

  Returns:
    A dict with ``d_image`` and ``d_text`` (``[B, D]``) and ``d_logit_scale``
    (``logit_scale``'s shape). For ``reduction="none"``, the gradients of the sum of the
    per-pair losses.

  Raises:
    ValueError: shapes that do not pair up, a bad reduction or a scale outside its domain.
    TypeError: non-float embeddings or a non-boolean ``where``.

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> x, t = jax.random.normal(jax.random.key(0), (2, 4, 3))
    >>> g = xentax.gradcheck.clip_loss_grad(x, t, logit_scale=2.0)
    >>> auto = jax.grad(lambda s: xentax.clip_loss(x, t, logit_scale=s))(2.0)
    >>> bool(jnp.allclose(g["d_logit_scale"], auto, atol=1e-6))
    True
  """
  fn_name = "clip_loss_grad"
  check_reduction(fn_name, reduction)
  x, t, dtype, kept = _pairs(fn_name, "image", image, "text", text, where)
  contract.options(fn_name, logit_scale=logit_scale)
  s = jnp.asarray(logit_scale, dtype)
  dots = x @ t.T
  z = jnp.where(kept[:, None] & kept[None, :], s * dots, -jnp.inf)
  # A dropped row (column) keeps finite logits: its weight r_n = 0 zeroes its term.
  zero = jnp.zeros((), dtype)
  p_row = jax.nn.softmax(jnp.where(kept[:, None], z, zero), axis=1)
  p_col = jax.nn.softmax(jnp.where(kept[None, :], z, zero), axis=0)
  eye = jnp.eye(len(x), dtype=dtype)
  r = reduce_grad(jnp.ones(kept.shape, dtype), kept, reduction)
  g = 0.5 * (r[:, None] * (p_row - eye) + (p_col - eye) * r[None, :])
  return {
    "d_image": s * (g @ t),
    "d_text": s * (g.T @ x),
    "d_logit_scale": _sum_to(jnp.sum(g * dots), jnp.shape(logit_scale)),
  }


def siglip_loss_grad(
  image, text, *, logit_scale, logit_bias, where=None, reduction: str = "mean"
) -> dict:
  r"""Gradient of :func:`xentax.siglip_loss` with respect to both embeddings, scale and bias.

  With ``z_nm = s x_n . t_m + b``, ``y_nm = 1`` on the diagonal and ``-1`` off it, over the
  kept pairs and ``r_n`` the reduction's weight of image ``n``:

  .. math::
    G_{nm} = -r_n\, y_{nm}\, \sigma(-y_{nm} z_{nm}), \quad
    \frac{\partial L}{\partial x} = s G t, \quad
    \frac{\partial L}{\partial t} = s G^T x, \quad
    \frac{\partial L}{\partial s} = \sum_{n, m} G_{nm}\, x_n \cdot t_m, \quad
    \frac{\partial L}{\partial b} = \sum_{n, m} G_{nm}.

  Args:
    image: ``[B, D]`` image embeddings.
    text: ``[B, D]`` text embeddings, row ``n`` paired with image ``n``.
    logit_scale: ``s``, finite and > 0.
    logit_bias: ``b``, finite.
    where: ``[B]`` boolean mask of the pairs that enter the loss, or None.
    reduction: as the loss takes it. ``chunk_size`` and ``axis_name`` are not taken: the
      gradient does not depend on them.

  Returns:
    A dict with ``d_image`` and ``d_text`` (``[B, D]``), ``d_logit_scale`` and
    ``d_logit_bias`` (their inputs' shapes). For ``reduction="none"``, the gradients of the
    sum of the per-image losses.

  Raises:
    ValueError: shapes that do not pair up, a bad reduction or a scale or bias outside its
      domain.
    TypeError: non-float embeddings or a non-boolean ``where``.

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> x, t = jax.random.normal(jax.random.key(0), (2, 4, 3))
    >>> g = xentax.gradcheck.siglip_loss_grad(x, t, logit_scale=2.0, logit_bias=-1.0)
    >>> auto = jax.grad(lambda b: xentax.siglip_loss(x, t, logit_scale=2.0, logit_bias=b))(-1.0)
    >>> bool(jnp.allclose(g["d_logit_bias"], auto, atol=1e-6))
    True
  """
  fn_name = "siglip_loss_grad"
  check_reduction(fn_name, reduction)
  x, t, dtype, kept = _pairs(fn_name, "image", image, "text", text, where)
  contract.options(fn_name, logit_scale=logit_scale, logit_bias=logit_bias)
  s, b = jnp.asarray(logit_scale, dtype), jnp.asarray(logit_bias, dtype)
  dots = x @ t.T
  y = 2 * jnp.eye(len(x), dtype=dtype) - 1
  g = -y * jax.nn.sigmoid(-y * (s * dots + b))
  g = reduce_grad(jnp.where(kept[None, :], g, jnp.zeros((), dtype)), kept, reduction)
  return {
    "d_image": s * (g @ t),
    "d_text": s * (g.T @ x),
    "d_logit_scale": _sum_to(jnp.sum(g * dots), jnp.shape(logit_scale)),
    "d_logit_bias": _sum_to(jnp.sum(g), jnp.shape(logit_bias)),
  }
