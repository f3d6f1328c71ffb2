"""Every loss under jit, vmap, grad, jvp and check_grads; no retracing."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import xentax

rng = np.random.default_rng(0)
N, C = 6, 4
LOGITS = rng.normal(size=(N, C))
PROBS = np.exp(LOGITS) / np.exp(LOGITS).sum(-1, keepdims=True)
LABELS = rng.integers(0, C, N)
TARGETS = np.eye(C)[LABELS] * 0.7 + 0.3 / C
BIN_LOGITS = rng.normal(size=(N,))
BIN_PROBS = 1 / (1 + np.exp(-BIN_LOGITS)) * 0.9 + 0.05
BIN_LABELS = rng.uniform(size=(N,))
W = np.linspace(0.5, 2.0, C)

# (name, loss, differentiable input, other input, options)
CASES = [
  ("bce", xentax.binary_cross_entropy, BIN_PROBS, BIN_LABELS, {"weights": 2.0}),
  (
    "bce_logits",
    xentax.binary_cross_entropy_with_logits,
    BIN_LOGITS,
    BIN_LABELS,
    {"pos_weight": 2.0, "label_smoothing": 0.1},
  ),
  ("cce", xentax.categorical_cross_entropy, PROBS, TARGETS, {"class_weights": W}),
  (
    "cce_logits",
    xentax.categorical_cross_entropy_with_logits,
    LOGITS,
    TARGETS,
    {"class_weights": W, "label_smoothing": 0.1},
  ),
  ("scce", xentax.sparse_categorical_cross_entropy, PROBS, LABELS, {"ignore_index": 1}),
  (
    "scce_logits",
    xentax.sparse_categorical_cross_entropy_with_logits,
    LOGITS,
    LABELS,
    {"class_weights": W, "label_smoothing": 0.1, "z_loss": 0.01, "ignore_index": 2},
  ),
  ("bfocal", xentax.binary_focal_loss_with_logits, BIN_LOGITS, BIN_LABELS, {"alpha": 0.25}),
  (
    "sfocal",
    xentax.sparse_categorical_focal_loss_with_logits,
    LOGITS,
    LABELS,
    {"gamma": 2.0, "class_weights": W},
  ),
]
IDS = [case[0] for case in CASES]


@pytest.mark.parametrize("name, fn, x, y, options", CASES, ids=IDS)
def test_jit_equals_eager(name, fn, x, y, options):
  for reduction in ["none", "sum", "mean"]:
    eager = fn(x, y, reduction=reduction, **options)
    jitted = jax.jit(functools.partial(fn, reduction=reduction, **options))(x, y)
    np.testing.assert_allclose(jitted, eager, rtol=1e-13)


@pytest.mark.parametrize("name, fn, x, y, options", CASES, ids=IDS)
def test_vmap_of_per_example_call_equals_reduction_none(name, fn, x, y, options):
  none = fn(x, y, reduction="none", **options)
  per_example = jax.vmap(functools.partial(fn, reduction="sum", **options))(x, y)
  np.testing.assert_allclose(per_example, none, rtol=1e-13)
  unweighted = {k: v for k, v in options.items() if k not in ("class_weights", "weights")}
  none = fn(x, y, reduction="none", **unweighted)
  per_example = jax.vmap(functools.partial(fn, reduction="mean", **unweighted))(x, y)
  np.testing.assert_allclose(per_example, none, rtol=1e-13)


@pytest.mark.parametrize("name, fn, x, y, options", CASES, ids=IDS)
def test_check_grads_float64_orders_1_and_2(name, fn, x, y, options):
  f = jax.jit(lambda x: fn(x, y, **options))  # jit: each derivative compiles once
  check_grads(f, (x,), order=2, modes=("fwd", "rev"), eps=1e-5, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("name, fn, x, y, options", CASES, ids=IDS)
def test_jvp_and_vjp_match_a_central_difference(name, fn, x, y, options):
  """Forward and reverse mode against a float64 central difference along one direction, a
  reference that shares nothing with the losses' custom derivative rules."""
  f = lambda x: fn(x, y, **options)  # noqa: E731
  tangent = np.random.default_rng(1).normal(size=np.shape(x))
  _, forward = jax.jvp(f, (x,), (tangent,))
  reverse = jnp.vdot(jax.grad(f)(x), tangent)
  h = 1e-6
  central = (f(x + h * tangent) - f(x - h * tangent)) / (2 * h)
  noise = 4 * np.finfo(np.float64).eps * abs(float(f(x))) / h
  np.testing.assert_allclose(forward, central, rtol=1e-7, atol=1e-9 + noise)
  np.testing.assert_allclose(reverse, central, rtol=1e-7, atol=1e-9 + noise)
  np.testing.assert_allclose(forward, reverse, rtol=1e-12)


@pytest.mark.parametrize("name, fn, x, y, options", CASES, ids=IDS)
def test_compiling_twice_with_same_shapes_does_not_retrace(name, fn, x, y, options):
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(x, y):
    return fn(x, y, **options)

  first = loss(jnp.asarray(x), jnp.asarray(y))
  second = loss(jnp.asarray(x) * 0.5 + 0.25 * (name in ("bce", "cce", "scce")), jnp.asarray(y))
  assert np.isfinite(first) and np.isfinite(second)


@pytest.mark.parametrize("name, fn, x, y, options", CASES, ids=IDS)
def test_float32_stays_float32_with_x64_enabled(name, fn, x, y, options):
  out = fn(np.asarray(x, np.float32), y, **options)
  assert out.dtype == jnp.float32
  grad = jax.grad(lambda x: fn(x, y, **options))(np.asarray(x, np.float32))
  assert grad.dtype == jnp.float32


def test_traced_hyperparameters_do_not_recompile():
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss(x, e, z):
    return xentax.sparse_categorical_cross_entropy_with_logits(
      x, LABELS, label_smoothing=e, z_loss=z
    )

  a = loss(LOGITS, 0.0, 0.0)
  b = loss(LOGITS, 0.1, 0.01)
  np.testing.assert_allclose(a, xentax.sparse_categorical_cross_entropy_with_logits(LOGITS, LABELS))
  np.testing.assert_allclose(
    b,
    xentax.sparse_categorical_cross_entropy_with_logits(
      LOGITS, LABELS, label_smoothing=0.1, z_loss=0.01
    ),
  )
