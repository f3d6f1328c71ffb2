"""The candidate samplers: TensorFlow's distributions and expected counts, and the sampled
softmax gradient they make consistent."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xentax
from xentax import sampling


def _log_uniform(v):
  k = np.arange(v, dtype=np.float64)
  return (np.log(k + 2) - np.log(k + 1)) / np.log(v + 1)


SAMPLERS = {
  "log_uniform": (
    lambda key, y, s, u: sampling.log_uniform_candidates(key, y, s, 50, unique=u),
    _log_uniform(50),
  ),
  "uniform": (
    lambda key, y, s, u: sampling.uniform_candidates(key, y, s, 50, unique=u),
    np.full(50, 1 / 50),
  ),
  "unigram": (
    lambda key, y, s, u: sampling.unigram_candidates(key, y, s, np.arange(50.0) % 7, unique=u),
    (np.arange(50.0) % 7) / np.sum(np.arange(50.0) % 7),
  ),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_with_replacement_the_draws_follow_q_and_the_counts_are_s_q(name):
  sample, q = SAMPLERS[name]
  labels = jnp.array([1, 6, 13])
  draws = jax.jit(lambda key: sample(key, labels, 20000, False))(jax.random.key(0))
  freq = np.bincount(np.asarray(draws.sampled_classes), minlength=50) / 20000
  np.testing.assert_allclose(freq, q, atol=4 * np.sqrt(q.max() / 20000))
  np.testing.assert_allclose(np.exp(draws.true_log_q), 20000 * q[[1, 6, 13]], rtol=1e-5)
  np.testing.assert_allclose(
    np.exp(draws.sampled_log_q), 20000 * q[np.asarray(draws.sampled_classes)], rtol=1e-5
  )


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_unique_draws_are_distinct_and_counted_as_tensorflow_counts_them(name):
  sample, q = SAMPLERS[name]
  draw = jax.jit(lambda key: sample(key, jnp.array([1, 6]), 30, True))
  for seed in range(5):
    draws = draw(jax.random.key(seed))
    classes = np.asarray(draws.sampled_classes)
    assert len(set(classes.tolist())) == 30 and q[classes].min() > 0
    # One number of tries T >= S explains every count: S q (T = S) or 1 - (1 - q)^T.
    counts = np.exp(np.asarray(draws.sampled_log_q, np.float64))
    if np.allclose(counts, 30 * q[classes], rtol=1e-5):
      continue
    tries = np.log1p(-counts[0]) / np.log1p(-q[classes[0]])
    assert tries >= 30 and abs(tries - round(tries)) < 1e-2
    want = -np.expm1(round(tries) * np.log1p(-q))
    np.testing.assert_allclose(counts, want[classes], rtol=1e-4)
    np.testing.assert_allclose(np.exp(draws.true_log_q), want[[1, 6]], rtol=1e-4)


def test_unique_draws_keep_the_first_distinct_classes_in_order():
  """The loop's batches end exactly at the S-th distinct class: T counts up to it only."""
  draws = sampling.uniform_candidates(jax.random.key(3), jnp.array([0]), 10, 10)
  assert sorted(np.asarray(draws.sampled_classes).tolist()) == list(range(10))
  tries = math.log1p(-math.exp(float(draws.sampled_log_q[0]))) / math.log1p(-0.1)
  assert tries >= 10  # every class found: at least V draws


@pytest.mark.parametrize(
  "call, match",
  [
    (lambda: sampling.uniform_candidates(jax.random.key(0), jnp.array([10]), 3, 10), "labels"),
    (lambda: sampling.uniform_candidates(jax.random.key(0), jnp.array([1]), 11, 10), "unique"),
    (lambda: sampling.uniform_candidates(jax.random.key(0), jnp.array([1]), 0, 10), "positive"),
    (lambda: sampling.log_uniform_candidates(jax.random.key(0), jnp.array([1]), 2, 0), "positive"),
    (
      lambda: sampling.unigram_candidates(jax.random.key(0), jnp.array([1]), 3, [1.0, 0, 2]),
      "positive count",
    ),
    (
      lambda: sampling.unigram_candidates(jax.random.key(0), jnp.array([1]), 1, [1.0, -1, 2]),
      ">= 0",
    ),
  ],
)
def test_bad_arguments_are_named(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def _relative_error_of_the_mean_gradient(num_sampled, corrected, draws=16):
  """Mean over ``draws`` of the sampled softmax's gradient in ``hidden``, against the full
  softmax's, as a relative Frobenius error (Zipfian labels and sampler, V = 16384)."""
  v, d = 16384, 16
  rng = np.random.default_rng(0)
  q = _log_uniform(v)
  labels = jnp.asarray(rng.choice(v, size=8, p=q / q.sum()))
  hidden = jnp.asarray(rng.normal(size=(8, d)))
  # A weight whose logits favour frequent classes, as a trained model's do.
  weight = jnp.asarray(rng.normal(size=(d, v)) * 0.3 + np.log(q)[None, :] / 4)
  full = jax.grad(
    lambda h: xentax.sparse_categorical_cross_entropy_with_logits(h @ weight, labels)
  )(hidden)

  @jax.jit
  def sampled_grad(key):
    c = sampling.log_uniform_candidates(key, labels, num_sampled, v)
    scale = 1.0 if corrected else 0.0
    return jax.grad(
      lambda h: xentax.sampled_softmax_cross_entropy(
        h,
        weight,
        labels,
        c.sampled_classes,
        sampled_log_q=scale * c.sampled_log_q,
        true_log_q=scale * c.true_log_q,
      )
    )(hidden)

  keys = jax.random.split(jax.random.key(1), draws)
  mean = np.mean([sampled_grad(k) for k in keys], axis=0)
  return float(np.linalg.norm(mean - full) / np.linalg.norm(full))


@pytest.mark.slow  # 96 sampled gradients at V = 16384
def test_the_corrected_sampled_gradient_converges_to_the_full_one():
  bound = 0.02  # the corrected estimate at S = 4096 is well inside it, the uncorrected far out
  corrected = [_relative_error_of_the_mean_gradient(s, True) for s in (16, 256, 4096)]
  assert corrected[0] > corrected[1] > corrected[2], corrected
  assert corrected[2] < bound, corrected
  uncorrected = _relative_error_of_the_mean_gradient(4096, False)
  assert uncorrected > bound, uncorrected


def test_unigram_counts_closed_over_inside_jit_are_checked_eagerly():
  """Concrete counts captured by an enclosing ``jit`` are checked with NumPy (a ``jnp`` check
  would be staged and could not be read)."""
  counts = jnp.array([3.0, 0.0, 1.0, 5.0])

  @jax.jit
  def draw(key, labels):
    return xentax.sampling.unigram_candidates(key, labels, 2, counts).sampled_classes

  sampled = draw(jax.random.key(0), jnp.array([0, 3]))
  assert sampled.shape == (2,) and not np.any(np.asarray(sampled) == 1)
  with pytest.raises(ValueError, match="only 3 classes have a positive count"):
    jax.jit(lambda k: xentax.sampling.unigram_candidates(k, jnp.array([0]), 4, counts))(
      jax.random.key(0)
    )
