"""The next-word model at a large vocabulary, trained with a fused and a full-logits loss.

Design notes:
  The model is :func:`~xentax.training.next_word_mlp` split at its output layer:
  :func:`~xentax.training._models.next_word_hidden` gives the hidden state ``h`` and a *head
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
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import xentax  # noqa: E402
from xentax import data as xdata  # noqa: E402
from xentax.bench import _measure  # noqa: E402
from xentax.training._loop import epoch_order, make_optimizer  # noqa: E402
from xentax.training._models import next_word_hidden, next_word_mlp  # noqa: E402
from xentax.training._objectives import evaluate  # noqa: E402

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
    compiled[kind], compile_s[kind] = _measure.compile_ahead(step, params0, opt_state0, batches[0])
    memory[kind] = _measure.memory_bytes(compiled[kind])
    loss_only, _ = _measure.compile_ahead(jax.value_and_grad(loss, argnums=(0, 1, 2)), *head_args)
    loss_memory[kind] = _measure.memory_bytes(loss_only)

  losses, params, test = {}, {}, {}
  for kind in HEADS:
    losses[kind], params[kind] = _train(compiled[kind], params0, opt_state0, batches)
    x_test = dataset.x_test[: config.test_tokens]
    y_test = dataset.y_test[: config.test_tokens]
    test[kind] = evaluate(
      model.apply, params[kind], x_test, y_test, num_classes=dataset.num_classes, chunk_size=512
    )
  timing = _measure.time_side_by_side(
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


def plot_loss_curves(losses: dict[str, list[float]], path: Path, *, title: str = "") -> None:
  """Both runs' training loss against step, and their absolute difference."""
  fig, (ax_loss, ax_diff) = plt.subplots(1, 2, figsize=(10, 3.8))
  steps = np.arange(1, len(losses["full"]) + 1)
  ax_loss.plot(steps, losses["full"], "-", color="C0", lw=2.5, alpha=0.6, label="full logits")
  ax_loss.plot(steps, losses["fused"], "--", color="C1", label="fused")
  ax_loss.set_ylabel("training cross-entropy (batch)")
  diff = np.abs(np.asarray(losses["fused"]) - np.asarray(losses["full"]))
  ax_diff.plot(steps, diff, "o-", color="C2", ms=3)
  ax_diff.set_ylabel("|fused - full|")
  ax_diff.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
  for ax in (ax_loss, ax_diff):
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
  ax_loss.legend(fontsize=8)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
