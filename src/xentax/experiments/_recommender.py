r"""Recommendation on MovieLens 100K: one matrix-factorisation model, five training losses,
ranked over the whole catalogue.

Design notes:
  The model scores user ``u`` and item ``i`` as ``s(u, i) = p_u . q_i + b_i``. Each method
  trains it from the same start on the same batches of training interactions (the
  leave-last-out split of :func:`xentax.data.movielens_100k`) with Adam:

  * pointwise BCE with sampled negatives: each ``(u, i)`` a positive, ``negatives`` items
    drawn uniformly per positive as negatives (the binary framing of implicit feedback);
  * the full softmax over all items (:func:`xentax.fused_linear_cross_entropy`);
  * the sampled softmax over ``S`` items drawn by popularity
    (:func:`xentax.sampling.unigram_candidates`), with the ``log Q`` correction and without;
  * the in-batch softmax (:func:`xentax.in_batch_softmax_cross_entropy`: the batch's other
    items are the negatives; ``b_i`` rides as one more embedding dimension), with the
    popularity correction ``log Q_i = log(n_i / N)`` and without.

  Items enter a batch, or a popularity sample, in proportion to their popularity, so an
  uncorrected sampled or in-batch softmax pushes popular items down: the record shows it as
  the mean training popularity of each method's top 10. Every method is scored on each
  user's held-out (latest) item, against the whole catalogue with the user's training items
  excluded: recall@10 (= hit rate@10 for one held-out item), NDCG@10 and MRR, mean and
  standard deviation over seeds, at ``checkpoints`` equal steps of training. The seeds run
  side by side (``vmap``), one compiled segment of steps per loss.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import xentax
from xentax import data as xdata
from xentax import metrics, plots
from xentax.experiments._records import ExperimentResult, RunRecord
from xentax.training import RunWriter


@dataclasses.dataclass(frozen=True)
class RecommenderConfig:
  """The study (what ``config.json`` records)."""

  dim: int = 32
  epochs: int = 1
  checkpoints: int = 4  # evaluations, at equal steps
  batch_size: int = 1024
  lr: float = 0.03
  negatives: int = 4
  sampled: int = 256
  seeds: int = 5
  k: int = 10


SCALES = {
  "full": RecommenderConfig(),
  "quick": RecommenderConfig(seeds=3, checkpoints=2),
  "smoke": RecommenderConfig(dim=8, epochs=2, batch_size=16, sampled=8, seeds=2, checkpoints=2),
}


def _scores(params):
  """``[users, items]`` scores ``p_u . q_i + b_i``."""
  return params["user"] @ params["item"].T + params["bias"]


def _losses(counts, config: RecommenderConfig) -> dict[str, tuple[Callable, float]]:
  """name -> (loss(params, users, items, key, scale), scale); ``scale`` multiplies the
  ``log Q`` correction, so the corrected and uncorrected runs share one compiled epoch."""
  num_items = counts.shape[0]
  log_p = jnp.log(counts / jnp.sum(counts))

  def pointwise(p, u, i, key, scale):
    del scale
    negatives = jax.random.randint(key, (len(i), config.negatives), 0, num_items)
    items = jnp.concatenate([i[:, None], negatives], axis=1)
    logits = jnp.einsum("nd,nkd->nk", p["user"][u], p["item"][items]) + p["bias"][items]
    labels = jnp.zeros_like(logits).at[:, 0].set(1.0)
    return xentax.binary_cross_entropy_with_logits(logits, labels)

  def full(p, u, i, key, scale):
    del key, scale
    logits = p["user"][u] @ p["item"].T + p["bias"]
    return xentax.sparse_categorical_cross_entropy_with_logits(logits, i)

  def sampled(p, u, i, key, scale):
    c = xentax.sampling.unigram_candidates(key, i, config.sampled, counts, unique=False)
    return xentax.sampled_softmax_cross_entropy(
      p["user"][u], p["item"].T, i, c.sampled_classes, sampled_log_q=scale * c.sampled_log_q,
      true_log_q=scale * c.true_log_q, bias=p["bias"],
    )  # fmt: skip

  def in_batch(p, u, i, key, scale):
    del key
    query = jnp.concatenate([p["user"][u], jnp.ones((len(u), 1))], axis=1)
    item = jnp.concatenate([p["item"][i], p["bias"][i][:, None]], axis=1)
    return xentax.in_batch_softmax_cross_entropy(query, item, item_ids=i, log_q=scale * log_p[i])

  return {
    f"pointwise BCE, {config.negatives} sampled negatives": (pointwise, 0.0),
    "full softmax": (full, 0.0),
    f"sampled softmax, S = {config.sampled}": (sampled, 1.0),
    f"sampled softmax, S = {config.sampled}, no correction": (sampled, 0.0),
    "in-batch softmax": (in_batch, 1.0),
    "in-batch softmax, no correction": (in_batch, 0.0),
  }


def _segment_fn(loss: Callable, optimizer, users, items):
  """Steps of every seed at once: ``(params, opt_state, batches [seeds, steps, B], keys
  [seeds, steps], scale) -> (params, opt_state, mean training loss)``."""

  def one_seed(params, opt_state, batches, keys, scale):
    def step(carry, batch):
      params, opt_state = carry
      idx, k = batch
      value, grads = jax.value_and_grad(loss)(params, users[idx], items[idx], k, scale)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), value

    (params, opt_state), values = jax.lax.scan(step, (params, opt_state), (batches, keys))
    return params, opt_state, jnp.mean(values)

  return jax.jit(jax.vmap(one_seed, in_axes=(0, 0, 0, 0, None)))


def _schedule(seeds, count: int, config: RecommenderConfig):
  """Per checkpoint: ``(batches [seeds, steps, B], keys [seeds, steps])``, each seed its own
  order of the ``count`` training interactions over ``config.epochs`` epochs."""
  per_epoch = count // config.batch_size

  def order(key):
    keys = jax.random.split(key, config.epochs)
    perms = [jax.random.permutation(k, count)[: per_epoch * config.batch_size] for k in keys]
    return jnp.concatenate(perms).reshape(-1, config.batch_size)

  batches = jax.vmap(order)(seeds)
  keys = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, 1), batches.shape[1]))(seeds)
  steps = batches.shape[1] // config.checkpoints
  return [
    (batches[:, c * steps : (c + 1) * steps], keys[:, c * steps : (c + 1) * steps])
    for c in range(config.checkpoints)
  ], steps


@functools.partial(jax.jit, static_argnames="k")
def _rank_scores(scores, test_items, seen, counts, *, k: int):
  """Recall@k, NDCG@k and MRR of ``[users, items]`` scores (seen items excluded), their
  full-softmax test cross-entropy and the mean training count of each user's top ``k``."""
  top = jax.lax.top_k(jnp.where(seen, -jnp.inf, scores), k)[1]
  return {
    "recall": metrics.recall_at_k(scores, test_items, k=k, exclude=seen),
    "ndcg": metrics.ndcg_at_k(scores, test_items, k=k, exclude=seen),
    "mrr": metrics.mean_reciprocal_rank(scores, test_items, exclude=seen),
    "test_loss": xentax.sparse_categorical_cross_entropy_with_logits(scores, test_items),
    "top_popularity": jnp.mean(counts[top]),
  }


@functools.partial(jax.jit, static_argnames="k")
def _evaluate(params, test_items, seen, counts, *, k: int):
  """:func:`_rank_scores` of each seed's model."""
  return jax.vmap(lambda p: _rank_scores(_scores(p), test_items, seen, counts, k=k))(params)


def _init(key, num_users, num_items, dim):
  k_user, k_item = jax.random.split(key)
  return {
    "user": 0.1 * jax.random.normal(k_user, (num_users, dim)),
    "item": 0.1 * jax.random.normal(k_item, (num_items, dim)),
    "bias": jnp.zeros(num_items),
  }


def study(ratings: xdata.Interactions, config: RecommenderConfig) -> dict[str, Any]:
  """Every method over ``config.seeds`` seeds: training loss and test metrics at each
  checkpoint.

  Returns:
    ``{"methods": {name: {"train_loss": [checkpoints x [seeds]], "history": [checkpoints x
    {metric: [seeds]}]}}, "steps": [checkpoints], "most_popular": {metric: value},
    "test_item_popularity": float}``.
  """
  users, items = jnp.asarray(ratings.train_users), jnp.asarray(ratings.train_items)
  # +1: every item can be drawn, and a held-out item unseen in training has finite log Q.
  counts = jnp.asarray(ratings.train_counts() + 1, jnp.float32)
  test_users = np.asarray(ratings.test_users)
  test_items = jnp.asarray(ratings.test_items)
  seen = jnp.asarray(ratings.train_matrix()[test_users])
  seeds = jax.random.split(jax.random.key(0), config.seeds)
  params0 = jax.vmap(lambda k: _init(k, ratings.num_users, ratings.num_items, config.dim))(seeds)
  optimizer = optax.adam(config.lr)
  evaluate = functools.partial(_evaluate, seen=seen, counts=counts, k=config.k)
  schedule, steps = _schedule(seeds, len(ratings.train_users), config)
  out: dict[str, Any] = {}
  segments: dict[Any, Callable] = {}  # one compiled segment per loss function
  for name, (loss, scale) in _losses(counts, config).items():
    if loss not in segments:
      segments[loss] = _segment_fn(loss, optimizer, users, items)
    params, opt_state = params0, jax.vmap(optimizer.init)(params0)
    train_loss, history = [], []
    for batches, keys in schedule:
      params, opt_state, value = segments[loss](params, opt_state, batches, keys, scale)
      train_loss.append(np.asarray(value).tolist())
      at_test = {**params, "user": params["user"][:, test_users]}
      history.append(jax.tree.map(lambda x: np.asarray(x).tolist(), evaluate(at_test, test_items)))
    out[name] = {"train_loss": train_loss, "history": history}
  # log counts: the popularity ranking, and a softmax that is the popularity distribution.
  popular = jnp.broadcast_to(jnp.log(counts), seen.shape)
  most_popular = {
    key: float(value)
    for key, value in _rank_scores(popular, test_items, seen, counts, k=config.k).items()
  }
  return {
    "methods": out,
    "steps": [steps * (c + 1) for c in range(config.checkpoints)],
    "most_popular": most_popular,
    "test_item_popularity": float(jnp.mean(counts[test_items])),
  }


def _summary(values) -> tuple[float, float]:
  values = np.asarray(values, np.float64)
  return float(values.mean()), float(values.std())


def recommender(root: Path, scale: str) -> ExperimentResult:
  """Matrix factorisation on MovieLens 100K under each training loss, over seeds.

  Fetches the data once (:func:`xentax.data.fetch_movielens_100k`). Writes
  ``config.json``, ``metrics.jsonl`` (one line per method and checkpoint) and ``curves.png``
  into ``root``. One row per method and one for the most-popular ranking; ``test_accuracy``
  is recall@10, ``test_loss`` the full-softmax cross-entropy of the held-out items (for the
  most-popular row, of the training popularity). Row ``extra``: ``recall_at_10``,
  ``ndcg_at_10``, ``mrr`` (each with ``_std`` over seeds), ``top_popularity`` and
  ``seeds``; ``info``: the data's sizes and the held-out items' mean training count.
  """
  config = SCALES[scale]
  ratings = xdata.movielens_100k(xdata.fetch_movielens_100k())
  writer = RunWriter(root, {"scale": scale, **dataclasses.asdict(config)}, overwrite=True)
  result = study(ratings, config)
  dataset = f"MovieLens 100K, leave-last-out ({ratings.num_users} users)"
  rows, curves, popularity = [], {}, {}
  for name, m in result["methods"].items():
    for step, loss, h in zip(result["steps"], m["train_loss"], m["history"], strict=True):
      writer.log({"method": name, "step": step, "train_loss": loss, **h})
    last = m["history"][-1]
    stats = {key: _summary(last[key]) for key in ("recall", "ndcg", "mrr")}
    curves[name] = {
      "steps": result["steps"],
      "train_loss": [float(np.mean(v)) for v in m["train_loss"]],
      "metric": [float(np.mean(h["recall"])) for h in m["history"]],
    }
    popularity[name] = float(np.mean(last["top_popularity"]))
    rows.append(
      RunRecord(
        run=name,
        model=f"matrix factorisation, D = {config.dim}",
        dataset=dataset,
        loss=name,
        optimizer=f"adam, lr={config.lr}",
        epochs=config.epochs,
        test_accuracy=stats["recall"][0],
        test_loss=float(np.mean(last["test_loss"])),
        curves=f"{root.name}/curves.png",
        extra={
          "recall_at_10": stats["recall"][0],
          "recall_at_10_std": stats["recall"][1],
          "ndcg_at_10": stats["ndcg"][0],
          "ndcg_at_10_std": stats["ndcg"][1],
          "mrr": stats["mrr"][0],
          "mrr_std": stats["mrr"][1],
          "top_popularity": popularity[name],
          "seeds": config.seeds,
        },
      )
    )
  pop = result["most_popular"]
  rows.append(
    RunRecord(
      run="most popular",
      model="training popularity (no model)",
      dataset=dataset,
      loss="-",
      optimizer="-",
      epochs=0,
      test_accuracy=pop["recall"],
      test_loss=pop["test_loss"],
      curves=f"{root.name}/curves.png",
      extra={
        "recall_at_10": pop["recall"],
        "ndcg_at_10": pop["ndcg"],
        "mrr": pop["mrr"],
        "top_popularity": pop["top_popularity"],
      },
    )
  )
  figure = plots.ranking_by_method(
    curves,
    popularity,
    reference_popularity=result["test_item_popularity"],
    title=f"MovieLens 100K, {config.seeds} seeds: one model, six training losses",
  )
  plots.save(figure, root / "curves.png")
  info = {
    "num_users": ratings.num_users,
    "num_items": ratings.num_items,
    "train_interactions": len(ratings.train_users),
    "test_item_popularity": result["test_item_popularity"],
  }
  return ExperimentResult("recommender", scale, rows, info=info)
