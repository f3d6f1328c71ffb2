"""Synthetic implicit feedback (user x item interactions) for a recommender."""

from __future__ import annotations

import numpy as np

from xentax.data._dataset import Dataset


def implicit_feedback(
  *,
  num_users: int = 300,
  num_items: int = 200,
  rank: int = 4,
  negatives_per_positive: int = 1,
  seed: int = 0,
  test_fraction: float = 0.2,
) -> Dataset:
  """Implicit feedback from a hidden low-rank taste model, with sampled negatives.

  Each user and item gets a hidden ``rank``-dimensional factor; user ``u`` interacts with
  item ``i`` with probability ``sigmoid(u . i + item_popularity - 2)``. Observed
  interactions are the positives (label 1); for each one, ``negatives_per_positive``
  non-interacted items of the same user are sampled as negatives (label 0), as in
  implicit-feedback training. Pairs are then split into train and test.

  Args:
    num_users, num_items: sizes of the matrix.
    rank: rank of the hidden taste model.
    negatives_per_positive: sampled negatives per positive.
    seed: drives the taste model, the sampling and the split.
    test_fraction: fraction of pairs held out.

  Returns:
    An ``"implicit_feedback"`` :class:`Dataset`: ``x`` is ``[N, 2]`` int32 ``(user, item)``,
    ``y`` is int32 0/1; ``info`` has the sizes.

  Raises:
    ValueError: non-positive sizes.
  """
  if min(num_users, num_items, rank, negatives_per_positive) < 1:
    raise ValueError("num_users, num_items, rank and negatives_per_positive must be >= 1")
  rng = np.random.default_rng(seed)
  users = rng.normal(0, 1, (num_users, rank))
  items = rng.normal(0, 1, (num_items, rank))
  popularity = rng.normal(0, 1, num_items)
  logits = users @ items.T + popularity - 2.0
  interacted = rng.random((num_users, num_items)) < 1 / (1 + np.exp(-logits))
  pairs, labels = [], []
  for u in range(num_users):
    pos = np.flatnonzero(interacted[u])
    neg = np.flatnonzero(~interacted[u])
    if len(pos) == 0 or len(neg) == 0:
      continue
    num_neg = min(len(neg), negatives_per_positive * len(pos))
    neg = rng.choice(neg, size=num_neg, replace=False)
    pairs += [(u, i) for i in pos] + [(u, i) for i in neg]
    labels += [1] * len(pos) + [0] * num_neg
  pairs_Nx2 = np.asarray(pairs, np.int32)
  labels_N = np.asarray(labels, np.int32)
  order = rng.permutation(len(labels_N))
  num_test = round(len(order) * test_fraction)
  test, train = order[:num_test], order[num_test:]
  return Dataset(
    name="implicit_feedback",
    task="implicit_feedback",
    x_train=pairs_Nx2[train],
    y_train=labels_N[train],
    x_test=pairs_Nx2[test],
    y_test=labels_N[test],
    num_classes=2,
    info={"num_users": num_users, "num_items": num_items, "density": float(interacted.mean())},
  )
