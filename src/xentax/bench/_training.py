"""The ``training`` suite: steps per second of the compiled loop vs the deck's loop.

Softmax regression on digits (with a bias column, as the deck's ``theta`` has none): the
deck's per-example SGD run as written (eager, one example at a time) against the compiled
Optax loop making the same per-example updates, and the compiled loop with minibatches.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from xentax import data as xdata
from xentax.bench import _measure
from xentax.training import TrainConfig, deck_sgd, train, with_bias_column


def run(*, epochs: int = 1, examples: int = 300, repeats: int = 3) -> list[dict]:
  """Steps per second of each loop on ``examples`` digits, ``epochs`` timed epochs."""
  ds = xdata.digits(seed=0).subset(examples, 50)
  ds = dataclasses.replace(
    ds, x_train=with_bias_column(ds.x_train), x_test=with_bias_column(ds.x_test)
  )
  theta0 = 0.01 * np.asarray(jax.random.normal(jax.random.key(0), (ds.num_features, 10)), "f4")
  y_onehot = np.eye(10, dtype=np.float32)[ds.y_train]
  n = len(ds.y_train)

  deck_sgd(ds.x_train[:2], y_onehot[:2], theta0, alpha=0.01)  # warm-up: eager op caches
  deck_times = []
  for _ in range(repeats):
    start = time.perf_counter()
    deck_sgd(ds.x_train, y_onehot, theta0, alpha=0.01, iterations=epochs)
    deck_times.append((time.perf_counter() - start) / epochs)

  def compiled_epoch_seconds(batch_size):
    config = TrainConfig(
      model="softmax_regression",
      dataset="digits",
      optimizer="sgd",
      lr=0.01,
      batch_size=batch_size,
      shuffle=False,
      epochs=epochs + 1,  # the first epoch compiles
      model_options={"use_bias": False},
    )
    times = []
    for _ in range(repeats):
      result = train(config, dataset=ds, params={"w": theta0}, progress=False)
      times += [r["epoch_seconds"] for r in result.history[1:]]
    return times

  loops = {
    "deck per-example loop (eager)": (deck_times, 1),
    "compiled loop, batch 1": (compiled_epoch_seconds(1), 1),
    "compiled loop, batch 64": (compiled_epoch_seconds(64), 64),
  }
  baseline = float(np.median(deck_times))
  device = _measure.device_info()
  records = []
  for name, (times, batch_size) in loops.items():
    median = float(np.median(times))
    steps = -(-n // batch_size)
    records.append(
      {
        "suite": "training",
        "implementation": name,
        "examples": n,
        "batch_size": batch_size,
        "median_s": median,
        "spread": (max(times) - min(times)) / median if median else 0.0,
        "repeats": len(times),
        "ratio": median / baseline,
        "steps_per_s": steps / median,
        "examples_per_s": n / median,
        **device,
      }
    )
  return records
