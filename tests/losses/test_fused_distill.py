"""Fused linear distillation: equal to the dense distillation loss, without [N, V] logits."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xentax
from tests import _reference as ref
from tests._tolerances import tol

rng = np.random.default_rng(1)
N, DS, DT, V = 11, 4, 6, 37
HS, WS = rng.normal(size=(N, DS)), rng.normal(size=(DS, V)) / 2
HT, WT = rng.normal(size=(N, DT)), rng.normal(size=(DT, V)) / 2
Y = rng.integers(0, V, N)
Y[[2, 8]] = -100
WHERE = np.arange(N) % 5 != 1
KW = dict(temperature=2.0, alpha=0.6, ignore_index=-100, where=WHERE, teacher_gradient=True)


def _dense(hs, ws, ht, wt, y, **kw):
  return xentax.distillation_loss(hs @ ws, ht @ wt, y, **kw)


@pytest.mark.parametrize("chunk_size", [1, 3, 4, N, None])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_value_matches_reference(chunk_size, reduction):
  got = xentax.fused_linear_distillation(
    HS, WS, HT, WT, Y, chunk_size=chunk_size, reduction=reduction, **KW
  )
  want = ref.distillation_loss(HS @ WS, HT @ WT, Y, reduction=reduction, **KW)
  np.testing.assert_allclose(got, want, **tol("float64"))


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_gradients_of_all_four_inputs_match_dense(reduction):
  fused = functools.partial(
    xentax.fused_linear_distillation, chunk_size=4, reduction=reduction, **KW
  )
  dense = functools.partial(_dense, reduction=reduction, **KW)
  args = (HS, WS, HT, WT)
  g_fused = jax.grad(lambda *a: 3.0 * fused(*a, Y), argnums=(0, 1, 2, 3))(*args)
  g_dense = jax.grad(lambda *a: 3.0 * dense(*a, Y), argnums=(0, 1, 2, 3))(*args)
  for a, b in zip(g_fused, g_dense, strict=True):
    np.testing.assert_allclose(a, b, **tol("float64", "grad"))


def test_frozen_teacher_gets_zero_and_student_gradients_are_unchanged():
  def f(hs, ws, ht, wt):
    return xentax.fused_linear_distillation(
      hs, ws, jax.lax.stop_gradient(ht), jax.lax.stop_gradient(wt), Y, chunk_size=3, **KW
    )

  g = jax.jit(jax.grad(f, argnums=(0, 1, 2, 3)))(HS, WS, HT, WT)
  want = jax.grad(lambda *a: _dense(*a, Y, **KW), argnums=(0, 1))(HS, WS, HT, WT)
  np.testing.assert_allclose(g[0], want[0], **tol("float64", "grad"))
  np.testing.assert_allclose(g[1], want[1], **tol("float64", "grad"))
  assert np.all(g[2] == 0) and np.all(g[3] == 0)


def test_the_teacher_is_a_constant_by_default():
  kw = {k: v for k, v in KW.items() if k != "teacher_gradient"}
  g = jax.grad(
    lambda *a: xentax.fused_linear_distillation(*a, Y, chunk_size=3, **kw), argnums=(0, 1, 2, 3)
  )(HS, WS, HT, WT)
  want = jax.grad(lambda *a: _dense(*a, Y, **kw), argnums=(0, 1, 2, 3))(HS, WS, HT, WT)
  for a, b in zip(g, want, strict=True):
    np.testing.assert_allclose(a, b, **tol("float64", "grad"))
  assert np.all(g[2] == 0) and np.all(g[3] == 0)


def test_batch_dims_float32_and_jit():
  hs, ht = HS[:10].reshape(2, 5, DS), HT[:10].reshape(2, 5, DT)
  y = np.where(Y < 0, 0, Y)[:10].reshape(2, 5)
  f = jax.jit(functools.partial(xentax.fused_linear_distillation, chunk_size=3, temperature=2.0))
  got = f(*(jnp.asarray(x, jnp.float32) for x in (hs, WS, ht, WT)), y)
  assert got.dtype == jnp.float32
  want = ref.distillation_loss(hs @ WS, ht @ WT, y, temperature=2.0, alpha=0.5)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_dropped_rows_may_hold_nan_and_nothing_kept_is_zero():
  hs = HS.copy()
  hs[1] = np.nan  # WHERE[1] is False
  got = xentax.fused_linear_distillation(hs, WS, HT, WT, Y, **KW)
  np.testing.assert_allclose(got, ref.distillation_loss(HS @ WS, HT @ WT, Y, **KW))
  g = jax.grad(lambda h: xentax.fused_linear_distillation(h, WS, HT, WT, Y, **KW))(hs)
  assert np.all(np.isfinite(g)) and np.all(g[1] == 0)
  none_kept = xentax.fused_linear_distillation(HS, WS, HT, WT, np.full(N, -100), ignore_index=-100)
  assert none_kept == 0


def _temp_bytes(n, d, v, chunk, *, dense=False):
  k = jax.random.split(jax.random.key(0), 4)
  f32 = jnp.float32
  args = (
    jax.random.normal(k[0], (n, d), f32),
    jax.random.normal(k[1], (d, v), f32),
    jax.random.normal(k[2], (n, d), f32),
    jax.random.normal(k[3], (d, v), f32),
    jnp.zeros((n,), jnp.int32),
  )

  def loss(hs, ws, ht, wt, y):
    if dense:
      return _dense(hs, ws, ht, wt, y, temperature=2.0)
    return xentax.fused_linear_distillation(hs, ws, ht, wt, y, chunk_size=chunk, temperature=2.0)

  grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)))
  return grad.lower(*args).compile().memory_analysis().temp_size_in_bytes


def test_temporaries_are_far_below_the_logits():
  n, d, v, chunk = 2048, 32, 4096, 128
  logits_bytes = n * v * 4  # one side's float32 [N, V] logits: 32 MiB
  chunk_bytes = chunk * v * 4  # one [chunk, V] slice: 2 MiB
  temp = _temp_bytes(n, d, v, chunk)
  # A handful of [chunk, V] slices (about 10.5 MiB measured), well below one [N, V].
  assert temp < logits_bytes / 2, (temp, logits_bytes)
  assert temp < 8 * chunk_bytes, (temp, chunk_bytes)
  # Four times the tokens: the temporaries do not grow with N (the [N, D] gradients are
  # outputs, not temporaries), while the dense loss holds several [N, V] buffers.
  assert _temp_bytes(4 * n, d, v, chunk) < temp + chunk_bytes
  assert _temp_bytes(n, d, v, chunk, dense=True) > 2 * logits_bytes


def test_bad_inputs():
  f = xentax.fused_linear_distillation
  with pytest.raises(ValueError, match="reduction='none' is not supported"):
    f(HS, WS, HT, WT, Y, reduction="none")
  with pytest.raises(ValueError, match="same vocabulary"):
    f(HS, WS, HT, WT[:, :-1], Y)
  with pytest.raises(ValueError, match="teacher_hidden has shape"):
    f(HS, WS, HT, WT.T, Y)
  with pytest.raises(ValueError, match="leading shape"):
    f(HS, WS, HT[:-1], WT, Y)
  with pytest.raises(ValueError, match="chunk_size=0"):
    f(HS, WS, HT, WT, Y, chunk_size=0)
  with pytest.raises(TypeError, match="chunk_size=2.5"):
    f(HS, WS, HT, WT, Y, chunk_size=2.5)
  g = functools.partial(f, HS, WS, HT, WT, np.where(Y < 0, 0, Y))
  np.testing.assert_allclose(g(chunk_size=np.int64(3)), g(chunk_size=3))
  with pytest.raises(ValueError, match="labels must lie in"):
    f(HS, WS, HT, WT, Y)  # -100 without ignore_index
  with pytest.raises(TypeError, match="student_weight must be a floating-point"):
    f(HS, WS.astype(int), HT, WT, Y, ignore_index=-100)
  with pytest.raises(TypeError):  # a custom_vjp has no forward mode
    jax.jvp(lambda h: f(h, WS, HT, WT, Y, ignore_index=-100), (HS,), (HS,))


def test_bfloat16_inputs_accumulate_in_float32():
  y = np.where(Y < 0, 0, Y)
  bf = [jnp.asarray(x, jnp.bfloat16) for x in (HS, WS, HT, WT)]
  f = functools.partial(xentax.fused_linear_distillation, chunk_size=4, temperature=2.0)
  got, grads = jax.value_and_grad(lambda *a: f(*a, y), argnums=(0, 1, 2, 3))(*bf)
  assert got.dtype == jnp.float32
  assert all(g.dtype == jnp.bfloat16 for g in grads)
  up = [np.asarray(x, np.float64) for x in bf]  # the reference at the rounded inputs
  want = ref.distillation_loss(up[0] @ up[1], up[2] @ up[3], y, temperature=2.0)
  np.testing.assert_allclose(got, want, **tol("bfloat16"))


# --- sample_weight ------------------------------------------------------------------------
SW = rng.uniform(0.0, 2.0, N)
SW[4] = 0.0


@pytest.mark.parametrize("reduction", ["sum", "mean", "sum_over_batch_size"])
def test_sample_weight_value_and_gradients_match_reference_and_dense(reduction):
  kw = dict(KW, sample_weight=SW, reduction=reduction)
  got = xentax.fused_linear_distillation(HS, WS, HT, WT, Y, chunk_size=4, **kw)
  want = ref.distillation_loss(HS @ WS, HT @ WT, Y, **kw)
  np.testing.assert_allclose(got, want, **tol("float64"))

  def fused(hs, ws, ht, wt, w):
    return xentax.fused_linear_distillation(
      hs, ws, ht, wt, Y, chunk_size=4, **dict(kw, sample_weight=w)
    )

  def dense(hs, ws, ht, wt, w):
    return _dense(hs, ws, ht, wt, Y, **dict(kw, sample_weight=w))

  args = (HS, WS, HT, WT, SW)
  g_fused = jax.grad(fused, argnums=(0, 1, 2, 3, 4))(*args)
  g_dense = jax.grad(dense, argnums=(0, 1, 2, 3, 4))(*args)
  for a, b in zip(g_fused, g_dense, strict=True):
    np.testing.assert_allclose(a, b, **tol("float64", "grad"))


def test_sample_weight_gradient_matches_finite_differences():
  def f(w):
    return xentax.fused_linear_distillation(HS, WS, HT, WT, Y, chunk_size=3, sample_weight=w, **KW)

  h = 1e-6
  g = jax.grad(f)(SW)
  for i in (0, 5, 7):
    e = np.zeros(N)
    e[i] = h
    np.testing.assert_allclose(g[i], (f(SW + e) - f(SW - e)) / (2 * h), rtol=1e-6, atol=1e-8)


def test_a_head_with_zero_features_equals_dense():
  hs, ws = np.zeros((N, 0)), np.zeros((0, V))
  args = (hs, ws, HT, WT)
  fused = functools.partial(xentax.fused_linear_distillation, chunk_size=4, **KW)
  value, grads = jax.value_and_grad(lambda *a: fused(*a, Y), argnums=(0, 1, 2, 3))(*args)
  want, want_grads = jax.value_and_grad(lambda *a: _dense(*a, Y, **KW), argnums=(2, 3))(*args)
  np.testing.assert_allclose(value, want, **tol("float64"))
  assert grads[0].shape == (N, 0) and grads[1].shape == (0, V)
  for a, b in zip(grads[2:], want_grads, strict=True):
    np.testing.assert_allclose(a, b, **tol("float64", "grad"))
