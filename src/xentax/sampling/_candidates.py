r"""Candidate samplers: ``S`` classes drawn from ``Q``, and the log expected count of each.

With replacement (``unique=False``) ``S`` classes are drawn and class ``k`` is expected
``S Q(k)`` times. With ``unique=True`` classes are drawn one after another, repeats rejected,
until ``S`` distinct ones are found after ``T`` draws; ``k`` is then expected
``1 - (1 - Q(k))^T`` times, or ``S Q(k)`` when no draw was rejected (``T = S``), as in
TensorFlow's ``RangeSampler``. The returned logs are the ``log Q`` corrections
:func:`xentax.sampled_softmax_cross_entropy` subtracts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from xentax.losses import contract


class Candidates(NamedTuple):
  """Sampled classes and the log expected counts of the true and sampled classes."""

  sampled_classes: jax.Array  # [S] int32
  true_log_q: jax.Array  # the labels' shape
  sampled_log_q: jax.Array  # [S]


def log_uniform_candidates(
  key, labels, num_sampled: int, num_classes: int, *, unique: bool = True
) -> Candidates:
  r"""Zipfian candidates: TensorFlow's ``log_uniform_candidate_sampler``.

  .. math::
    Q(k) = \frac{\log(k + 2) - \log(k + 1)}{\log(V + 1)}, \qquad k = 0, \dots, V - 1,

  the distribution of word ranks in a vocabulary sorted by decreasing frequency. A draw is
  ``floor(exp(u log(V + 1))) - 1`` for a uniform ``u``.

  Args:
    key: a ``jax.random`` key.
    labels: integer true classes, any shape (their ``log_q`` is returned in that shape).
    num_sampled: ``S``, at most ``num_classes`` when ``unique``.
    num_classes: ``V``.
    unique: draw without repeats (TensorFlow's default), else with replacement.

  Returns:
    :class:`Candidates`: ``sampled_classes [S]``, ``true_log_q`` and ``sampled_log_q [S]``.

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> c = xentax.sampling.log_uniform_candidates(jax.random.key(0), jnp.array([3]), 8, 100)
    >>> c.sampled_classes.shape, bool(len(set(c.sampled_classes.tolist())) == 8)
    ((8,), True)
  """
  name = "log_uniform_candidates"
  log_range = math.log1p(_classes(name, num_classes))

  def draw(key, n):
    u = jax.random.uniform(key, (n,), jnp.float32)
    return (jnp.floor(jnp.exp(u * log_range)).astype(jnp.int32) - 1) % num_classes

  def log_prob(k):
    k = k.astype(_float())
    return jnp.log(jnp.log1p(1 / (k + 1))) - math.log(log_range)

  return _candidates(name, key, labels, num_sampled, num_classes, unique, draw, log_prob)


def uniform_candidates(
  key, labels, num_sampled: int, num_classes: int, *, unique: bool = True
) -> Candidates:
  r"""Uniform candidates, ``Q(k) = 1 / V``: TensorFlow's ``uniform_candidate_sampler``.

  Args:
    key: a ``jax.random`` key.
    labels: integer true classes, any shape.
    num_sampled: ``S``, at most ``num_classes`` when ``unique``.
    num_classes: ``V``.
    unique: draw without repeats, else with replacement.

  Returns:
    :class:`Candidates`.
  """
  name = "uniform_candidates"
  _classes(name, num_classes)

  def draw(key, n):
    return jax.random.randint(key, (n,), 0, num_classes, jnp.int32)

  def log_prob(k):
    return jnp.full(jnp.shape(k), -math.log(num_classes), _float())

  return _candidates(name, key, labels, num_sampled, num_classes, unique, draw, log_prob)


def unigram_candidates(key, labels, num_sampled: int, counts, *, unique: bool = True) -> Candidates:
  r"""Candidates in proportion to ``counts``, ``Q(k) = counts_k / sum counts``: TensorFlow's
  ``fixed_unigram_candidate_sampler`` (``distortion=1``).

  A class of count 0 is never drawn, and a true class of count 0 gets ``true_log_q = -inf``,
  which the loss refuses: give every class that can be a label a positive count.

  Args:
    key: a ``jax.random`` key.
    labels: integer true classes, any shape.
    num_sampled: ``S``, at most the number of classes of positive count when ``unique``.
    counts: ``[V]`` finite non-negative counts (or unnormalised probabilities), positive sum.

  Returns:
    :class:`Candidates`.
  """
  name = "unigram_candidates"
  counts = contract.float_array(name, "counts", counts)
  if counts.ndim != 1:
    raise ValueError(f"{name}: counts has shape {counts.shape}; it must be [V].")
  num_classes = _classes(name, counts.shape[0])
  if not isinstance(counts, jax.core.Tracer):
    # NumPy: under an enclosing jit, jnp on a closed-over constant would be staged.
    values = np.asarray(counts)
    positive = int(np.sum(values > 0))
    if bool(np.any(~np.isfinite(values) | (values < 0))) or positive == 0:
      raise ValueError(f"{name}: counts must be finite and >= 0 with a positive sum.")
    if unique and num_sampled > positive:
      raise ValueError(
        f"{name}: num_sampled={num_sampled} unique classes, but only {positive} classes have "
        "a positive count; pass unique=False or fewer samples."
      )
  log_counts = jnp.log(counts.astype(_float()))
  log_total = jnp.log(jnp.sum(counts.astype(_float())))

  # Inverse CDF: one uniform per draw and a binary search, not a Gumbel per class and draw.
  cdf = jnp.cumsum(counts.astype(_float()))
  last = num_classes - 1 - jnp.argmax(counts[::-1] > 0)  # a rounded-up u lands on a positive

  def draw(key, n):
    u = jax.random.uniform(key, (n,), cdf.dtype) * cdf[-1]
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right"), last).astype(jnp.int32)

  def log_prob(k):
    return log_counts[k] - log_total

  return _candidates(name, key, labels, num_sampled, num_classes, unique, draw, log_prob)


def _float():
  return jnp.result_type(float)


def _classes(name: str, num_classes) -> int:
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"{name}: num_classes={num_classes!r} must be a positive int.")
  return num_classes


def _candidates(
  name, key, labels, num_sampled, num_classes, unique, draw: Callable, log_prob: Callable
) -> Candidates:
  """The draws and the log expected counts of ``labels`` and of the draws."""
  labels, _ = contract.integer_labels(name, labels)
  if not isinstance(num_sampled, int) or num_sampled < 1:
    raise ValueError(f"{name}: num_sampled={num_sampled!r} must be a positive int.")
  if unique and num_sampled > num_classes:
    raise ValueError(
      f"{name}: num_sampled={num_sampled} unique classes out of {num_classes}; pass "
      "unique=False or fewer samples."
    )
  bad = (labels < 0) | (labels >= num_classes)
  contract.check_values(name, f"labels must lie in [0, {num_classes})", labels, bad)
  if unique:
    sampled, tries = _unique_draws(key, num_sampled, num_classes, draw)
  else:
    sampled, tries = draw(key, num_sampled), jnp.asarray(num_sampled)

  def log_count(k):
    log_p = log_prob(jnp.clip(k, 0, num_classes - 1))
    with_replacement = math.log(num_sampled) + log_p
    if not unique:
      return with_replacement
    # -expm1(T log1p(-p)) is 1 - (1 - p)^T without cancellation.
    tries_f = tries.astype(log_p.dtype)
    without = jnp.log(-jnp.expm1(tries_f * jnp.log1p(-jnp.exp(log_p))))
    return jnp.where(tries == num_sampled, with_replacement, without)

  return Candidates(sampled, log_count(labels), log_count(sampled))


class _Draws(NamedTuple):
  key: jax.Array
  sampled: jax.Array  # [S], filled in draw order
  seen: jax.Array  # [V] bool
  found: jax.Array  # distinct classes found
  tries: jax.Array  # draws made up to and including the S-th distinct one


def _unique_draws(key, num_sampled: int, num_classes: int, draw: Callable):
  """``S`` distinct classes, drawn in batches of ``S`` and kept in draw order; the number of
  draws it took (those after the ``S``-th distinct class are not counted)."""
  positions = jnp.arange(num_sampled, dtype=jnp.int32)

  def body(state: _Draws) -> _Draws:
    key, sub = jax.random.split(state.key)
    c = draw(sub, num_sampled)
    first = jnp.full((num_classes,), num_sampled, jnp.int32).at[c].min(positions)
    new = (first[c] == positions) & ~state.seen[c]
    rank = state.found + jnp.cumsum(new, dtype=jnp.int32)  # distinct classes up to each draw
    accept = new & (rank <= num_sampled)
    full = rank[-1] >= num_sampled
    used = jnp.where(full, jnp.argmax(rank >= num_sampled).astype(jnp.int32) + 1, num_sampled)
    sampled = state.sampled.at[jnp.where(accept, rank - 1, num_sampled)].set(c, mode="drop")
    seen = state.seen.at[jnp.where(accept, c, num_classes)].set(True, mode="drop")
    found = jnp.minimum(rank[-1], num_sampled)
    return _Draws(key, sampled, seen, found, state.tries + used)

  init = _Draws(
    key,
    jnp.zeros((num_sampled,), jnp.int32),
    jnp.zeros((num_classes,), bool),
    jnp.asarray(0, positions.dtype),
    jnp.asarray(0, positions.dtype),
  )
  final = lax.while_loop(lambda s: s.found < num_sampled, body, init)
  return final.sampled, final.tries
