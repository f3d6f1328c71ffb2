r"""Ranking metrics for retrieval and recommenders: recall, NDCG and hit rate at ``k``, MRR.

Design notes:
  * One ranking rule everywhere: items sorted by score, highest first; among equal scores
    the lower item index ranks first (the order of ``jax.lax.top_k``), and ``-0.0`` ties
    with ``0.0``. An item's rank is 1 + the number of ranked items above it, so every metric
    is deterministic, ties included.
  * ``exclude`` (items seen in training) removes items from the ranking and from the
    relevant set; their scores are never read. A query left with no relevant item has no
    value and is left out of the mean over queries (NaN when no query is kept), as
    recommender evaluations do, rather than counting as 0 or 1.
  * A NaN score of a ranked item makes its query's value NaN, and so the mean: a NaN is a
    broken model, not a rank. A label or grade outside its domain raises when concrete and
    makes its query NaN under ``jit`` (as the losses' labels do).
  * Integer labels (one relevant item) need only the label's rank: one O(N V) comparison
    and no sort. Graded relevance sorts each row once (``lax.sort`` on the keys (excluded,
    -score), stable, so that equal scores keep index order).
  * :func:`retrieval_metrics` never holds the ``[N, V]`` scores: a loop over item chunks
    computes ``[N, chunk_size]`` scores at a time, twice, in one loop body (the first pass
    reads each label's score, the second counts the items above it), so the label's score
    is bitwise the one it is compared with. Peak memory O(N chunk_size) beyond the inputs,
    at twice the matmul's work.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import contract

# Docstring paragraphs the ranking metrics share, written once: a line ``$name`` becomes
# ``_PARAGRAPHS[name]`` at that line's indent (an item continues two spaces deeper).
_PARAGRAPHS = {
  "rules": (
    "Items are ranked by score, highest first; among equal scores the lower item index "
    "ranks first (``jax.lax.top_k``'s order), and ``-0.0`` ties with ``0.0``. Excluded items "
    "are removed from the ranking and from the relevant set (their scores are never read). "
    "A query with no relevant item left is left out of the mean over queries (NaN when no "
    "query is kept). A NaN score of a ranked item makes its query's value, and so the "
    "mean, NaN."
  ),
  "scores": "scores: ``[N, V]`` float scores of ``V`` items for ``N`` queries, higher is better.",
  "labels": (
    "labels: integer ``[N]``, the one relevant item of each query, in ``[0, V)``; or a "
    "relevance matrix ``[N, V]``: boolean, or non-negative finite grades (an item is "
    "relevant when its grade is positive; the grades are NDCG's gains)."
  ),
  "k": "k: a Python (or NumPy) integer in ``[1, V]``: the ranking's cutoff (static).",
  "exclude": ("exclude: optional boolean ``[N, V]`` mask of items not to rank (seen in training)."),
  "returns": ("A scalar, the mean over kept queries: float32 (float64 for float64 scores)."),
  "raises": (
    "TypeError: non-float scores, float ``[N]`` labels, a non-boolean ``exclude``, or a "
    "``k`` that is not an integer.",
    "ValueError: shapes that do not fit, ``k`` outside ``[1, V]``, or (on concrete inputs) "
    "a label outside ``[0, V)`` or a grade that is negative or not finite; under ``jit`` "
    "such a query's value is NaN.",
  ),
}


def _shared_doc(fn: Callable) -> Callable:
  """``fn`` with each ``$name`` line of its docstring replaced by ``_PARAGRAPHS[name]``."""
  return contract.shared_docstring(fn, paragraphs=_PARAGRAPHS)


# ---------------------------------------------------------------------------------------
# Validation.


def _cutoff(fn_name: str, k, num_items: int) -> int:
  """``k`` as a Python int in ``[1, V]``."""
  if isinstance(k, bool) or not isinstance(k, numbers.Integral):
    raise TypeError(
      f"{fn_name}: k={k!r} must be a Python or NumPy integer in [1, V={num_items}] (it sets "
      f"a shape, so it is static), got {type(k).__name__}."
    )
  k = int(k)
  if not 1 <= k <= num_items:
    raise ValueError(
      f"{fn_name}: k={k} is outside [1, V={num_items}] (V, the number of items); pass "
      f"1 <= k <= {num_items}."
    )
  return k


def _scores(fn_name: str, scores) -> jax.Array:
  """``[N, V]`` scores (``V >= 1``) in the compute dtype."""
  scores = contract.float_array(fn_name, "scores", scores)
  if scores.ndim != 2 or scores.shape[1] == 0:
    raise ValueError(
      f"{fn_name}: scores has shape {scores.shape}; it must be [N, V] with V >= 1 (one row "
      "of item scores per query; a single query is scores[None])."
    )
  return scores.astype(contract.compute_dtype(scores))


def _label_indices(fn_name: str, labels, num_queries: int, num_items: int):
  """Integer ``[N]`` labels and the queries whose label is outside ``[0, V)``."""
  labels = contract.to_array(fn_name, "labels", labels)
  if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
    raise TypeError(
      f"{fn_name}: labels of shape {jnp.shape(labels)} must be integer item indices, got "
      f"dtype {jnp.result_type(labels)}; cast them with labels.astype(jnp.int32), or pass "
      "an [N, V] relevance matrix for graded relevance."
    )
  if jnp.shape(labels) != (num_queries,):
    raise ValueError(
      f"{fn_name}: labels has shape {jnp.shape(labels)} but there are N={num_queries} "
      f"queries; pass one label per query, shape ({num_queries},)."
    )
  labels, shown = contract.integer_labels(fn_name, labels)
  bad = (labels < 0) | (labels >= num_items)
  contract.check_values(fn_name, f"labels must lie in [0, V={num_items})", shown, bad)
  return labels, bad


def _grades(fn_name: str, labels, shape, dtype):
  """A ``[N, V]`` relevance matrix as gains in ``dtype``, and the rows with a bad grade."""
  if not jnp.issubdtype(jnp.result_type(labels), jnp.number) and labels.dtype != jnp.bool_:
    raise TypeError(f"{fn_name}: labels must be boolean or numeric, got {labels.dtype}.")
  gains = jnp.asarray(labels).astype(dtype)
  bad = ~((gains >= 0) & (gains < jnp.inf))
  contract.check_values(fn_name, "relevance grades must be finite and >= 0", gains, bad)
  return jnp.where(bad, jnp.zeros((), dtype), gains), jnp.any(bad, axis=1)


def _exclude_mask(fn_name: str, exclude, shape) -> jax.Array:
  """The ``[N, V]`` boolean mask of excluded items (all False for None)."""
  if exclude is None:
    return jnp.zeros(shape, bool)
  exclude = jnp.asarray(contract.to_array(fn_name, "exclude", exclude))
  if exclude.dtype != jnp.bool_:
    raise TypeError(
      f"{fn_name}: exclude must be a boolean mask, got dtype {exclude.dtype}; for item ids "
      "use retrieval_metrics(..., exclude_ids=...), or build the mask with ids == item."
    )
  if exclude.shape != tuple(shape):
    raise ValueError(
      f"{fn_name}: exclude has shape {exclude.shape} but scores has shape {tuple(shape)}; "
      "pass one flag per query and item."
    )
  return exclude


# ---------------------------------------------------------------------------------------
# Ranks and per-query values.


def _above(scores, items, label_score, labels) -> jax.Array:
  """True where an item ranks above the label: a higher score, or an equal one and index."""
  return (scores > label_score) | ((scores == label_score) & (items < labels))


def _rank_or_sentinel(rank, *, bad_label, left_out, nan_scores) -> jax.Array:
  """``rank``, with 0 where the query is left out and -1 where its value is undefined.

  A bad label makes the query undefined even where it is excluded; a NaN score does not
  reach a left-out query, whose scores are never read.
  """
  rank = jnp.where(left_out, 0, jnp.where(nan_scores, -1, rank))
  return jnp.where(bad_label, -1, rank).astype(jnp.int32)


class _Queries(NamedTuple):
  """Validated dense inputs: the label's rank (integer labels) or the ranked gains."""

  dtype: jnp.dtype  # the compute dtype
  rank: jax.Array | None  # [N] with the sentinels of label_ranks (integer labels)
  gains: jax.Array | None  # [N, V] gains, 0 for excluded items (relevance matrix)
  order: jax.Array | None  # [N, V] item indices in ranked order, excluded ones last
  kept: jax.Array | None  # [N] queries with a relevant item, or undefined ones
  undefined: jax.Array | None  # [N] a NaN score or a bad grade: the query's value is NaN


def _queries(fn_name: str, scores, labels, exclude, k, *, cut=True) -> tuple[_Queries, int]:
  """Validated inputs, ranked, and ``k`` checked against ``V`` (unless not ``cut``)."""
  scores = _scores(fn_name, scores)
  shape = scores.shape
  if cut:
    k = _cutoff(fn_name, k, shape[1])
  labels = contract.to_array(fn_name, "labels", labels)
  if jnp.ndim(labels) == 2 and jnp.shape(labels) != shape:
    raise ValueError(
      f"{fn_name}: labels has shape {jnp.shape(labels)} but scores has shape {shape}; pass "
      f"integer labels of shape ({shape[0]},) or a relevance matrix of shape {shape}."
    )
  excluded = _exclude_mask(fn_name, exclude, shape)
  # An excluded item's score is never read: it cannot make its query NaN.
  nan_scores = jnp.any(jnp.isnan(scores) & ~excluded, axis=1)
  if jnp.ndim(labels) != 2:
    return _by_label(fn_name, scores, labels, excluded, nan_scores), k
  return _by_grades(fn_name, scores, jnp.asarray(labels), excluded, nan_scores), k


def _by_label(fn_name: str, scores, labels, excluded, nan_scores) -> _Queries:
  """Integer labels: each label's rank, O(N V) comparisons and no sort."""
  num_queries, num_items = scores.shape
  labels, bad = _label_indices(fn_name, labels, num_queries, num_items)
  index = jnp.clip(labels, 0, num_items - 1)[:, None]
  label_score = jnp.take_along_axis(scores, index, axis=1)
  items = jnp.arange(num_items)
  count = jnp.sum(_above(scores, items, label_score, index) & ~excluded, axis=1)
  left_out = jnp.take_along_axis(excluded, index, axis=1)[:, 0]
  rank = _rank_or_sentinel(1 + count, bad_label=bad, left_out=left_out, nan_scores=nan_scores)
  return _Queries(scores.dtype, rank, None, None, None, None)


def _by_grades(fn_name: str, scores, labels, excluded, nan_scores) -> _Queries:
  """A relevance matrix: the gains, and each row's items in ranked order (one sort)."""
  gains, bad = _grades(fn_name, labels, scores.shape, scores.dtype)
  gains = jnp.where(excluded, jnp.zeros((), gains.dtype), gains)
  kept = jnp.any(gains > 0, axis=1) | bad
  # lax.sort orders floats totally (-0.0 before 0.0): both zeros get one key, and so does
  # NaN (its query is NaN anyway). Stable, so equal scores keep the items' index order.
  key = jnp.where((scores == 0) | jnp.isnan(scores), jnp.zeros((), scores.dtype), -scores)
  items = lax.broadcasted_iota(jnp.int32, scores.shape, 1)
  _, _, order = lax.sort(
    (excluded.astype(jnp.int32), key, items), dimension=1, num_keys=2, is_stable=True
  )
  return _Queries(scores.dtype, None, gains, order, kept, bad | nan_scores)


def _discount(k: int, dtype) -> jax.Array:
  """``1 / log2(rank + 1)`` for the ranks ``1..k``."""
  return 1 / jnp.log2(jnp.arange(2, k + 2, dtype=dtype))


def _ranked_gains(q: _Queries, length: int | None = None) -> jax.Array:
  """The gains of the first ``length`` ranked items of each query, ``[N, length]``."""
  assert q.gains is not None and q.order is not None
  return jnp.take_along_axis(q.gains, q.order[:, :length], axis=1)


def _mean(value, kept, dtype) -> jax.Array:
  """The mean over kept queries; NaN when none is kept (0 / 0)."""
  total = jnp.sum(jnp.where(kept, value, jnp.zeros((), dtype)))
  return total / jnp.sum(kept).astype(dtype)


def _mean_by_rank(rank, per_query: Callable, dtype) -> jax.Array:
  """The mean of ``per_query(rank)`` over kept queries (``rank`` with its sentinels)."""
  value = per_query(jnp.maximum(rank, 1).astype(dtype))
  return _mean(value + contract.nan_where(rank < 0, dtype), rank != 0, dtype)


def _mean_by_gains(q: _Queries, value) -> jax.Array:
  """The mean of per-query ``value`` (relevance matrix) over kept queries."""
  assert q.kept is not None and q.undefined is not None
  return _mean(value + contract.nan_where(q.undefined, q.dtype), q.kept, q.dtype)


def _recall(rank, k):
  return (rank <= k).astype(rank.dtype)


def _ndcg(rank, k):
  # One relevant item: the ideal DCG is 1 (gain 1 at rank 1).
  return jnp.where(rank <= k, 1 / jnp.log2(rank + 1), jnp.zeros((), rank.dtype))


def _reciprocal_rank(rank):
  return 1 / rank


# ---------------------------------------------------------------------------------------
# The metrics.


@_shared_doc
def recall_at_k(scores, labels, *, k: int, exclude=None) -> jax.Array:
  r"""Recall at ``k``: the fraction of a query's relevant items ranked in its top ``k``.

  .. math::
    \mathrm{recall@}k = \frac{1}{|Q|} \sum_{n \in Q}
      \frac{|\mathrm{rel}_n \cap \mathrm{top}_k(n)|}{|\mathrm{rel}_n|}

  over the queries ``Q`` with a relevant item. With one relevant item per query it is the
  hit rate (:func:`hit_rate_at_k`).

  $rules

  Args:
    $scores
    $labels
    $k
    $exclude

  Returns:
    $returns

  Raises:
    $raises

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> scores = jnp.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]])
    >>> relevant = jnp.array([[True, True, False], [False, False, True]])
    >>> float(xentax.metrics.recall_at_k(scores, relevant, k=2))  # (1/2 + 1) / 2
    0.75
  """
  q, k = _queries("recall_at_k", scores, labels, exclude, k)
  if q.rank is not None:
    return _mean_by_rank(q.rank, lambda rank: _recall(rank, k), q.dtype)
  assert q.gains is not None
  hits = jnp.sum(_ranked_gains(q, k) > 0, axis=1)
  relevant = jnp.maximum(jnp.sum(q.gains > 0, axis=1), 1)
  return _mean_by_gains(q, hits.astype(q.dtype) / relevant.astype(q.dtype))


@_shared_doc
def hit_rate_at_k(scores, labels, *, k: int, exclude=None) -> jax.Array:
  r"""Hit rate at ``k``: the fraction of queries with a relevant item in their top ``k``.

  .. math::
    \mathrm{HR@}k = \frac{1}{|Q|} \sum_{n \in Q}
      \left[\, \mathrm{rel}_n \cap \mathrm{top}_k(n) \neq \emptyset \,\right]

  over the queries ``Q`` with a relevant item; equal to :func:`recall_at_k` for one relevant
  item per query.

  $rules

  Args:
    $scores
    $labels
    $k
    $exclude

  Returns:
    $returns

  Raises:
    $raises

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> scores = jnp.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]])
    >>> float(xentax.metrics.hit_rate_at_k(scores, jnp.array([2, 0]), k=2))
    0.5
  """
  q, k = _queries("hit_rate_at_k", scores, labels, exclude, k)
  if q.rank is not None:
    return _mean_by_rank(q.rank, lambda rank: _recall(rank, k), q.dtype)
  hit = jnp.any(_ranked_gains(q, k) > 0, axis=1)
  return _mean_by_gains(q, hit.astype(q.dtype))


@_shared_doc
def ndcg_at_k(scores, labels, *, k: int, exclude=None) -> jax.Array:
  r"""Normalised discounted cumulative gain at ``k``, with linear gains.

  .. math::
    \mathrm{DCG@}k(n) = \sum_{r=1}^{k} \frac{g_{n,\pi_n(r)}}{\log_2(r + 1)}, \qquad
    \mathrm{NDCG@}k = \frac{1}{|Q|} \sum_{n \in Q}
      \frac{\mathrm{DCG@}k(n)}{\mathrm{IDCG@}k(n)}

  where ``pi_n(r)`` is the item ranked ``r``-th for query ``n``, the gain ``g`` is the
  relevance grade (1 for the label of integer labels, 0 for an excluded item) and the ideal
  ``IDCG@k`` is the DCG of the grades sorted in decreasing order; ``Q``, the queries with a
  relevant item. This is scikit-learn's ``ndcg_score`` (linear gains, ``log2`` discount)
  for data without ties. In [0, 1].

  $rules

  Args:
    $scores
    $labels
    $k
    $exclude

  Returns:
    $returns

  Raises:
    $raises

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> scores = jnp.array([[0.9, 0.1, 0.5]])
    >>> round(float(xentax.metrics.ndcg_at_k(scores, jnp.array([2]), k=3)), 4)  # 1/log2(3)
    0.6309

  References:
    Järvelin and Kekäläinen, "Cumulated gain-based evaluation of IR techniques", 2002.
  """
  q, k = _queries("ndcg_at_k", scores, labels, exclude, k)
  if q.rank is not None:
    return _mean_by_rank(q.rank, lambda rank: _ndcg(rank, k), q.dtype)
  assert q.gains is not None
  discount = _discount(k, q.dtype)
  dcg = jnp.sum(_ranked_gains(q, k) * discount, axis=1)
  ideal = jnp.sum(lax.top_k(q.gains, k)[0] * discount, axis=1)
  return _mean_by_gains(q, dcg / jnp.where(ideal > 0, ideal, jnp.ones((), q.dtype)))


@_shared_doc
def mean_reciprocal_rank(scores, labels, *, exclude=None) -> jax.Array:
  r"""Mean reciprocal rank: the mean of ``1 / rank`` of each query's first relevant item.

  .. math::
    \mathrm{MRR} = \frac{1}{|Q|} \sum_{n \in Q} \frac{1}{\min_{j \in \mathrm{rel}_n}
      \mathrm{rank}_n(j)}

  over the queries ``Q`` with a relevant item; the rank is over the whole ranking (not cut
  at any ``k``), so the result lies in ``[1 / V, 1]``.

  $rules

  Args:
    $scores
    $labels
    $exclude

  Returns:
    $returns

  Raises:
    $raises

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> scores = jnp.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.3]])
    >>> float(xentax.metrics.mean_reciprocal_rank(scores, jnp.array([2, 1])))  # (1/2 + 1) / 2
    0.75

  References:
    Voorhees, "The TREC-8 question answering track report", 1999.
  """
  q, _ = _queries("mean_reciprocal_rank", scores, labels, exclude, None, cut=False)
  if q.rank is not None:
    return _mean_by_rank(q.rank, _reciprocal_rank, q.dtype)
  first = jnp.argmax(_ranked_gains(q) > 0, axis=1)
  return _mean_by_gains(q, 1 / (1 + first).astype(q.dtype))


# ---------------------------------------------------------------------------------------
# The chunked form: one relevant item per query, scores from embeddings.


class _Retrieval(NamedTuple):
  """Validated inputs of the chunked form."""

  query: jax.Array  # [N, D] in the compute dtype
  items: jax.Array  # [V, D] in the compute dtype
  labels: jax.Array  # [N] integer
  exclude_ids: jax.Array | None  # [N, L] integer, -1 for padding
  bad: jax.Array  # [N] a label or an excluded id out of range: the query is undefined
  left_out: jax.Array  # [N] the label is excluded: no relevant item left


def _retrieval_inputs(fn_name: str, query, items, labels, exclude_ids) -> _Retrieval:
  query = contract.float_array(fn_name, "query", query)
  items = contract.float_array(fn_name, "items", items)
  if query.ndim != 2 or items.ndim != 2 or query.shape[1] != items.shape[1]:
    raise ValueError(
      f"{fn_name}: query has shape {query.shape} and items {items.shape}; they must be "
      "[N, D] and [V, D] (one embedding per query and per item, of the same size D)."
    )
  if items.shape[0] == 0:
    raise ValueError(f"{fn_name}: items has shape {items.shape}; rank at least one item.")
  dtype = contract.compute_dtype(jnp.result_type(query, items))
  (num_queries, _), (num_items, _) = query.shape, items.shape
  labels, bad = _label_indices(fn_name, labels, num_queries, num_items)
  left_out = jnp.zeros(num_queries, bool)
  if exclude_ids is not None:
    exclude_ids = jnp.asarray(contract.to_array(fn_name, "exclude_ids", exclude_ids))
    if not jnp.issubdtype(exclude_ids.dtype, jnp.integer):
      raise TypeError(
        f"{fn_name}: exclude_ids must be integer item ids (-1 for padding), got dtype "
        f"{exclude_ids.dtype}."
      )
    if exclude_ids.ndim != 2 or exclude_ids.shape[0] != num_queries:
      raise ValueError(
        f"{fn_name}: exclude_ids has shape {exclude_ids.shape}; it must be [N={num_queries}, "
        "L]: up to L item ids per query, rows padded with -1."
      )
    outside = (exclude_ids < -1) | (exclude_ids >= num_items)
    what = f"exclude_ids must lie in [0, V={num_items}) or be -1 (padding)"
    contract.check_values(fn_name, what, exclude_ids, outside)
    bad = bad | jnp.any(outside, axis=1)
    left_out = jnp.any(exclude_ids == labels[:, None], axis=1)
  return _Retrieval(query.astype(dtype), items.astype(dtype), labels, exclude_ids, bad, left_out)


def _excluded_in_chunk(exclude_ids, start, size: int) -> jax.Array:
  """``[N, size]``: True for the items ``start + j`` that a query excludes.

  A scatter of the ids that fall in the chunk (``set``, so a repeated id counts once; the
  others, -1 padding included, are dropped): O(N L) work and O(N size) memory per chunk.
  """
  local = exclude_ids - start
  local = jnp.where((local >= 0) & (local < size), local, size)  # size: out of bounds
  rows = jnp.broadcast_to(jnp.arange(exclude_ids.shape[0])[:, None], exclude_ids.shape)
  mask = jnp.zeros((exclude_ids.shape[0], size), bool)
  return mask.at[rows, local].set(True, mode="drop")


def _chunked_ranks(r: _Retrieval, chunk_size: int) -> jax.Array:
  """``[N]`` label ranks with the sentinels of :func:`label_ranks`, ``chunk_size`` at a time."""
  (num_queries, _), (num_items, _) = r.query.shape, r.items.shape
  size = min(chunk_size, num_items)
  num_chunks = -(-num_items // size)
  labels = r.labels

  def step(t, carry):
    label_score, count, nan = carry
    counting = t >= num_chunks  # steps [0, num_chunks) read the labels' scores
    first = (t % num_chunks) * size  # the chunk's first item not seen before
    start = jnp.minimum(first, num_items - size)  # the last chunk overlaps the one before
    chunk = lax.dynamic_slice_in_dim(r.items, start, size)
    scores = jnp.dot(r.query, chunk.T, precision=lax.Precision.HIGHEST)  # [N, size]
    ids = start + jnp.arange(size)
    here = (labels >= first) & (labels < start + size)
    local = jnp.clip(labels - start, 0, size - 1)[:, None]
    read = jnp.take_along_axis(scores, local, axis=1)[:, 0]
    label_score = jnp.where(here & ~counting, read, label_score)
    ranked = jnp.broadcast_to(ids >= first, scores.shape)
    if r.exclude_ids is not None:
      ranked = ranked & ~_excluded_in_chunk(r.exclude_ids, start, size)
    above = _above(scores, ids, label_score[:, None], labels[:, None]) & ranked
    count = count + jnp.where(counting, jnp.sum(above, axis=1, dtype=jnp.int32), 0)
    nan = nan | (counting & jnp.any(jnp.isnan(scores) & ranked, axis=1))
    return label_score, count, nan

  init = (
    jnp.zeros(num_queries, r.query.dtype),
    jnp.zeros(num_queries, jnp.int32),
    jnp.zeros(num_queries, bool),
  )
  # Both passes in one loop body: one dot instruction computes every score the ranks read,
  # so a label's score is bitwise the one the other items are compared with.
  _, count, nan = lax.fori_loop(0, 2 * num_chunks, step, init)
  return _rank_or_sentinel(1 + count, bad_label=r.bad, left_out=r.left_out, nan_scores=nan)


def label_ranks(query, items, labels, *, exclude_ids=None, chunk_size: int = 16384) -> jax.Array:
  r"""The rank of each query's label among all items, without holding the ``[N, V]`` scores.

  .. math::
    \mathrm{rank}_n = 1 + \#\{\, j \notin E_n : s_{n,j} > s_{n,y_n} \;\text{or}\;
      (s_{n,j} = s_{n,y_n} \text{ and } j < y_n) \,\}, \qquad s = q\, X^\top

  the ranking rule of :func:`recall_at_k` (equal scores: the lower item index first), with
  ``E_n`` the ids query ``n`` excludes. The scores are computed ``chunk_size`` items at a
  time, twice (one pass reads the labels' scores, the next counts the items above them),
  in float32 at least (float64 stays float64) at ``Precision.HIGHEST``: temporaries are
  O(N chunk_size), never O(N V).

  Args:
    query: ``[N, D]`` float query embeddings.
    items: ``[V, D]`` float item embeddings; the scores are ``query @ items.T``.
    labels: integer ``[N]``, each query's one relevant item, in ``[0, V)``.
    exclude_ids: optional integer ``[N, L]`` item ids each query does not rank (seen in
      training), rows padded with -1; a repeated id counts once.
    chunk_size: items scored at a time (static; at most ``V`` is used). The result does not
      depend on it.

  Returns:
    ``[N]`` int32 ranks in ``[1, V]``, with two sentinels: 0 for a query left out (its
    label is excluded: no relevant item is left), -1 for a query whose rank is undefined (a
    NaN score among its ranked items; under ``jit``, a label or excluded id out of range).

  Raises:
    TypeError: non-float embeddings, or labels or ``exclude_ids`` that are not integers.
    ValueError: shapes that do not fit, a ``chunk_size`` below 1, or (on concrete inputs) a
      label outside ``[0, V)`` or an excluded id outside ``[-1, V)``.

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> query = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> items = jnp.array([[3.0, 0.0], [2.0, 2.0], [0.0, 1.0]])
    >>> xentax.metrics.label_ranks(query, items, jnp.array([1, 2]), chunk_size=2).tolist()
    [2, 2]
    >>> ids = jnp.array([[0, -1], [2, -1]])  # query 1's label is excluded: left out
    >>> xentax.metrics.label_ranks(query, items, jnp.array([1, 2]), exclude_ids=ids).tolist()
    [1, 0]
  """
  fn_name = "label_ranks"
  chunk_size = contract.positive_int(fn_name, "chunk_size", chunk_size)
  return _chunked_ranks(_retrieval_inputs(fn_name, query, items, labels, exclude_ids), chunk_size)


def retrieval_metrics(
  query,
  items,
  labels,
  *,
  k: int | tuple[int, ...] = 10,
  exclude_ids=None,
  chunk_size: int = 16384,
) -> dict[str, jax.Array]:
  r"""Recall, NDCG and hit rate at ``k`` and MRR of embedding retrieval, chunked over items.

  With one relevant item per query every metric is a function of the label's rank ``r``
  (:func:`label_ranks`), and the ``[N, V]`` scores ``query @ items.T`` are never held:

  .. math::
    \mathrm{recall@}k = \mathrm{HR@}k = [r \le k], \qquad
    \mathrm{NDCG@}k = \frac{[r \le k]}{\log_2(r + 1)}, \qquad
    \mathrm{RR} = \frac{1}{r}

  each averaged over the queries whose label is not excluded (NaN when none is). These
  equal :func:`recall_at_k`, :func:`ndcg_at_k`, :func:`hit_rate_at_k` and
  :func:`mean_reciprocal_rank` of the dense scores with the mask built from ``exclude_ids``.

  Args:
    query: ``[N, D]`` float query embeddings.
    items: ``[V, D]`` float item embeddings.
    labels: integer ``[N]``, each query's one relevant item, in ``[0, V)``.
    k: a cutoff in ``[1, V]``, or a tuple of them (static): one entry per metric and cutoff.
    exclude_ids: optional integer ``[N, L]`` item ids each query does not rank, rows padded
      with -1; a query whose label is among them is left out.
    chunk_size: items scored at a time (static). Temporaries are O(N chunk_size).

  Returns:
    A dict of scalars, float32 (float64 for float64 embeddings): ``"recall@k"`` for each
    ``k``, then ``"ndcg@k"``, ``"hit_rate@k"`` and ``"mrr"``.

  Raises:
    TypeError: as :func:`label_ranks`, or a ``k`` that is not an integer.
    ValueError: as :func:`label_ranks`, or a ``k`` outside ``[1, V]`` (or an empty tuple).

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> query = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    >>> items = jnp.array([[3.0, 0.0], [2.0, 2.0], [0.0, 1.0]])
    >>> m = xentax.metrics.retrieval_metrics(query, items, jnp.array([1, 2]), k=(1, 2))
    >>> {name: round(float(value), 4) for name, value in m.items()}  # both labels ranked 2nd
    {'recall@1': 0.0, 'recall@2': 1.0, 'ndcg@1': 0.0, 'ndcg@2': 0.6309, 'hit_rate@1': 0.0,
     'hit_rate@2': 1.0, 'mrr': 0.5}
  """
  fn_name = "retrieval_metrics"
  chunk_size = contract.positive_int(fn_name, "chunk_size", chunk_size)
  inputs = _retrieval_inputs(fn_name, query, items, labels, exclude_ids)
  num_items = inputs.items.shape[0]
  cutoffs = k if isinstance(k, tuple) else (k,)
  if not cutoffs:
    raise ValueError(f"{fn_name}: k=() names no cutoff; pass an integer or a tuple of them.")
  cutoffs = tuple(_cutoff(fn_name, c, num_items) for c in cutoffs)
  rank = _chunked_ranks(inputs, chunk_size)
  dtype = inputs.query.dtype
  out = {}
  for name, per_query in (("recall", _recall), ("ndcg", _ndcg), ("hit_rate", _recall)):
    for c in cutoffs:
      out[f"{name}@{c}"] = _mean_by_rank(rank, lambda r, c=c, f=per_query: f(r, c), dtype)
  out["mrr"] = _mean_by_rank(rank, _reciprocal_rank, dtype)
  return out
