"""Recall, NDCG, hit rate and MRR at k, dense and chunked, against a float64 NumPy reference."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import ndcg_score

from tests._tolerances import tol
from xentax import metrics

DENSE = {
  "recall": metrics.recall_at_k,
  "ndcg": metrics.ndcg_at_k,
  "hit_rate": metrics.hit_rate_at_k,
  "mrr": lambda s, y, *, k, exclude=None: metrics.mean_reciprocal_rank(s, y, exclude=exclude),
}


# ---------------------------------------------------------------------------------------
# The reference: one query at a time, Python's sort, written from the definitions.


def _ranking(scores, excluded):
  """Item indices, best first: non-excluded items by score, then by index."""
  return sorted((j for j in range(len(scores)) if not excluded[j]), key=lambda j: (-scores[j], j))


def reference(scores, relevance, k, exclude=None):
  """``{metric: mean over queries with a relevant non-excluded item}`` (NaN if none)."""
  scores = np.asarray(scores, np.float64)
  relevance = np.asarray(relevance, np.float64)
  exclude = np.zeros(scores.shape, bool) if exclude is None else np.asarray(exclude)
  values = {name: [] for name in DENSE}
  for s, g, ex in zip(scores, relevance, exclude, strict=True):
    g = np.where(ex, 0.0, g)
    if not (g > 0).any():
      continue  # no relevant item left: the query is left out
    if np.isnan(s[~ex]).any():
      for name in values:
        values[name].append(np.nan)
      continue
    ranked = g[_ranking(s, ex)]
    top = ranked[:k]
    discount = 1 / np.log2(np.arange(2, k + 2))
    ideal = np.sort(g)[::-1][:k]
    values["recall"].append((top > 0).sum() / (g > 0).sum())
    values["hit_rate"].append(float((top > 0).any()))
    values["ndcg"].append((top * discount[: len(top)]).sum() / (ideal * discount).sum())
    values["mrr"].append(1 / (1 + np.argmax(ranked > 0)))
  return {name: np.mean(v) if v else np.nan for name, v in values.items()}


def reference_rank(scores, label, excluded):
  """The label's 1-based rank, 0 when it is excluded."""
  return 0 if excluded[label] else 1 + _ranking(scores, excluded).index(label)


rng = np.random.default_rng(11)
N, V = 24, 9
# Scores on a coarse grid: many ties, and -0.0 next to 0.0.
SCORES = np.round(rng.normal(size=(N, V)), 1)
SCORES[0, :4] = [0.0, -0.0, 0.0, -0.0]
LABELS = rng.integers(0, V, N)
GRADES = rng.integers(0, 4, (N, V)) * (rng.random((N, V)) < 0.4)
GRADES[1] = 0  # no relevant item: left out
EXCLUDE = rng.random((N, V)) < 0.25
EXCLUDE[2, LABELS[2]] = True  # the label excluded: left out
EXCLUDE[3] = GRADES[3] > 0  # every relevant item excluded: left out
RELEVANCE = {
  "int": LABELS,
  "one_hot": np.eye(V, dtype=bool)[LABELS],
  "bool": GRADES > 0,
  "grades": GRADES.astype(np.float64),
}


@pytest.mark.parametrize("exclude", [None, EXCLUDE], ids=["all", "exclude"])
@pytest.mark.parametrize("kind", list(RELEVANCE))
def test_dense_metrics_match_the_reference(kind, exclude):
  labels = RELEVANCE[kind]
  relevance = np.eye(V)[labels] if kind == "int" else labels
  for k in (1, 3, V):
    want = reference(SCORES, relevance, k, exclude)
    for name, fn in DENSE.items():
      got = fn(SCORES, labels, k=k, exclude=exclude)
      assert got.shape == () and got.dtype == jnp.float64
      np.testing.assert_allclose(got, want[name], **tol("float64"), err_msg=f"{name}@{k}")
    if kind in ("int", "one_hot"):  # one relevant item: a hit is the whole recall
      assert metrics.hit_rate_at_k(SCORES, labels, k=k, exclude=exclude) == metrics.recall_at_k(
        SCORES, labels, k=k, exclude=exclude
      )


@pytest.mark.parametrize("k", [1, 4, 10])
def test_ndcg_matches_scikit_learn(k):
  scores = rng.normal(size=(16, 10))  # continuous: no ties
  grades = rng.integers(0, 4, (16, 10)).astype(np.float64)
  grades[np.arange(16), rng.integers(0, 10, 16)] = 2.0  # every query has a relevant item
  want = ndcg_score(grades, scores, k=k)
  np.testing.assert_allclose(metrics.ndcg_at_k(scores, grades, k=k), want, **tol("float64"))


def test_the_tie_rule_is_the_lower_index_first():
  scores = np.array([[1.0, 1.0, 1.0, 0.0], [0.0, -0.0, 2.0, -0.0]])
  assert float(metrics.mean_reciprocal_rank(scores[:1], [2])) == 1 / 3
  exclude = np.array([[True, False, False, False], [False] * 4])
  assert float(metrics.mean_reciprocal_rank(scores[:1], [2], exclude=exclude[:1])) == 1 / 2
  # -0.0 ties with 0.0: item 3 ranks after items 0 and 1 (and item 2), in both code paths.
  assert float(metrics.mean_reciprocal_rank(scores[1:], [3])) == 1 / 4
  assert float(metrics.mean_reciprocal_rank(scores[1:], np.eye(4, dtype=bool)[[3]])) == 1 / 4
  relevant = np.array([[False, True, True, False]])
  assert float(metrics.recall_at_k(scores[:1], relevant, k=1)) == 0.0  # item 0 is first
  assert float(metrics.recall_at_k(scores[:1], relevant, k=2)) == 0.5
  # The top k are jax.lax.top_k's k.
  _, top = jax.lax.top_k(jnp.asarray(SCORES), 3)
  in_top = np.zeros((N, V), bool)
  np.put_along_axis(in_top, np.asarray(top), True, axis=1)
  assert float(metrics.recall_at_k(SCORES, in_top, k=3)) == 1.0


def test_left_out_queries_and_nan():
  scores = SCORES[:3].copy()
  exclude = np.zeros((3, V), bool)
  exclude[0, LABELS[0]] = True
  one = metrics.ndcg_at_k(scores[1:], LABELS[1:3], k=3)
  np.testing.assert_allclose(metrics.ndcg_at_k(scores, LABELS[:3], k=3, exclude=exclude), one)
  exclude[:, :] = True
  for fn in DENSE.values():
    assert np.isnan(fn(scores, LABELS[:3], k=3, exclude=exclude))
    assert np.isnan(fn(scores, np.zeros((3, V)), k=3))
  # A NaN score of a ranked item makes the query, and the mean, NaN ...
  scores[2, (LABELS[2] + 1) % V] = np.nan
  for kind in ("int", "grades"):
    labels = RELEVANCE[kind][:3]
    for fn in DENSE.values():
      assert np.isnan(fn(scores, labels, k=3))
  # ... but an excluded item's score is never read, and a left-out query is left out.
  exclude = np.isnan(scores)
  want = metrics.mean_reciprocal_rank(np.nan_to_num(scores), LABELS[:3], exclude=exclude)
  got = metrics.mean_reciprocal_rank(scores, LABELS[:3], exclude=exclude)
  assert np.isfinite(got) and got == want
  exclude = np.zeros((3, V), bool)
  exclude[2, LABELS[2]] = True
  assert np.isfinite(metrics.mean_reciprocal_rank(scores, LABELS[:3], exclude=exclude))


def test_float32_and_jit():
  s32 = SCORES.astype(np.float32)
  for kind in ("int", "grades"):
    labels = RELEVANCE[kind]
    for name, fn in DENSE.items():
      eager = fn(s32, labels, k=3)
      assert eager.dtype == jnp.float32
      jitted = jax.jit(functools.partial(fn, k=3))(s32, labels)
      np.testing.assert_allclose(jitted, eager, **tol("float32"), err_msg=name)
      np.testing.assert_allclose(eager, fn(SCORES, labels, k=3), **tol("float32"))


# ---------------------------------------------------------------------------------------
# The chunked form.

NQ, NI, D = 20, 36, 3
# Small integer embeddings: every score is exact, and many tie.
QUERY = rng.integers(-2, 3, (NQ, D)).astype(np.float64)
ITEMS = rng.integers(-2, 3, (NI, D)).astype(np.float64)
ITEM_LABELS = rng.integers(0, NI, NQ)
EXCLUDE_IDS = rng.integers(-1, NI, (NQ, 6))
EXCLUDE_IDS[:, 5] = EXCLUDE_IDS[:, 0]  # duplicates are excluded once
EXCLUDE_IDS[3, 2] = ITEM_LABELS[3]  # the label excluded: left out
EXCLUDE_IDS[4] = -1  # padding only


def _mask(ids, num_items):
  mask = np.zeros((len(ids), num_items), bool)
  for row, row_ids in zip(mask, ids, strict=True):
    row[row_ids[row_ids >= 0]] = True
  return mask


@pytest.mark.parametrize("chunk_size", [4, 7, 100])  # divides V, does not, exceeds V
def test_chunked_metrics_equal_the_dense_ones(chunk_size):
  scores = QUERY @ ITEMS.T
  mask = _mask(EXCLUDE_IDS, NI)
  for exclude_ids, exclude in ((None, None), (EXCLUDE_IDS, mask)):
    ranks = metrics.label_ranks(
      QUERY, ITEMS, ITEM_LABELS, exclude_ids=exclude_ids, chunk_size=chunk_size
    )
    excluded = np.zeros((NQ, NI), bool) if exclude is None else exclude
    want_ranks = [reference_rank(*args) for args in zip(scores, ITEM_LABELS, excluded, strict=True)]
    assert ranks.dtype == jnp.int32 and ranks.tolist() == want_ranks
    got = metrics.retrieval_metrics(
      QUERY, ITEMS, ITEM_LABELS, k=(1, 5, NI), exclude_ids=exclude_ids, chunk_size=chunk_size
    )
    assert list(got)[:3] == ["recall@1", "recall@5", f"recall@{NI}"] and list(got)[-1] == "mrr"
    for k in (1, 5, NI):
      for name in ("recall", "ndcg", "hit_rate"):
        want = DENSE[name](scores, ITEM_LABELS, k=k, exclude=exclude)
        np.testing.assert_allclose(got[f"{name}@{k}"], want, **tol("float64"))
    want = metrics.mean_reciprocal_rank(scores, ITEM_LABELS, exclude=exclude)
    np.testing.assert_allclose(got["mrr"], want, **tol("float64"))
  assert ranks[3] == 0 and (ranks > 0).any()


def test_chunked_float32_jit_and_nan():
  f = jax.jit(functools.partial(metrics.retrieval_metrics, k=5, chunk_size=8))
  got = f(QUERY.astype(np.float32), ITEMS.astype(np.float32), ITEM_LABELS)
  assert set(got) == {"recall@5", "ndcg@5", "hit_rate@5", "mrr"}
  assert got["mrr"].dtype == jnp.float32
  want = metrics.ndcg_at_k((QUERY @ ITEMS.T).astype(np.float32), ITEM_LABELS, k=5)
  np.testing.assert_allclose(got["ndcg@5"], want, **tol("float32"))
  items = ITEMS.copy()
  items[7, 0] = np.nan
  ranks = metrics.label_ranks(QUERY, items, ITEM_LABELS, chunk_size=8)
  assert ranks.tolist() == [-1] * NQ  # a NaN score for every query: undefined
  assert np.isnan(metrics.retrieval_metrics(QUERY, items, ITEM_LABELS)["mrr"])
  # Excluding the NaN item ranks the rest.
  ids = np.full((NQ, 1), 7)
  ranks = metrics.label_ranks(QUERY, items, ITEM_LABELS, exclude_ids=ids, chunk_size=8)
  assert ((ranks > 0) | (ITEM_LABELS == 7)).all() and (ranks[ITEM_LABELS == 7] == 0).all()


def test_chunked_temporaries_are_o_n_chunk():
  n, v, d, chunk = 64, 2**16, 16, 1024
  args = (
    jax.ShapeDtypeStruct((n, d), jnp.float32),
    jax.ShapeDtypeStruct((v, d), jnp.float32),
    jax.ShapeDtypeStruct((n,), jnp.int32),
    jax.ShapeDtypeStruct((n, 32), jnp.int32),
  )

  def f(query, items, labels, ids):
    return metrics.retrieval_metrics(
      query, items, labels, k=(1, 10), exclude_ids=ids, chunk_size=chunk
    )

  temp = jax.jit(f).lower(*args).compile().memory_analysis().temp_size_in_bytes
  assert temp < n * v * 4 / 8, temp  # the [N, V] scores alone would be n * v * 4 bytes


# ---------------------------------------------------------------------------------------
# Errors.


def test_k_must_be_an_integer_in_1_to_v():
  for k in (0, V + 1):
    with pytest.raises(ValueError, match=rf"k={k} is outside \[1, V={V}\].*1 <= k <= {V}"):
      metrics.recall_at_k(SCORES, LABELS, k=k)
  for k in (2.0, True, None):
    with pytest.raises(TypeError, match="k=.* must be a Python or NumPy integer"):
      metrics.ndcg_at_k(SCORES, LABELS, k=k)
  assert metrics.hit_rate_at_k(SCORES, LABELS, k=np.int64(V)) == 1.0
  with pytest.raises(ValueError, match=rf"k={NI + 1} is outside \[1, V={NI}\]"):
    metrics.retrieval_metrics(QUERY, ITEMS, ITEM_LABELS, k=(1, NI + 1))
  with pytest.raises(ValueError, match="k=\\(\\) names no cutoff"):
    metrics.retrieval_metrics(QUERY, ITEMS, ITEM_LABELS, k=())
  with pytest.raises(ValueError, match="chunk_size=0 must be a positive integer"):
    metrics.label_ranks(QUERY, ITEMS, ITEM_LABELS, chunk_size=0)


@pytest.mark.parametrize(
  "scores, labels, exclude, error, match",
  [
    (SCORES[0], LABELS[:1], None, ValueError, r"scores has shape \(9,\); it must be \[N, V\]"),
    (SCORES, LABELS[:-1], None, ValueError, r"labels has shape \(23,\).*N=24.*shape \(24,\)"),
    (SCORES, GRADES[:, :-1], None, ValueError, r"labels has shape \(24, 8\).*\(24, 9\)"),
    (SCORES, LABELS * 1.0, None, TypeError, "must be integer item indices"),
    (SCORES, LABELS, EXCLUDE[:-1], ValueError, r"exclude has shape \(23, 9\).*\(24, 9\)"),
    (SCORES, LABELS, EXCLUDE * 1, TypeError, "exclude must be a boolean mask"),
    (LABELS, LABELS, None, TypeError, "scores must be a floating-point array"),
    (SCORES, LABELS + V, None, ValueError, r"labels must lie in \[0, V=9\); found"),
    (SCORES, -GRADES, None, ValueError, "relevance grades must be finite and >= 0"),
  ],
)
def test_dense_errors_name_the_argument_and_the_fix(scores, labels, exclude, error, match):
  with pytest.raises(error, match=match):
    metrics.recall_at_k(scores, labels, k=1, exclude=exclude)


@pytest.mark.parametrize(
  "query, items, labels, ids, error, match",
  [
    (QUERY, ITEMS[:, :2], ITEM_LABELS, None, ValueError, r"\[N, D\] and \[V, D\]"),
    (QUERY, ITEMS, ITEM_LABELS[:-1], None, ValueError, r"labels has shape \(19,\)"),
    (QUERY, ITEMS, ITEM_LABELS - NI, None, ValueError, r"labels must lie in \[0, V=36\)"),
    (QUERY, ITEMS, ITEM_LABELS, EXCLUDE_IDS[:-1], ValueError, r"exclude_ids has shape"),
    (QUERY, ITEMS, ITEM_LABELS, EXCLUDE_IDS - 1, ValueError, r"or be -1 \(padding\)"),
    (QUERY, ITEMS, ITEM_LABELS, EXCLUDE_IDS * 1.0, TypeError, "exclude_ids must be integer"),
  ],
)
def test_chunked_errors(query, items, labels, ids, error, match):
  with pytest.raises(error, match=match):
    metrics.retrieval_metrics(query, items, labels, exclude_ids=ids)


def test_values_out_of_range_under_jit_give_nan():
  labels = LABELS.copy()
  labels[0] = V
  got = jax.jit(functools.partial(metrics.mean_reciprocal_rank))(SCORES, labels)
  assert np.isnan(got)
  grades = GRADES.astype(np.float64)
  grades[5, 0] = -1.0
  assert np.isnan(jax.jit(functools.partial(metrics.ndcg_at_k, k=2))(SCORES, grades))
  labels = ITEM_LABELS.copy()
  labels[0] = NI
  ranks = jax.jit(metrics.label_ranks)(QUERY, ITEMS, labels)
  assert ranks[0] == -1 and (ranks[1:] > 0).all()


# ---------------------------------------------------------------------------------------
# Properties.


@settings(max_examples=12, deadline=None)
@given(
  st.integers(1, 4),
  st.integers(1, 6),
  st.data(),
)
def test_properties(num_queries, num_items, data):
  k = data.draw(st.integers(1, num_items))
  grid = st.lists(st.integers(-3, 3), min_size=num_items, max_size=num_items)
  scores = np.array(data.draw(st.lists(grid, min_size=num_queries, max_size=num_queries)))
  scores = scores / 2.0  # ties, on purpose
  labels = np.array(
    data.draw(st.lists(st.integers(0, num_items - 1), min_size=num_queries, max_size=num_queries))
  )
  values = {name: float(fn(scores, labels, k=k)) for name, fn in DENSE.items()}
  assert all(0 <= v <= 1 for v in values.values()), values
  assert values["hit_rate"] == values["recall"] and values["ndcg"] <= values["recall"]
  assert values["mrr"] >= 1 / num_items - 1e-12
  assert float(metrics.recall_at_k(scores, labels, k=num_items)) == 1.0
  want = reference(scores, np.eye(num_items)[labels], k)
  np.testing.assert_allclose(list(values.values()), [want[n] for n in values], **tol("float64"))
