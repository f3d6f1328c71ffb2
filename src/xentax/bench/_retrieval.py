"""Contrastive losses over a batch of ``B`` pairs: xentax's chunked losses against the plain
formula that holds the whole ``[B, B]`` similarity matrix, one value-and-grad step each.

The formulas are the ones a user writes with ``jax.nn`` (open_clip's and TFRS's, in JAX):
the baseline of each row. xentax runs with its default chunking (blocks of 2^22
similarities) and, for the cost of chunking alone, with one block (``chunk_size=B``).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

import xentax
from xentax.bench import _measure


def _clip_formula(x, t, scale):
  z = scale * x @ t.T
  diag = jnp.diagonal(z)
  rows = jax.nn.logsumexp(z, axis=1) - diag
  cols = jax.nn.logsumexp(z, axis=0) - diag
  return 0.5 * (jnp.mean(rows) + jnp.mean(cols))


def _in_batch_formula(q, v, log_q, temperature):
  z = q @ v.T / temperature - log_q
  return jnp.mean(jax.nn.logsumexp(z, axis=1) - jnp.diagonal(z))


def _siglip_formula(x, t, scale, bias):
  z = scale * x @ t.T + bias
  labels = 2 * jnp.eye(len(x), dtype=z.dtype) - 1
  return -jnp.sum(jax.nn.log_sigmoid(labels * z)) / len(x)


def _cases(batch: int):
  """name -> (loss of (a, b, log_q), baseline name)."""
  scale, bias, temperature = 10.0, -10.0, 0.1
  cases: dict[str, tuple[Callable, str | None]] = {
    "clip, formula": (lambda a, b, q: _clip_formula(a, b, scale), None),
    "in-batch, formula": (lambda a, b, q: _in_batch_formula(a, b, q, temperature), None),
    "siglip, formula": (lambda a, b, q: _siglip_formula(a, b, scale, bias), None),
  }
  for chunk, label in ((None, "chunked"), (batch, "one block")):
    cases[f"clip_loss, {label}"] = (
      lambda a, b, q, c=chunk: xentax.clip_loss(a, b, logit_scale=scale, chunk_size=c),
      "clip, formula",
    )
    cases[f"in_batch_softmax_cross_entropy, {label}"] = (
      lambda a, b, q, c=chunk: xentax.in_batch_softmax_cross_entropy(
        a, b, log_q=q, temperature=temperature, chunk_size=c
      ),
      "in-batch, formula",
    )
    cases[f"siglip_loss, {label}"] = (
      lambda a, b, q, c=chunk: xentax.siglip_loss(
        a, b, logit_scale=scale, logit_bias=bias, chunk_size=c
      ),
      "siglip, formula",
    )
  return cases


def run(batch: int, dim: int, *, repeats: int = 5, seed: int = 0) -> list[dict]:
  """Value-and-grad (in both embeddings) time and temporaries, with ratios to the formula."""
  k = jax.random.split(jax.random.key(seed), 4)
  a, b = (jax.random.normal(key, (batch, dim)) / jnp.sqrt(dim) for key in k[:2])
  log_q = jnp.log(jax.random.dirichlet(k[2], jnp.ones(batch)))
  cases = _cases(batch)
  compiled, compile_s, memory = {}, {}, {}
  for name, (fn, _) in cases.items():
    step = jax.value_and_grad(fn, argnums=(0, 1))
    compiled[name], compile_s[name] = _measure.compile_ahead(step, a, b, log_q)
    memory[name] = _measure.memory_bytes(compiled[name])
  arg_sets = [(a, b, log_q), (b, a, log_q)]
  timings = _measure.time_side_by_side(
    compiled, arg_sets, repeats=repeats, compile_seconds=compile_s
  )
  device = _measure.device_info()
  rows = []
  for name, timing in timings.items():
    baseline = cases[name][1] or name
    rows.append(
      {
        "suite": "retrieval",
        "implementation": name,
        "num_tokens": batch,
        "dim": dim,
        "dtype": "float32",
        "compile_s": timing.compile_s,
        "median_s": timing.median_s,
        "spread": timing.spread,
        "repeats": timing.repeats,
        "ratio": timing.median_s / timings[baseline].median_s,
        "baseline": baseline,
        "baseline_temp_bytes": memory[baseline]["temp_bytes"],
        **memory[name],
        **device,
      }
    )
  return rows
