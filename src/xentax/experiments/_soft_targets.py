"""Small full-batch models on digits for the distillation and calibration experiments.

Design notes:
  Digits has 1797 examples, so every model trains full batch: one ``jit``-compiled
  ``lax.scan`` of Adam steps per run, seconds on a CPU. The objective is any function
  ``loss(logits, labels, teacher_logits) -> scalar``, so hard-label CE, distillation,
  label smoothing and focal loss share one loop.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

STEPS = {"full": 1500, "quick": 300, "smoke": 20}
SEEDS = {"full": 5, "quick": 3, "smoke": 2}


def init_params(key, sizes: tuple[int, ...]) -> list[dict]:
  """Dense layers ``sizes[0] -> ... -> sizes[-1]`` (one layer: softmax regression)."""
  params = []
  for fan_in, fan_out, k in zip(
    sizes[:-1], sizes[1:], jax.random.split(key, len(sizes)), strict=False
  ):
    w = jax.random.normal(k, (fan_in, fan_out)) * np.sqrt(2.0 / fan_in)
    params.append({"w": w, "b": jnp.zeros(fan_out)})
  return params


def logits_of(params: list[dict], x) -> jax.Array:
  """ReLU MLP (softmax regression for one layer)."""
  for layer in params[:-1]:
    x = jax.nn.relu(x @ layer["w"] + layer["b"])
  return x @ params[-1]["w"] + params[-1]["b"]


def fit(params, x, y, loss, *, steps: int, lr: float = 0.01, teacher_logits=None):
  """``steps`` full-batch Adam steps on ``loss(logits, y, teacher_logits)``."""
  teacher = None if teacher_logits is None else jnp.asarray(teacher_logits)
  return _compiled(loss, steps, lr)(params, jnp.asarray(x), jnp.asarray(y), teacher)


@functools.cache
def _compiled(loss, steps: int, lr: float):
  """One jitted training run per objective: seeds with the same shapes reuse it."""
  opt = optax.adam(lr)

  @jax.jit
  def run(params, x, y, teacher):
    def step(carry, _):
      params, state = carry
      value, grads = jax.value_and_grad(lambda p: loss(logits_of(p, x), y, teacher))(params)
      updates, state = opt.update(grads, state, params)
      return (optax.apply_updates(params, updates), state), value

    (params, _), values = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params, values

  return run


def accuracy(logits, y) -> float:
  return float(np.mean(np.argmax(np.asarray(logits), axis=-1) == np.asarray(y)))
