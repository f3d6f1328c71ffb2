r"""Many classes: full, sampled and adaptive softmax on a Zipfian task with a known teacher.

Design notes:
  The data make the Bayes posterior a softmax regression, so the best test cross-entropy
  is known. A class is drawn from the log-uniform (Zipf) law ``q`` over ``V`` classes, and
  its features around the class's mean, ``x = A[:, y] + sigma eps``; then

  .. math::
    p^*(y \mid x) = \mathrm{softmax}_y\Big(\frac{x \cdot A_y}{\sigma^2}
      - \frac{\lVert A_y \rVert^2}{2 \sigma^2} + \log q_y\Big),

  the teacher, whose test cross-entropy is the floor. Each method trains a student from the
  same start on the same batches with Adam: softmax regression ``(W [D, V], b)`` under the
  full softmax (:func:`xentax.fused_linear_cross_entropy`) or the sampled one (``S`` classes
  drawn log-uniformly each step, with the ``log Q`` correction or without), and an adaptive
  softmax (the layout of :func:`xentax.bench.adaptive_layout`). Every student is scored by
  its own normalised model's test cross-entropy: the full softmax of the learned ``W, b``,
  or the adaptive softmax's. Steps are compiled ahead and timed side by side.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import xentax
from xentax import bench, plots
from xentax.experiments._records import ExperimentResult, RunRecord
from xentax.training import RunWriter


@dataclasses.dataclass(frozen=True)
class ManyClassesConfig:
  """One study (what ``config.json`` records): every method at each vocabulary size."""

  vocab_sizes: tuple[int, ...] = (2**14, 2**17)
  dim: int = 32
  noise: float = 2.0
  train_examples: int = 16384
  test_examples: int = 1024
  batch_size: int = 128
  steps: int = 40
  lr: float = 0.01
  sampled: tuple[int, ...] = (256, 4096)
  repeats: int = 3
  seed: int = 0


SCALES = {
  "full": ManyClassesConfig(),
  "quick": ManyClassesConfig(steps=20),
  "smoke": ManyClassesConfig(
    vocab_sizes=(1024,),
    train_examples=512,
    test_examples=128,
    steps=3,
    sampled=(16, 64),
    repeats=1,
  ),
}
# V = 2^20, the larger scale (docs/large-vocabularies.md):
# xentax.experiments.many_classes_study(2**20, ManyClassesConfig(train_examples=65536, steps=200)).


def teacher_data(vocab_size: int, config: ManyClassesConfig, key):
  """``(x_train, y_train, x_test, y_test, W*, b*, log q)``: the task, its Bayes posterior and
  the class prior."""
  k_means, k_train, k_test = jax.random.split(key, 3)
  means = jax.random.normal(k_means, (config.dim, vocab_size))
  log_q = jnp.log(jnp.log1p(1 / (jnp.arange(vocab_size) + 1.0))) - jnp.log(jnp.log1p(vocab_size))

  def draw(key, n):
    k_y, k_x = jax.random.split(key)
    u = jax.random.uniform(k_y, (n,))  # the log-uniform law's inverse CDF
    y = (jnp.floor(jnp.exp(u * jnp.log1p(vocab_size))).astype(jnp.int32) - 1) % vocab_size
    x = means[:, y].T + config.noise * jax.random.normal(k_x, (n, config.dim))
    return x, y

  x_train, y_train = draw(k_train, config.train_examples)
  x_test, y_test = draw(k_test, config.test_examples)
  inv_var = 1 / config.noise**2
  w_star = means * inv_var
  b_star = log_q - 0.5 * inv_var * jnp.sum(means**2, axis=0)
  return x_train, y_train, x_test, y_test, w_star, b_star, log_q


@jax.jit
def _evaluate_full(params, x, y):
  """Test cross-entropy and top-1 accuracy of the full softmax (rows a chunk at a time)."""
  loss = xentax.fused_linear_cross_entropy(x, params["w"], y, bias=params["b"])
  return loss, _accuracy(lambda x: x @ params["w"] + params["b"], x, y)


@functools.partial(jax.jit, static_argnames="cutoffs")
def _evaluate_adaptive(params, x, y, cutoffs):
  """Test cross-entropy and top-1 accuracy of the adaptive softmax."""
  kw = {"cutoffs": list(cutoffs), "head_bias": params["head_bias"]}
  loss = xentax.adaptive_softmax_cross_entropy(x, params["head"], params["tails"], y, **kw)
  scores = lambda x: xentax.adaptive_log_softmax(x, params["head"], params["tails"], **kw)  # noqa: E731
  return loss, _accuracy(scores, x, y)


def _accuracy(scores, x, y, chunk: int = 256):
  """Top-1 accuracy, ``chunk`` rows at a time (no ``[N, V]`` array); ``N % chunk == 0``."""
  chunk = min(chunk, len(y))
  rows = (x.reshape(-1, chunk, x.shape[-1]), y.reshape(-1, chunk))
  hits = jax.lax.map(lambda r: jnp.sum(jnp.argmax(scores(r[0]), -1) == r[1]), rows)
  return jnp.sum(hits) / len(y)


def _methods(vocab_size: int, config: ManyClassesConfig) -> dict:
  """name -> (loss(params, x, y, key, scale), scale, evaluate(params, x, y), initial params):
  the training loss (``scale`` multiplies the sampled loss's ``log Q`` correction, so a
  corrected and an uncorrected run share one compiled step) and the test evaluation."""
  zeros: dict[str, Any] = {"w": jnp.zeros((config.dim, vocab_size)), "b": jnp.zeros(vocab_size)}

  def full(p, x, y, key, scale):
    del key, scale
    return xentax.fused_linear_cross_entropy(x, p["w"], y, bias=p["b"])

  def sampled(num):
    def loss(p, x, y, key, scale):
      c = xentax.sampling.log_uniform_candidates(key, y, num, vocab_size)
      return xentax.sampled_softmax_cross_entropy(
        x,
        p["w"],
        y,
        c.sampled_classes,
        sampled_log_q=scale * c.sampled_log_q,
        true_log_q=scale * c.true_log_q,
        bias=p["b"],
      )

    return loss

  cutoffs, tail_shapes = bench.adaptive_layout(config.dim, vocab_size)
  keys = jax.random.split(jax.random.key(config.seed + 1), len(tail_shapes))
  adaptive0 = {
    "head": jnp.zeros((config.dim, cutoffs[0] + len(tail_shapes))),
    "head_bias": jnp.zeros(cutoffs[0] + len(tail_shapes)),
    "tails": [
      (jax.random.normal(k, (config.dim, d)) / np.sqrt(config.dim), jnp.zeros((d, n)))
      for k, (d, n) in zip(keys, tail_shapes, strict=True)
    ],
  }

  def adaptive(p, x, y, key, scale):
    del key, scale
    return xentax.adaptive_softmax_cross_entropy(
      x, p["head"], p["tails"], y, cutoffs=cutoffs, head_bias=p["head_bias"]
    )

  evaluate_adaptive = functools.partial(_evaluate_adaptive, cutoffs=tuple(cutoffs))
  methods: dict[str, tuple[Callable, float, Callable, Any]] = {
    "full softmax": (full, 0.0, _evaluate_full, zeros)
  }
  for num in config.sampled:
    loss = sampled(num)
    methods[f"sampled, S = {num}"] = (loss, 1.0, _evaluate_full, zeros)
    methods[f"sampled, S = {num}, no correction"] = (loss, 0.0, _evaluate_full, zeros)
  methods["adaptive softmax"] = (adaptive, 0.0, evaluate_adaptive, adaptive0)
  return methods


def _train(step, params, opt_state, batches, scale):
  for x, y, key in batches:
    params, opt_state, _ = step(params, opt_state, x, y, key, scale)
  return params


def study(vocab_size: int, config: ManyClassesConfig) -> dict:
  """Every method at one ``V``: test cross-entropy and accuracy, step time, temporaries.

  Returns:
    ``{"methods": {name: {...}}, "teacher_test_loss", "teacher_test_accuracy",
    "prior_test_loss"}``.
  """
  key = jax.random.key(config.seed)
  x_train, y_train, x_test, y_test, w_star, b_star, log_q = teacher_data(vocab_size, config, key)
  optimizer = optax.adam(config.lr)
  rng = np.random.default_rng(config.seed)
  batches = []
  for i in range(config.steps):
    idx = rng.choice(config.train_examples, config.batch_size, replace=False)
    batches.append((x_train[idx], y_train[idx], jax.random.fold_in(key, i)))
  out, compiled, compile_s = {}, {}, {}
  arg_sets: dict[str, Sequence[tuple]] = {}
  by_loss: dict[Any, tuple] = {}  # one compiled step per loss function
  for name, (loss, scale, evaluate, params0) in _methods(vocab_size, config).items():

    def step(params, opt_state, x, y, k, scale, loss=loss):
      value, grads = jax.value_and_grad(loss)(params, x, y, k, scale)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state, value

    opt_state0 = optimizer.init(params0)
    if loss not in by_loss:
      by_loss[loss] = bench.compile_ahead(step, params0, opt_state0, *batches[0], 0.0)
    compiled[name], compile_s[name] = by_loss[loss]
    params = _train(compiled[name], params0, opt_state0, batches, scale)
    test_loss, accuracy = evaluate(params, x_test, y_test)
    out[name] = {
      "test_loss": float(test_loss),
      "test_accuracy": float(accuracy),
      **bench.memory_bytes(compiled[name]),
    }
    arg_sets[name] = [(params0, opt_state0, *b, scale) for b in batches[:2]]
  # Spreads are recorded, not re-measured: a sub-millisecond step is noisy on a busy CPU.
  timing = bench.time_side_by_side(
    compiled, arg_sets, repeats=config.repeats, compile_seconds=compile_s, max_spread=None
  )
  for name, t in timing.items():
    out[name].update(median_step_s=t.median_s, step_spread=t.spread, compile_s=t.compile_s)
  teacher_loss, teacher_accuracy = _evaluate_full({"w": w_star, "b": b_star}, x_test, y_test)
  return {
    "methods": out,
    "teacher_test_loss": float(teacher_loss),
    "teacher_test_accuracy": float(teacher_accuracy),
    "prior_test_loss": float(-jnp.mean(log_q[y_test])),
  }


def many_classes(root: Path, scale: str) -> ExperimentResult:
  """Full, sampled and adaptive softmax on the Zipfian teacher task at each ``V``.

  Writes ``config.json``, ``metrics.jsonl`` (one line per method and ``V``),
  ``summary.json`` and ``frontier.png`` into ``root``. One row per method and ``V``; row
  ``extra``: ``vocab_size``, ``median_step_s``, ``step_spread``, ``compile_s``,
  ``temp_bytes``, ``step_time_ratio`` (to the full softmax's step) and ``excess_test_loss``
  (over the teacher's). ``info``: each ``V``'s teacher and prior test cross-entropy.
  """
  config = SCALES[scale]
  writer = RunWriter(root, {"scale": scale, **dataclasses.asdict(config)}, overwrite=True)
  rows, info, panels, floors = [], {}, {}, {}
  for vocab_size in config.vocab_sizes:
    result = study(vocab_size, config)
    teacher = result["teacher_test_loss"]
    info[f"V={vocab_size}"] = {
      k: result[k] for k in ("teacher_test_loss", "teacher_test_accuracy", "prior_test_loss")
    }
    full_step = result["methods"]["full softmax"]["median_step_s"]
    panel = {}
    for name, m in result["methods"].items():
      writer.log({"vocab_size": vocab_size, "method": name, **m})
      panel[name] = (m["median_step_s"] * 1e3, m["test_loss"])
      rows.append(
        RunRecord(
          run=f"{name} (V = {vocab_size})",
          model="softmax regression" if "adaptive" not in name else "adaptive softmax",
          dataset=f"Zipfian teacher, V = {vocab_size}, D = {config.dim}",
          loss=name,
          optimizer=f"adam, lr={config.lr}",
          epochs=0,
          test_accuracy=m["test_accuracy"],
          test_loss=m["test_loss"],
          extra={
            "vocab_size": vocab_size,
            "steps": config.steps,
            "median_step_s": m["median_step_s"],
            "step_spread": m["step_spread"],
            "compile_s": m["compile_s"],
            "temp_bytes": m["temp_bytes"],
            "step_time_ratio": m["median_step_s"] / full_step,
            "excess_test_loss": m["test_loss"] - teacher,
          },
        )
      )
    panels[f"V = {vocab_size}"] = panel
    floors[f"V = {vocab_size}"] = teacher
  figure = plots.step_time_frontier(
    panels,
    floors=floors,
    title=f"{config.steps} Adam steps of {config.batch_size}: test cross-entropy against step time",
  )
  plots.save(figure, root / "frontier.png")
  return ExperimentResult(
    "many_classes", scale, rows, info=info, figures={"frontier": f"{root.name}/frontier.png"}
  )
