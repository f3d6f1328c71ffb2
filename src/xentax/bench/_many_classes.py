"""Sampled and adaptive softmax against the fused full softmax: one value-and-grad step.

Each step includes what it needs every step: the sampled softmax draws its ``S`` classes
(:func:`xentax.sampling.log_uniform_candidates`, without repeats) inside the timed call. The
adaptive softmax uses Grave et al.'s layout: a shortlist of ``V / 64`` classes, clusters up to
``V / 8`` and ``V``, tail dimensions ``D / 4`` and ``D / 16`` (torch's ``div_value=4``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

import xentax
from xentax.bench import _measure


def adaptive_layout(dim: int, vocab_size: int) -> tuple[list[int], list[tuple[int, int]]]:
  """``(cutoffs, [(d_i, n_i)])`` of the benchmark's adaptive softmax."""
  cutoffs = [vocab_size // 64, vocab_size // 8]
  bounds = [*cutoffs, vocab_size]
  tails = [(max(1, dim // 4 ** (i + 1)), bounds[i + 1] - bounds[i]) for i in range(2)]
  return cutoffs, tails


def _inputs(num_tokens, dim, vocab_size, seed):
  k = jax.random.split(jax.random.key(seed), 6)
  cutoffs, tail_shapes = adaptive_layout(dim, vocab_size)
  scale = 1 / jnp.sqrt(dim)
  hidden = jax.random.normal(k[0], (num_tokens, dim))
  weight = jax.random.normal(k[1], (dim, vocab_size)) * scale
  head = jax.random.normal(k[2], (dim, cutoffs[0] + 2)) * scale
  tail_keys = jax.random.split(k[3], (2, 2))
  tails = [
    (jax.random.normal(kp, (dim, d)) * scale, jax.random.normal(ko, (d, n)) / jnp.sqrt(d))
    for (kp, ko), (d, n) in zip(tail_keys, tail_shapes, strict=True)
  ]
  # Zipfian labels, as a vocabulary sorted by frequency has them.
  labels = xentax.sampling.log_uniform_candidates(
    k[4], jnp.zeros(1, jnp.int32), num_tokens, vocab_size, unique=False
  ).sampled_classes
  return hidden, weight, head, tails, labels, cutoffs, k[5]


def run(num_tokens, dim, vocab_size, *, sampled=(256, 4096), repeats=5, seed=0) -> list[dict]:
  """Value-and-grad time and temporaries of each, with ratios to the fused full softmax."""
  hidden, weight, head, tails, labels, cutoffs, key = _inputs(num_tokens, dim, vocab_size, seed)

  def full(params, labels, key):
    del key
    return xentax.fused_linear_cross_entropy(params[0], params[1], labels)

  def sampled_loss(num):
    def loss(params, labels, key):
      c = xentax.sampling.log_uniform_candidates(key, labels, num, vocab_size)
      return xentax.sampled_softmax_cross_entropy(
        params[0],
        params[1],
        labels,
        c.sampled_classes,
        sampled_log_q=c.sampled_log_q,
        true_log_q=c.true_log_q,
      )

    return loss

  def adaptive(params, labels, key):
    del key
    return xentax.adaptive_softmax_cross_entropy(
      params[0], params[1], params[2], labels, cutoffs=cutoffs
    )

  cases = {
    "fused full softmax": (full, (hidden, weight)),
    **{f"sampled softmax, S = {s}": (sampled_loss(s), (hidden, weight)) for s in sampled},
    "adaptive softmax": (adaptive, (hidden, head, tails)),
  }
  compiled, compile_s, memory = {}, {}, {}
  arg_sets: dict[str, Sequence[tuple]] = {}
  for name, (fn, params) in cases.items():
    step = jax.value_and_grad(fn)
    args = (params, labels, key)
    compiled[name], compile_s[name] = _measure.compile_ahead(step, *args)
    memory[name] = _measure.memory_bytes(compiled[name])
    keys = jax.random.split(key, 2)
    arg_sets[name] = [(params, labels, keys[0]), (params, labels, keys[1])]
  timings = _measure.time_side_by_side(
    compiled, arg_sets, repeats=repeats, compile_seconds=compile_s
  )
  baseline = timings["fused full softmax"].median_s
  device = _measure.device_info()
  return [
    {
      "suite": "many_classes",
      "implementation": name,
      "num_tokens": num_tokens,
      "dim": dim,
      "vocab_size": vocab_size,
      "dtype": "float32",
      "compile_s": timing.compile_s,
      "median_s": timing.median_s,
      "spread": timing.spread,
      "repeats": timing.repeats,
      "ratio": timing.median_s / baseline,
      "baseline": "fused full softmax",
      **memory[name],
      **device,
    }
    for name, timing in timings.items()
  ]
