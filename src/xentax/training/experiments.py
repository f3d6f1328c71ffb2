"""The deck's applications and comparisons as runnable experiments, by name.

Design notes:
  An experiment is a small declarative list of :class:`~xentax.training.TrainConfig` plus a
  runner that trains them and writes one folder per run (``config.json``,
  ``metrics.jsonl``, ``summary.json``, ``curves.png``) under ``out_dir/<experiment>/``, and
  an ``out_dir/<experiment>/summary.json`` with a row per run. Rows carry the bars of the
  issue (``bar``, ``bar_met``) so the report shows measured results. ``scale`` is
  ``"full"`` (the default settings the bars refer to), ``"quick"`` (fewer epochs, smaller
  sets) or ``"smoke"`` (a few steps, for tests). The scripts in ``experiments/`` and the
  report both call :func:`run`; ``Experiment.report_section`` says which section of the
  report shows an experiment (``large_vocab`` belongs to "Large vocabularies").
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from xentax import data as xdata
from xentax.training import _large_vocab, _records
from xentax.training._deck import deck_sgd, with_bias_column
from xentax.training._loop import TrainConfig, train
from xentax.training._objectives import evaluate

SCALES = ("full", "quick", "smoke")


@dataclasses.dataclass(frozen=True)
class Experiment:
  """A named experiment: ``run(out_dir, scale) -> summary dict``, shown in ``report_section``."""

  name: str
  description: str
  runner: Callable[[Path, str], dict]
  report_section: str = "training"


def _scaled(config: TrainConfig, scale: str) -> tuple[TrainConfig, int | None]:
  """The config at ``scale`` and the step cap (smoke runs stop after 3 steps)."""
  if scale == "quick":
    return dataclasses.replace(config, epochs=max(1, math.ceil(config.epochs / 4))), None
  if scale == "smoke":
    return dataclasses.replace(config, epochs=1), 3
  return config, None


def _run(
  root: Path, run_name: str, config: TrainConfig, scale: str, *, dataset=None, bar=None, **extra
) -> dict:
  """Train one config into ``root/run_name`` and return its report row."""
  config, max_steps = _scaled(config, scale)
  result = train(
    config, dataset=dataset, out_dir=root / run_name, progress=False, max_steps=max_steps
  )
  s = result.summary
  row = {
    "run": run_name,
    "model": config.model,
    "dataset": s["dataset"],
    "loss": config.loss,
    "optimizer": config.optimizer,
    "epochs": len(result.history),
    "test_accuracy": s["final_test_accuracy"],
    "test_loss": s["final_test_loss"],
    "seconds": s["seconds_total"],
    "curves": f"{root.name}/{run_name}/curves.png",
    **extra,
  }
  if bar is not None:
    row["bar"] = f"test accuracy >= {bar}"
    row["bar_met"] = bool(s["final_test_accuracy"] >= bar)
  row["_history"] = result.history
  row["_result"] = result
  return row


def _finish(root: Path, name: str, rows: list[dict], **extra) -> dict:
  clean = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
  summary = {"experiment": name, "rows": clean, **extra}
  _records.write_json(root / "summary.json", summary)
  return summary


def binary(root: Path, scale: str) -> dict:
  """Logistic regression with binary CE: breast cancer (bar 0.95) and the deck's cat / not cat."""
  rows = [
    _run(
      root,
      "breast_cancer",
      TrainConfig(model="logistic_regression", dataset="breast_cancer", epochs=30),
      scale,
      bar=0.95,
    ),
    _run(
      root,
      "cat_not_cat",
      TrainConfig(
        model="logistic_regression", dataset="cat_not_cat", optimizer="sgd", lr=0.1, epochs=30
      ),
      scale,
    ),
  ]
  return _finish(root, "binary", rows)


def multiclass(root: Path, scale: str) -> dict:
  """Softmax regression on digits (bar 0.95), iris and wine."""
  rows = [
    _run(root, "digits", TrainConfig(dataset="digits", epochs=30), scale, bar=0.95),
    _run(root, "iris", TrainConfig(dataset="iris", epochs=50, lr=0.05, batch_size=16), scale),
    _run(root, "wine", TrainConfig(dataset="wine", epochs=50, lr=0.05, batch_size=16), scale),
  ]
  return _finish(root, "multiclass", rows)


def mlp_digits(root: Path, scale: str) -> dict:
  """A ``flax.nnx`` MLP on digits (bar 0.97)."""
  rows = [_run(root, "mlp", TrainConfig(model="mlp", epochs=40), scale, bar=0.97)]
  return _finish(root, "mlp_digits", rows)


def cnn_digits(root: Path, scale: str) -> dict:
  """A small CNN on the 8x8 digits (bar 0.98)."""
  rows = [_run(root, "cnn", TrainConfig(model="cnn", epochs=20), scale, bar=0.98)]
  return _finish(root, "cnn_digits", rows)


def sgd_vs_adam(root: Path, scale: str) -> dict:
  """SGD, SGD with momentum and Adam on the same softmax regression on digits."""
  configs = {
    "sgd": TrainConfig(optimizer="sgd", lr=0.1, epochs=20),
    "momentum": TrainConfig(optimizer="momentum", lr=0.02, epochs=20),
    "adam": TrainConfig(optimizer="adam", lr=0.01, epochs=20),
  }
  rows = [_run(root, name, config, scale) for name, config in configs.items()]
  _records.plot_curves(
    {row["run"]: row["_history"] for row in rows},
    root / "optimizers.png",
    title="softmax regression on digits: SGD vs momentum vs Adam",
  )
  return _finish(root, "sgd_vs_adam", rows, figure=f"{root.name}/optimizers.png")


def deck_vs_compiled(root: Path, scale: str) -> dict:
  """The deck's per-example loop (eager) vs the compiled loop (batch 1, no shuffle, SGD).

  Both start from the same random ``theta`` on digits with a bias column and make the same
  per-example updates, so they must reach the same loss; the ratio of their times per
  epoch is the price of running the pseudocode as written.
  """
  ds = xdata.digits(seed=0)
  if scale == "smoke":
    ds = ds.subset(40, 40)
  ds = dataclasses.replace(
    ds, x_train=with_bias_column(ds.x_train), x_test=with_bias_column(ds.x_test)
  )
  iterations = 1 if scale == "smoke" else 2
  alpha = 0.01
  key = jax.random.key(0)
  theta0 = 0.01 * np.asarray(jax.random.normal(key, (ds.num_features, 10)), np.float32)
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
  result = train(
    config, dataset=ds, params={"w": theta0}, out_dir=root / "compiled", progress=False
  )
  compiled_seconds = result.history[-1]["epoch_seconds"]
  # The same number of passes as the deck: rerun without the timing epoch for the comparison.
  same = train(
    dataclasses.replace(config, epochs=iterations),
    dataset=ds,
    params={"w": theta0},
    progress=False,
  )
  apply = same.model.apply
  compiled_eval = evaluate(apply, same.params, ds.x_train, ds.y_train, num_classes=10)
  deck_eval = evaluate(apply, {"w": np.asarray(theta_deck)}, ds.x_train, ds.y_train, num_classes=10)
  deck_test = evaluate(apply, {"w": np.asarray(theta_deck)}, ds.x_test, ds.y_test, num_classes=10)
  max_diff = float(np.max(np.abs(np.asarray(theta_deck) - np.asarray(same.params["w"]))))
  row = {
    "run": "deck_vs_compiled",
    "model": "softmax_regression (deck's theta, no bias)",
    "dataset": "digits",
    "loss": "cross_entropy",
    "optimizer": f"per-example sgd, alpha={alpha}",
    "epochs": iterations,
    "test_accuracy": deck_test["accuracy"],
    "test_loss": deck_test["loss"],
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
    "curves": f"{root.name}/compiled/curves.png",
    "seconds": deck_seconds * iterations + result.summary["seconds_total"],
  }
  return _finish(root, "deck_vs_compiled", [row])


def class_imbalance(root: Path, scale: str) -> dict:
  """Plain CE vs balanced class weights vs focal loss on 2-class blobs with a 1:20 ratio."""
  ds = xdata.blobs(num_classes=2, imbalance_ratio=20.0, seed=0)
  minority = ds.info["minority_class"]
  rows = []
  for loss in ("cross_entropy", "weighted_cross_entropy", "focal"):
    config = TrainConfig(dataset="blobs_imbalanced", loss=loss, epochs=30, lr=0.05, batch_size=64)
    row = _run(root, loss, config, scale, dataset=ds)
    row["minority_recall"] = row["_history"][-1]["test_recall"][minority]
    rows.append(row)
  plain = rows[0]["minority_recall"]
  best = max(rows[1:], key=lambda r: r["minority_recall"])
  rows[0]["bar"] = "weighted or focal beats plain CE on minority recall"
  rows[0]["bar_met"] = bool(best["minority_recall"] > plain)
  return _finish(
    root, "class_imbalance", rows, minority_class=minority, class_sizes=ds.info["class_sizes"]
  )


def unigram_cross_entropy(ds: xdata.Dataset) -> float:
  """Test cross-entropy of the add-one-smoothed training unigram distribution (nats)."""
  counts = np.bincount(ds.y_train, minlength=ds.num_classes).astype(np.float64) + 1.0
  log_probs = np.log(counts / counts.sum())
  return float(-log_probs[ds.y_test].mean())


def next_word(root: Path, scale: str) -> dict:
  """An embedding + MLP next-word model on stdlib docstrings vs the unigram baseline."""
  options = {"vocab_size": 2000, "context": 3}
  if scale != "full":
    options["max_docs"] = 1500
  ds = xdata.next_word(seed=0, **options)
  if scale == "smoke":
    ds = ds.subset(2000, 500)
  config = TrainConfig(
    model="next_word_mlp",
    dataset="next_word",
    epochs=2,
    batch_size=512,
    dataset_options=options,
    model_options={"hidden": 128},
  )
  baseline = unigram_cross_entropy(ds)
  row = _run(root, "next_word_mlp", config, scale, dataset=ds, unigram_test_loss=baseline)
  row["bar"] = "test CE below the unigram baseline's"
  row["bar_met"] = bool(row["test_loss"] < baseline)
  row["train_examples"] = len(ds.y_train)
  return _finish(root, "next_word", [row], corpus=xdata.corpus_stats())


def recommender(root: Path, scale: str) -> dict:
  """Matrix factorisation on implicit feedback, trained with binary CE with logits."""
  ds = xdata.implicit_feedback(seed=0)
  config = TrainConfig(
    model="matrix_factorisation",
    dataset="implicit_feedback",
    epochs=10,
    batch_size=256,
    lr=0.003,
    model_options={"dim": 8},
  )
  rate = float(ds.y_train.mean())
  constant = -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))
  row = _run(root, "matrix_factorisation", config, scale, dataset=ds, constant_test_loss=constant)
  return _finish(root, "recommender", [row])


# The stdlib corpus has 9,248 distinct words (CPython 3.11), too few for V >= 32768: the
# large-vocabulary runs use synthetic Markov tokens. Full: 512 x 32768 float32 logits (67 MB).
LARGE_VOCAB_SCALES = {
  "full": _large_vocab.HeadComparisonConfig(),
  "quick": _large_vocab.HeadComparisonConfig(num_tokens=20_000, steps=10, repeats=3),
  "smoke": _large_vocab.HeadComparisonConfig(
    vocab_size=4096,
    num_tokens=3000,
    embed_dim=8,
    hidden=16,
    batch_size=128,
    steps=3,
    block_size=512,
    repeats=1,
    test_tokens=256,
  ),
}


def large_vocab(root: Path, scale: str) -> dict:
  """The next-word model at V = 32768: fused vs full-logits loss, same data, same start.

  Writes ``config.json``, ``metrics.jsonl`` (both losses at every step), ``summary.json``
  (a row per loss: test metrics, the temporaries of the compiled train step and of the
  loss's value-and-grad alone, the median step time) and ``loss_curves.png`` into ``root``.
  """
  config = LARGE_VOCAB_SCALES[scale]
  writer = _records.RunWriter(root, {"scale": scale, **dataclasses.asdict(config)})
  result = _large_vocab.compare_heads(config)
  ds = result["dataset"]
  losses = result["losses"]
  for step, (fused, full) in enumerate(zip(losses["fused"], losses["full"], strict=True), 1):
    writer.log(
      {"step": step, "fused_loss": fused, "full_loss": full, "abs_diff": abs(fused - full)}
    )
  _large_vocab.plot_loss_curves(
    losses,
    root / "loss_curves.png",
    title=f"next-word MLP, V = {ds.num_classes}, batch {config.batch_size}: fused vs full logits",
  )
  rows = []
  for kind, loss in [
    ("fused", f"fused_linear_cross_entropy (block {config.block_size})"),
    ("full", "full logits + sparse cross-entropy"),
  ]:
    timing = result["timing"][kind]
    rows.append(
      {
        "run": kind,
        "model": "next_word_mlp",
        "dataset": ds.name,
        "loss": loss,
        "optimizer": f"adam, lr={config.lr}",
        "steps": len(losses[kind]),
        "final_train_loss": losses[kind][-1],
        "test_accuracy": result["test"][kind]["accuracy"],
        "test_loss": result["test"][kind]["loss"],
        **result["memory"][kind],
        "loss_temp_bytes": result["loss_memory"][kind]["temp_bytes"],
        "median_step_s": timing.median_s,
        "step_spread": timing.spread,
        "compile_s": timing.compile_s,
        "curves": f"{root.name}/loss_curves.png",
      }
    )
  fused, full = rows
  return _finish(
    root,
    "large_vocab",
    rows,
    data=(
      "synthetic Markov tokens (xentax.data.synthetic_next_word): the standard-library"
      " corpus has about 9.2k distinct words, fewer than V"
    ),
    vocab_size=ds.num_classes,
    batch_size=config.batch_size,
    hidden=config.hidden,
    block_size=config.block_size,
    steps=config.steps,
    test_tokens=min(config.test_tokens, len(ds.y_test)),
    logits_bytes=config.batch_size * ds.num_classes * 4,
    train_examples=len(ds.y_train),
    unigram_test_loss=unigram_cross_entropy(ds),
    max_abs_loss_diff=result["max_abs_loss_diff"],
    temp_bytes_saved=full["temp_bytes"] - fused["temp_bytes"],
    step_time_ratio=fused["median_step_s"] / full["median_step_s"],
  )


EXPERIMENTS: dict[str, Experiment] = {
  e.name: e
  for e in [
    Experiment("binary", "logistic regression: breast cancer; cat / not cat", binary),
    Experiment("multiclass", "softmax regression: digits, iris, wine", multiclass),
    Experiment("mlp_digits", "flax.nnx MLP on digits", mlp_digits),
    Experiment("cnn_digits", "small CNN on 8x8 digits", cnn_digits),
    Experiment("sgd_vs_adam", "SGD vs momentum vs Adam on digits", sgd_vs_adam),
    Experiment(
      "deck_vs_compiled", "the deck's per-example loop vs the compiled loop", deck_vs_compiled
    ),
    Experiment(
      "class_imbalance", "plain CE vs class weights vs focal, 1:20 blobs", class_imbalance
    ),
    Experiment("next_word", "next-word prediction vs the unigram baseline", next_word),
    Experiment("recommender", "matrix factorisation on implicit feedback", recommender),
    Experiment(
      "large_vocab",
      "next-word model at V = 32768: fused vs full-logits loss",
      large_vocab,
      report_section="large_vocabularies",
    ),
  ]
}


def run(name: str, out_dir: str | Path = "results/training", *, scale: str = "full") -> dict:
  """Run experiment ``name`` at ``scale``, writing under ``out_dir/name``; returns its summary.

  Raises:
    ValueError: unknown experiment or scale.
  """
  if name not in EXPERIMENTS:
    raise ValueError(f"unknown experiment {name!r}; choose from {list(EXPERIMENTS)}")
  if scale not in SCALES:
    raise ValueError(f"scale must be one of {SCALES}; got {scale!r}")
  root = Path(out_dir) / name
  root.mkdir(parents=True, exist_ok=True)
  start = time.perf_counter()
  summary = EXPERIMENTS[name].runner(root, scale)
  summary["seconds"] = time.perf_counter() - start
  _records.write_json(root / "summary.json", summary)
  return summary


def main(name: str, argv: list[str] | None = None) -> int:
  """Command-line entry for ``experiments/<name>.py``: ``[--out DIR] [--quick]``."""
  parser = argparse.ArgumentParser(description=EXPERIMENTS[name].description)
  parser.add_argument("--out", default="results/training", help="output folder")
  parser.add_argument("--quick", action="store_true", help="fewer epochs, smaller sets")
  args = parser.parse_args(argv)
  summary = run(name, args.out, scale="quick" if args.quick else "full")
  for row in summary["rows"]:
    bar = "" if "bar" not in row else f"  [{row['bar']}: {'met' if row['bar_met'] else 'NOT met'}]"
    print(
      f"{row['run']}: test accuracy {row['test_accuracy']:.4f}, loss {row['test_loss']:.4f}{bar}"
    )
  if "max_abs_loss_diff" in summary:
    fused, full = summary["rows"]
    print(
      f"max |fused - full| loss {summary['max_abs_loss_diff']:.2e}; temporaries"
      f" {fused['temp_bytes'] / 1e6:.1f} vs {full['temp_bytes'] / 1e6:.1f} MB; step time"
      f" {fused['median_step_s']:.3f} vs {full['median_step_s']:.3f} s"
    )
  print(f"wrote {Path(args.out) / name} in {summary['seconds']:.1f}s")
  return 0
