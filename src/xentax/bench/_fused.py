"""Fused linear cross-entropy against the full-logits loss: memory and time.

The full-logits baseline is optax's ``softmax_cross_entropy_with_integer_labels`` on
``hidden @ weight``, the way most JAX training code computes a language-model loss.
"""

from __future__ import annotations

import concurrent.futures
import functools

import jax
import jax.numpy as jnp
import optax

import xentax
from xentax.bench import _measure


def full_logits_loss(hidden, weight, labels):
  logits = jnp.dot(hidden, weight, preferred_element_type=jnp.float32)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def fused_loss(hidden, weight, labels, *, schedule="vocab", block_size=None):
  return xentax.fused_linear_cross_entropy(
    hidden, weight, labels, schedule=schedule, block_size=block_size
  )


def fused_loss_all_options(hidden, weight, labels, *, schedule="vocab"):
  """The fused loss with every option on (weights, smoothing, z-loss, softcap, sample weights)."""
  num_tokens, vocab_size = labels.shape[0], weight.shape[1]
  return xentax.fused_linear_cross_entropy(
    hidden,
    weight,
    labels,
    schedule=schedule,
    ignore_index=-100,
    class_weights=jnp.linspace(0.5, 2.0, vocab_size, dtype=jnp.float32),
    label_smoothing=0.1,
    z_loss=1e-4,
    softcap=30.0,
    sample_weight=jnp.linspace(0.5, 1.5, num_tokens, dtype=jnp.float32),
  )


def _value_and_grad(fn):
  return jax.value_and_grad(fn, argnums=(0, 1))


def _shapes(num_tokens, dim, vocab_size, dtype):
  return (
    jax.ShapeDtypeStruct((num_tokens, dim), dtype),
    jax.ShapeDtypeStruct((dim, vocab_size), dtype),
    jax.ShapeDtypeStruct((num_tokens,), jnp.int32),
  )


def implementations(block_sizes, tokens=False) -> dict:
  """Full logits, the vocabulary-blocked fused loss ("fused (...block...)") and, with
  ``tokens``, the token-chunked schedule ("fused tokens (auto chunk)") and both schedules
  with every option on ("fused ... (all options)", a different loss from the baseline's)."""
  impls = {"full logits (optax)": full_logits_loss, "fused (auto block)": fused_loss}
  if tokens:
    impls["fused tokens (auto chunk)"] = functools.partial(fused_loss, schedule="tokens")
    for schedule in ("tokens", "vocab"):
      impls[f"fused {schedule} (all options)"] = functools.partial(
        fused_loss_all_options, schedule=schedule
      )
  for block in block_sizes:
    impls[f"fused (block {block})"] = functools.partial(fused_loss, block_size=block)
  return impls


def memory_sweep(
  num_tokens, dim, vocab_sizes, block_sizes=(), dtype=jnp.float32, *, tokens=False
) -> list[dict]:
  """Value-and-grad temporaries of each implementation against V, compiled, not run.

  The programs are compiled two at a time (XLA compiles with the GIL released), since
  nothing is timed here but the compilation itself.
  """
  jobs = []
  for vocab_size in vocab_sizes:
    shapes = _shapes(num_tokens, dim, vocab_size, dtype)
    blocks = [b for b in block_sizes if b <= vocab_size]
    for name, fn in implementations(blocks, tokens).items():
      jobs.append((name, vocab_size, fn, shapes))

  def measure(job):
    name, vocab_size, fn, shapes = job
    compiled, seconds = _measure.compile_ahead(_value_and_grad(fn), *shapes)
    return {
      "implementation": name,
      "num_tokens": num_tokens,
      "dim": dim,
      "vocab_size": vocab_size,
      "dtype": jnp.dtype(dtype).name,
      "compile_s": seconds,
      **_measure.memory_bytes(compiled),
    }

  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    return list(pool.map(measure, jobs))


def sparse_full_logits_loss(hidden, weight, labels):
  """xentax's sparse loss on ``hidden @ weight``: the fused defaults' memory yardstick."""
  logits = jnp.dot(hidden, weight, preferred_element_type=jnp.float32)
  return xentax.sparse_categorical_cross_entropy_with_logits(logits, labels)


def memory_grid(grid, dtype=jnp.float32, schedules=("auto",)) -> list[dict]:
  """Temporaries of the fused loss's defaults against full logits (xentax's sparse loss),
  forward and value-and-grad, over ``grid`` of ``(tokens, dim, vocab)``; compiled only.

  Returns:
    One record per shape, mode and schedule, with both temporaries and the excess.
  """
  records = []
  for num_tokens, dim, vocab_size in grid:
    shapes = _shapes(num_tokens, dim, vocab_size, dtype)
    for mode in ("forward", "value_and_grad"):
      wrap = (lambda f: f) if mode == "forward" else _value_and_grad
      full = _measure.memory_bytes(
        _measure.compile_ahead(wrap(sparse_full_logits_loss), *shapes)[0]
      )
      for schedule in schedules:
        fused_fn = wrap(functools.partial(fused_loss, schedule=schedule))
        fused = _measure.memory_bytes(_measure.compile_ahead(fused_fn, *shapes)[0])
        records.append(
          {
            "suite": "fused_grid",
            "implementation": f"fused ({schedule})",
            "baseline": "full logits (xentax sparse)",
            "mode": mode,
            "num_tokens": num_tokens,
            "dim": dim,
            "vocab_size": vocab_size,
            "dtype": jnp.dtype(dtype).name,
            "temp_bytes": fused["temp_bytes"],
            "baseline_temp_bytes": full["temp_bytes"],
            "over_baseline_bytes": fused["temp_bytes"] - full["temp_bytes"],
            **_measure.device_info(),
          }
        )
  return records


def random_inputs(num_tokens, dim, vocab_size, dtype=jnp.float32, copies=2, seed=0):
  """A few independent copies of (hidden, weight, labels), for input rotation."""
  arg_sets = []
  for key in jax.random.split(jax.random.key(seed), copies):
    k_h, k_w, k_y = jax.random.split(key, 3)
    hidden = jax.random.normal(k_h, (num_tokens, dim), dtype)
    weight = (jax.random.normal(k_w, (dim, vocab_size)) / jnp.sqrt(dim)).astype(dtype)
    labels = jax.random.randint(k_y, (num_tokens,), 0, vocab_size)
    arg_sets.append((hidden, weight, labels))
  return arg_sets


def time_comparison(
  num_tokens, dim, vocab_size, block_sizes=(), *, dtype=jnp.float32, repeats=5, tokens=False
) -> list[dict]:
  """Value-and-grad time of each implementation, side by side, with ratios to full logits."""
  arg_sets = random_inputs(num_tokens, dim, vocab_size, dtype)
  compiled, compile_s, memory = {}, {}, {}
  blocks = [b for b in block_sizes if b <= vocab_size]
  for name, fn in implementations(blocks, tokens).items():
    compiled[name], compile_s[name] = _measure.compile_ahead(_value_and_grad(fn), *arg_sets[0])
    memory[name] = _measure.memory_bytes(compiled[name])
  timings = _measure.time_side_by_side(
    compiled, arg_sets, repeats=repeats, compile_seconds=compile_s
  )
  baseline = timings["full logits (optax)"].median_s
  flops = 3 * 2 * num_tokens * dim * vocab_size  # logits, d hidden, d weight
  return [
    {
      "implementation": name,
      "num_tokens": num_tokens,
      "dim": dim,
      "vocab_size": vocab_size,
      "dtype": jnp.dtype(dtype).name,
      "compile_s": timing.compile_s,
      "median_s": timing.median_s,
      "spread": timing.spread,
      "repeats": timing.repeats,
      "ratio_to_full": timing.median_s / baseline,
      "useful_gflops": flops / timing.median_s / 1e9,
      **memory[name],
    }
    for name, timing in timings.items()
  ]
