"""Optimizers and loops compared on one model: SGD vs momentum vs Adam; the deck's loop vs ours."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from xentax import data as xdata
from xentax import plots
from xentax.experiments._common import train_run
from xentax.experiments._records import ExperimentResult, RunRecord
from xentax.training import TrainConfig, deck_sgd, evaluate, train, with_bias_column


def sgd_vs_adam(root: Path, scale: str) -> ExperimentResult:
  """SGD, SGD with momentum and Adam on the same softmax regression on digits.

  Figure ``optimizers``: the three runs' curves on one plot.
  """
  configs = {
    "sgd": TrainConfig(optimizer="sgd", lr=0.1, epochs=20),
    "momentum": TrainConfig(optimizer="momentum", lr=0.02, epochs=20),
    "adam": TrainConfig(optimizer="adam", lr=0.01, epochs=20),
  }
  rows = [train_run(root, name, config, scale) for name, config in configs.items()]
  figure = plots.training_curves(
    {row.run: row.history for row in rows},
    title="softmax regression on digits: SGD (lr 0.1) vs momentum (0.02) vs Adam (0.01)",
  )
  plots.save(figure, root / "optimizers.png")
  return ExperimentResult(
    "sgd_vs_adam", scale, rows, figures={"optimizers": f"{root.name}/optimizers.png"}
  )


def deck_vs_compiled(root: Path, scale: str) -> ExperimentResult:
  """The deck's per-example loop (eager) vs the compiled loop (batch 1, no shuffle, SGD).

  Both start from the same random ``theta`` on digits with a bias column and make the same
  per-example updates, so they must reach the same loss; the ratio of their times per
  epoch is the price of running the pseudocode as written. Row ``extra``:
  ``deck_final_train_loss``, ``compiled_final_train_loss``, ``deck_epoch_losses``,
  ``compiled_epoch_losses``, ``max_abs_theta_diff``, ``deck_seconds_per_epoch``,
  ``compiled_seconds_per_epoch``, ``speed_ratio`` (deck / compiled), ``same_final_loss``.
  """
  ds = xdata.digits(seed=0)
  if scale == "smoke":
    ds = ds.subset(40, 40)
  ds = dataclasses.replace(
    ds, x_train=with_bias_column(ds.x_train), x_test=with_bias_column(ds.x_test)
  )
  iterations = 1 if scale == "smoke" else 2
  alpha = 0.01
  theta0 = 0.01 * np.asarray(jax.random.normal(jax.random.key(0), (ds.num_features, 10)), "f4")
  y_onehot = np.eye(10, dtype=np.float32)[ds.y_train]
  start = time.perf_counter()
  theta_deck, deck_losses = deck_sgd(
    ds.x_train, y_onehot, theta0, alpha=alpha, iterations=iterations
  )
  deck_seconds = (time.perf_counter() - start) / iterations
  config = TrainConfig(
    model="softmax_regression",
    dataset="digits",
    optimizer="sgd",
    lr=alpha,
    batch_size=1,
    shuffle=False,
    epochs=iterations + 1,  # one more epoch so a compiled epoch is timed without compiling
    model_options={"use_bias": False},
  )
  timed = train(
    config,
    dataset=ds,
    params={"w": theta0},
    out_dir=root / "compiled",
    overwrite=True,
    progress=False,
  )
  compiled_seconds = timed.history[-1]["epoch_seconds"]
  # The same number of passes as the deck: rerun without the timing epoch for the comparison.
  same = train(
    dataclasses.replace(config, epochs=iterations), dataset=ds, params={"w": theta0}, progress=False
  )
  apply = same.model.apply
  compiled_eval = evaluate(apply, same.params, ds.x_train, ds.y_train, num_classes=10)
  deck_eval = evaluate(apply, {"w": np.asarray(theta_deck)}, ds.x_train, ds.y_train, num_classes=10)
  deck_test = evaluate(apply, {"w": np.asarray(theta_deck)}, ds.x_test, ds.y_test, num_classes=10)
  max_diff = float(np.max(np.abs(np.asarray(theta_deck) - np.asarray(same.params["w"]))))
  row = RunRecord(
    run="deck_vs_compiled",
    model="softmax_regression (deck's theta, no bias)",
    dataset="digits",
    loss="cross_entropy",
    optimizer=f"per-example sgd, alpha={alpha}",
    epochs=iterations,
    test_accuracy=deck_test["accuracy"],
    test_loss=deck_test["loss"],
    seconds=deck_seconds * iterations + timed.summary["seconds_total"],
    curves=f"{root.name}/compiled/curves.png",
    extra={
      "deck_final_train_loss": deck_eval["loss"],
      "compiled_final_train_loss": compiled_eval["loss"],
      "deck_epoch_losses": deck_losses,
      "compiled_epoch_losses": [r["train_loss"] for r in same.history],
      "max_abs_theta_diff": max_diff,
      "deck_seconds_per_epoch": deck_seconds,
      "compiled_seconds_per_epoch": compiled_seconds,
      "speed_ratio": deck_seconds / compiled_seconds,
      "same_final_loss": bool(
        abs(deck_eval["loss"] - compiled_eval["loss"]) <= 1e-4 * max(1.0, deck_eval["loss"])
      ),
    },
  )
  return ExperimentResult("deck_vs_compiled", scale, [row])
