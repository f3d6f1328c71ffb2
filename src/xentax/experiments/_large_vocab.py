"""Large vocabularies: the next-word model trained with a fused and a full-logits loss.

Design notes:
  The model is :func:`~xentax.training.next_word_mlp` split at its output layer:
  :func:`~xentax.training.next_word_hidden` gives the hidden state ``h`` and a *head
  loss* ``(h, w_out, b_out, labels) -> loss`` does the rest. The ``"full"`` head forms the
  ``[batch, V]`` logits ``h @ w_out + b_out`` and applies
  :func:`xentax.sparse_categorical_cross_entropy_with_logits`; the ``"fused"`` head calls
  :func:`xentax.fused_linear_cross_entropy`, which never holds more than a
  ``[batch, block_size]`` slice of logits. Both are the same function of the parameters, so
  the two runs start from the same parameters, see the same batches in the same order and
  must trace the same loss curve up to float rounding.

  Each train step is compiled ahead of time once (:func:`xentax.bench.compile_ahead`); the
  same executable trains, gives its temporaries (``memory_analysis()``) and is timed side
  by side with the other (:func:`xentax.bench.time_side_by_side`). Temporaries are the
  bytes a step needs beyond its arguments and outputs; XLA may place a loss's working
  buffers inside output buffers of the same size (the fused loss's ``[batch, block]``
  slice can share the new ``w_out``'s), so the value-and-grad of each head loss alone is
  measured too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

import xentax
from xentax import bench, plots
from xentax import data as xdata
from xentax.experiments._language import unigram_cross_entropy
from xentax.experiments._records import ExperimentResult, RunRecord
from xentax.training import (
  RunWriter,
  epoch_order,
  evaluate,
  make_optimizer,
  next_word_hidden,
  next_word_mlp,
)

HEADS = ("fused", "full")


@dataclasses.dataclass(frozen=True)
class HeadComparisonConfig:
  """One fused-vs-full comparison (what ``config.json`` records).

  Attributes:
    vocab_size: ``V``, the synthetic vocabulary (token ids).
    num_tokens: length of the synthetic token stream (train and test).
    context: previous tokens the model sees.
    embed_dim, hidden: the model's sizes; ``hidden`` is the ``D`` of ``h @ w_out``.
    batch_size: tokens per step (``N`` of the ``[N, V]`` logits).
    steps: train steps of each run.
    lr: Adam's learning rate.
    block_size: the fused loss's vocabulary block.
    repeats: timed steps of each head (interleaved).
    test_tokens: held-out tokens for the final test loss.
    seed: drives the data, the initial parameters and the batch order.
  """

  vocab_size: int = 32768
  num_tokens: int = 60_000
  context: int = 3
  embed_dim: int = 32
  hidden: int = 64
  batch_size: int = 512
  steps: int = 40
  lr: float = 1e-2
  block_size: int = 4096
  repeats: int = 5
  test_tokens: int = 2048
  seed: int = 0


def head_loss(kind: str, *, block_size: int | None = None) -> Callable:
  """``loss(h_NxD, w_DxV, b_V, labels_N) -> scalar``: mean cross-entropy of ``h @ w + b``.

  Args:
    kind: ``"fused"`` (:func:`xentax.fused_linear_cross_entropy`) or ``"full"`` (the
      logits, then :func:`xentax.sparse_categorical_cross_entropy_with_logits`).
    block_size: the fused loss's block (None: its automatic choice).

  Raises:
    ValueError: unknown ``kind``.
  """
  if kind == "fused":

    def fused(h_NxD, w_DxV, b_V, labels_N):
      return xentax.fused_linear_cross_entropy(
        h_NxD, w_DxV, labels_N, bias=b_V, block_size=block_size
      )

    return fused
  if kind == "full":

    def full(h_NxD, w_DxV, b_V, labels_N):
      logits_NxV = h_NxD @ w_DxV + b_V
      return xentax.sparse_categorical_cross_entropy_with_logits(logits_NxV, labels_N)

    return full
  raise ValueError(f"unknown head {kind!r}; choose from {list(HEADS)}")


def make_head_train_step(loss: Callable, optimizer: optax.GradientTransformation) -> Callable:
  """``step(params, opt_state, batch) -> (params, opt_state, loss)`` for the next-word model.

  Args:
    loss: a :func:`head_loss`.
    optimizer: any Optax gradient transformation.

  Returns:
    The step, not yet jitted (compile it with :func:`xentax.bench.compile_ahead`).
  """

  def step(params, opt_state, batch):
    def objective(p):
      return loss(next_word_hidden(p, batch["x"]), p["w_out"], p["b_out"], batch["y"])

    value, grads = jax.value_and_grad(objective)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  return step


def compare_heads(config: HeadComparisonConfig, dataset: xdata.Dataset | None = None) -> dict:
  """Train the next-word model with each head from the same start; measure both steps.

  Args:
    config: the comparison.
    dataset: a ``"next_word"`` dataset to use instead of
      ``synthetic_next_word(vocab_size, num_tokens, context, seed)``.

  Returns:
    ``{"losses": {head: [steps]}, "max_abs_loss_diff", "memory": {head: memory_bytes}``
    (the compiled train step), ``"loss_memory": {head: memory_bytes}`` (the head loss's
    value-and-grad alone), ``"timing": {head: Timing}, "test": {head: evaluate(...)},
    "params": {head: params}, "dataset": the dataset}``.
  """
  if dataset is None:
    dataset = xdata.synthetic_next_word(
      vocab_size=config.vocab_size,
      num_tokens=config.num_tokens,
      context=config.context,
      seed=config.seed,
    )
  model = next_word_mlp(
    dataset.num_classes, dataset.info["context"], embed_dim=config.embed_dim, hidden=config.hidden
  )
  optimizer = make_optimizer("adam", config.lr)
  params0 = model.init(jax.random.key(config.seed))
  opt_state0 = optimizer.init(params0)
  batches = _batches(dataset, config)

  head_args = (
    next_word_hidden(params0, batches[0]["x"]),
    params0["w_out"],
    params0["b_out"],
    batches[0]["y"],
  )
  compiled, compile_s, memory, loss_memory = {}, {}, {}, {}
  for kind in HEADS:
    loss = head_loss(kind, block_size=config.block_size)
    step = make_head_train_step(loss, optimizer)
    compiled[kind], compile_s[kind] = bench.compile_ahead(step, params0, opt_state0, batches[0])
    memory[kind] = bench.memory_bytes(compiled[kind])
    loss_only, _ = bench.compile_ahead(jax.value_and_grad(loss, argnums=(0, 1, 2)), *head_args)
    loss_memory[kind] = bench.memory_bytes(loss_only)

  losses, params, test = {}, {}, {}
  for kind in HEADS:
    losses[kind], params[kind] = _train(compiled[kind], params0, opt_state0, batches)
    x_test = dataset.x_test[: config.test_tokens]
    y_test = dataset.y_test[: config.test_tokens]
    test[kind] = evaluate(
      model.apply, params[kind], x_test, y_test, num_classes=dataset.num_classes, chunk_size=512
    )
  timing = bench.time_side_by_side(
    compiled,
    [(params0, opt_state0, batch) for batch in batches[:3]],
    repeats=config.repeats,
    compile_seconds=compile_s,
  )
  diff = np.abs(np.asarray(losses["fused"]) - np.asarray(losses["full"]))
  return {
    "losses": losses,
    "max_abs_loss_diff": float(diff.max()),
    "memory": memory,
    "loss_memory": loss_memory,
    "timing": timing,
    "test": test,
    "params": params,
    "dataset": dataset,
  }


def _batches(dataset: xdata.Dataset, config: HeadComparisonConfig) -> list[dict]:
  """``config.steps`` shuffled batches (reshuffled each epoch), on the default device."""
  n = len(dataset.y_train)
  batch_size = min(config.batch_size, n)
  rng = np.random.default_rng(config.seed)
  epochs = -(-config.steps * batch_size // n)
  order = np.concatenate([epoch_order(n, batch_size, rng) for _ in range(epochs)])
  return [
    jax.device_put({"x": dataset.x_train[idx], "y": dataset.y_train[idx]})
    for idx in order[: config.steps]
  ]


def _train(step: Callable, params: Any, opt_state: Any, batches: list[dict]):
  """Run the compiled ``step`` over ``batches``; the per-step losses and the final params."""
  losses = []
  for batch in batches:
    params, opt_state, loss = step(params, opt_state, batch)
    losses.append(loss)  # a device value: reading it here would wait for every step
  return [float(x) for x in jax.device_get(losses)], params


# The stdlib corpus has 9,248 distinct words (CPython 3.11), too few for V >= 32768: the
# large-vocabulary runs use synthetic Markov tokens. Full: 512 x 32768 float32 logits (67 MB).
SCALES = {
  "full": HeadComparisonConfig(),
  "quick": HeadComparisonConfig(num_tokens=20_000, steps=10, repeats=3),
  "smoke": HeadComparisonConfig(
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


def large_vocab(root: Path, scale: str) -> ExperimentResult:
  """The next-word model at V = 32768: fused vs full-logits loss, same data, same start.

  Writes ``config.json``, ``metrics.jsonl`` (both losses at every step), ``summary.json``
  and ``loss_curves.png`` into ``root``. One row per head (``"fused"``, ``"full"``); row
  ``extra``: ``steps``, ``final_train_loss``, ``temp_bytes`` / ``argument_bytes`` /
  ``output_bytes`` (the compiled train step), ``loss_temp_bytes`` (the head loss's
  value-and-grad alone), ``median_step_s``, ``step_spread``, ``compile_s``. ``info``:
  sizes, ``max_abs_loss_diff``, ``temp_bytes_saved``, ``step_time_ratio`` (fused / full).
  """
  config = SCALES[scale]
  writer = RunWriter(root, {"scale": scale, **dataclasses.asdict(config)}, overwrite=True)
  result = compare_heads(config)
  ds = result["dataset"]
  losses = result["losses"]
  for step, (fused, full) in enumerate(zip(losses["fused"], losses["full"], strict=True), 1):
    writer.log(
      {"step": step, "fused_loss": fused, "full_loss": full, "abs_diff": abs(fused - full)}
    )
  figure = plots.loss_comparison(
    losses,
    title=f"next-word MLP, V = {ds.num_classes}, batch {config.batch_size}: fused vs full logits",
  )
  plots.save(figure, root / "loss_curves.png")
  rows = []
  for kind, loss in [
    ("fused", f"fused_linear_cross_entropy (block {config.block_size})"),
    ("full", "full logits + sparse cross-entropy"),
  ]:
    timing = result["timing"][kind]
    rows.append(
      RunRecord(
        run=kind,
        model="next_word_mlp",
        dataset=ds.name,
        loss=loss,
        optimizer=f"adam, lr={config.lr}",
        epochs=0,
        test_accuracy=result["test"][kind]["accuracy"],
        test_loss=result["test"][kind]["loss"],
        curves=f"{root.name}/loss_curves.png",
        extra={
          "steps": len(losses[kind]),
          "final_train_loss": losses[kind][-1],
          **result["memory"][kind],
          "loss_temp_bytes": result["loss_memory"][kind]["temp_bytes"],
          "median_step_s": timing.median_s,
          "step_spread": timing.spread,
          "compile_s": timing.compile_s,
        },
      )
    )
  fused, full = (row.extra for row in rows)
  return ExperimentResult(
    "large_vocab",
    scale,
    rows,
    info={
      "data": (
        "synthetic Markov tokens (xentax.data.synthetic_next_word): the standard-library"
        " corpus has about 9.2k distinct words, fewer than V"
      ),
      "vocab_size": ds.num_classes,
      "batch_size": config.batch_size,
      "hidden": config.hidden,
      "block_size": config.block_size,
      "steps": config.steps,
      "test_tokens": min(config.test_tokens, len(ds.y_test)),
      "logits_bytes": config.batch_size * ds.num_classes * 4,
      "train_examples": len(ds.y_train),
      "unigram_test_loss": unigram_cross_entropy(ds),
      "max_abs_loss_diff": result["max_abs_loss_diff"],
      "temp_bytes_saved": full["temp_bytes"] - fused["temp_bytes"],
      "step_time_ratio": fused["median_step_s"] / full["median_step_s"],
    },
    figures={"loss_curves": f"{root.name}/loss_curves.png"},
  )
