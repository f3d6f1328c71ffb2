"""The ``recommender`` experiment at smoke scale on a generated MovieLens-format file."""

import json

import numpy as np
import pytest

from xentax import experiments
from xentax.experiments import _recommender

pytestmark = pytest.mark.slow  # trains six losses


def test_every_method_is_ranked_over_the_catalogue(tmp_path, movielens_cache):
  result = experiments.run("recommender", tmp_path, scale="smoke")
  config = _recommender.SCALES["smoke"]
  names = [r.run for r in result.rows]
  assert names == [
    "pointwise BCE, 4 sampled negatives",
    "full softmax",
    "sampled softmax, S = 8",
    "sampled softmax, S = 8, no correction",
    "in-batch softmax",
    "in-batch softmax, no correction",
    "most popular",
  ]
  for row in result.rows:
    x = row.extra
    assert 0 <= x["recall_at_10"] <= 1 and 0 <= x["ndcg_at_10"] <= x["recall_at_10"]
    assert 0 < x["mrr"] <= 1 and row.test_accuracy == x["recall_at_10"]
    assert np.isfinite(row.test_loss) and row.test_loss > 0
  assert all(r.extra["seeds"] == config.seeds for r in result.rows[:-1])
  lines = (tmp_path / "recommender" / "metrics.jsonl").read_text().splitlines()
  logged = [json.loads(line) for line in lines]
  assert len(logged) == 6 * config.checkpoints
  assert all(len(entry["recall"]) == config.seeds for entry in logged)
  assert result.info["num_users"] == 40 and result.info["num_items"] == 60
  assert (tmp_path / "recommender" / "curves.png").stat().st_size > 5_000


def test_the_most_popular_row_ranks_by_training_count(movielens_cache):
  """The popularity ranking's recall, computed here from the split by hand."""
  from xentax import data

  ratings = data.movielens_100k()
  counts = ratings.train_counts() + 1
  seen = ratings.train_matrix()
  hits = []
  for u, item in zip(ratings.test_users, ratings.test_items, strict=True):
    order = sorted(
      (i for i in range(ratings.num_items) if not seen[u, i]), key=lambda i: (-counts[i], i)
    )
    hits.append(item in order[:10])
  result = _recommender.study(ratings, _recommender.SCALES["smoke"])
  np.testing.assert_allclose(result["most_popular"]["recall"], np.mean(hits), rtol=1e-6)
