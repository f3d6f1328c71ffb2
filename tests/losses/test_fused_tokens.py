"""The token-chunked schedule of the fused loss: exactness, option gradients, work, memory."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xentax
from tests import _reference as ref
from tests._tolerances import tol
from xentax.losses import _columns, _fused_tokens

rng = np.random.default_rng(1)
N, D, V = 11, 6, 37
H = rng.normal(size=(N, D))
W = rng.normal(size=(D, V)) / 2
B = rng.normal(size=V)
Y = rng.integers(0, V, N)
Y[[2, 9]] = -100
CW = rng.uniform(0.5, 2.0, V)
WHERE = np.arange(N) % 4 != 1

tokens = functools.partial(xentax.fused_linear_cross_entropy, schedule="tokens")


def _dense(h, w, b, y, *, softcap=None, **options):
  logits = h @ w + b
  if softcap is not None:
    logits = softcap * jnp.tanh(logits / softcap)
  return xentax.sparse_categorical_cross_entropy_with_logits(logits, y, **options)


@pytest.mark.parametrize("chunk_size", [1, 4, 11, None])
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_every_option_matches_the_float64_reference(reduction, chunk_size):
  options = dict(
    ignore_index=-100, class_weights=CW, label_smoothing=0.15, z_loss=0.02, where=WHERE
  )
  got = tokens(H, W, Y, bias=B, chunk_size=chunk_size, reduction=reduction, **options)
  want = ref.sparse_categorical_cross_entropy_with_logits(
    H @ W + B, Y, reduction=reduction, **options
  )
  np.testing.assert_allclose(got, want, **tol("float64"))


def _option_loss(fn, h, w, b, cw, eps, z, cap):
  return fn(
    h,
    w,
    b,
    class_weights=cw,
    label_smoothing=eps,
    z_loss=z,
    softcap=cap,
    ignore_index=-100,
    where=WHERE,
  )


FUSED = lambda h, w, b, **kw: tokens(h, w, Y, bias=b, chunk_size=3, **kw)  # noqa: E731
DENSE = lambda h, w, b, **kw: _dense(h, w, b, Y, **kw)  # noqa: E731
ARGS = (H, W, B, CW, 0.2, 0.03, 2.5)


def test_gradients_of_every_input_and_option_match_the_dense_loss():
  argnums = tuple(range(7))
  got = jax.grad(functools.partial(_option_loss, FUSED), argnums)(*ARGS)
  want = jax.grad(functools.partial(_option_loss, DENSE), argnums)(*ARGS)
  for name, g, w in zip(["h", "w", "b", "cw", "eps", "z", "cap"], got, want, strict=True):
    np.testing.assert_allclose(g, w, err_msg=name, **tol("float64", "grad"))
    assert np.any(np.asarray(g) != 0), name  # each gradient is really exercised


@pytest.mark.parametrize("index", [4, 5, 6])
def test_option_gradients_match_finite_differences(index):
  # label_smoothing, z_loss and softcap, each by a central difference in float64.
  grad = jax.grad(functools.partial(_option_loss, FUSED), index)(*ARGS)
  step = 1e-6
  up, down = list(ARGS), list(ARGS)
  up[index] += step
  down[index] -= step
  numeric = (_option_loss(FUSED, *up) - _option_loss(FUSED, *down)) / (2 * step)
  np.testing.assert_allclose(grad, numeric, rtol=1e-6)


def test_class_weight_gradient_matches_finite_differences():
  grad = jax.grad(functools.partial(_option_loss, FUSED), 3)(*ARGS)
  step = 1e-6
  for c in (0, int(Y[0]), V - 1):
    bump = np.zeros(V)
    bump[c] = step
    up = _option_loss(FUSED, H, W, B, CW + bump, *ARGS[4:])
    down = _option_loss(FUSED, H, W, B, CW - bump, *ARGS[4:])
    np.testing.assert_allclose(grad[c], (up - down) / (2 * step), rtol=1e-6)


def test_jit_gives_the_same_value_and_gradients():
  f = lambda h, w: tokens(h, w, Y, ignore_index=-100, label_smoothing=0.1, chunk_size=4)  # noqa: E731
  eager = jax.value_and_grad(f, (0, 1))(H, W)
  jitted = jax.jit(jax.value_and_grad(f, (0, 1)))(H, W)
  for a, b in zip(jax.tree.leaves(eager), jax.tree.leaves(jitted), strict=True):
    np.testing.assert_allclose(a, b, **tol("float64"))


def _dot_count(fn, *args) -> int:
  return jax.jit(fn).lower(*args).as_text().count("dot_general")


def test_evaluation_is_a_plain_forward_and_a_frozen_weight_skips_its_gradient():
  y = np.where(Y < 0, 0, Y)
  loss = lambda h, w: tokens(h, w, y, chunk_size=4)  # noqa: E731
  assert _dot_count(loss, H, W) == 1  # logits only: no gradient work in evaluation
  assert _dot_count(jax.grad(loss, (0, 1)), H, W) == 3  # logits, d hidden, d weight
  assert _dot_count(jax.grad(loss, 0), H, W) == 2  # frozen weight: no d weight
  assert _dot_count(jax.grad(loss, 1), H, W) == 2  # frozen hidden: no d hidden
  frozen = jax.grad(loss)(H, W)
  np.testing.assert_allclose(
    frozen, jax.grad(lambda h: _dense(h, W, 0.0, y))(H), **tol("float64", "grad")
  )


def test_bfloat16_inputs_with_options():
  h, w = jnp.asarray(H, jnp.bfloat16), jnp.asarray(W, jnp.bfloat16)
  options = dict(ignore_index=-100, class_weights=CW, label_smoothing=0.1, where=WHERE)
  got = jax.value_and_grad(lambda h, w: tokens(h, w, Y, chunk_size=4, **options), (0, 1))(h, w)
  h64, w64 = np.asarray(h, np.float64), np.asarray(w, np.float64)
  want = jax.value_and_grad(lambda h, w: _dense(h, w, 0.0, Y, **options), (0, 1))(h64, w64)
  assert got[0].dtype == jnp.float32
  assert got[1][0].dtype == jnp.bfloat16 and got[1][1].dtype == jnp.bfloat16
  np.testing.assert_allclose(got[0], want[0], rtol=1e-5)
  for g, w in zip(got[1], want[1], strict=True):
    np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=2e-2, atol=2e-3)


def test_nothing_kept_gives_zero_loss_and_zero_gradient():
  value, grad = jax.value_and_grad(lambda h: tokens(h, W, Y, where=np.zeros(N, bool)))(H)
  assert value == 0 and not np.any(grad)


def test_schedule_choice():
  choose = functools.partial(_fused_tokens.choose_schedule, "f", sharded=False)
  f32 = jax.ShapeDtypeStruct((4096, 131072), jnp.float32)
  bf16_small = jax.ShapeDtypeStruct((2048, 32768), jnp.bfloat16)  # 256 MiB accumulator
  bf16_large = jax.ShapeDtypeStruct((4096, 131072), jnp.bfloat16)  # 2 GiB
  assert choose("auto", reduction="mean", weight=f32) == "tokens"
  assert choose("auto", reduction="mean", weight=bf16_small) == "tokens"
  assert choose("auto", reduction="mean", weight=bf16_large) == "vocab"
  assert choose("auto", reduction="none", weight=f32) == "vocab"
  assert choose("vocab", reduction="sum", weight=f32) == "vocab"
  assert choose("auto", reduction="sum", weight=f32, block_size=256) == "vocab"
  assert choose("auto", reduction="sum", weight=f32, chunk_size=64) == "tokens"
  assert choose("tokens", reduction="sum", weight=bf16_large) == "tokens"
  assert _fused_tokens.choose_schedule("f", "auto", reduction="sum", weight=f32, sharded=True) == (
    "vocab"
  )
  with pytest.raises(ValueError, match="schedule='rows' is not supported"):
    tokens(H, W, Y, ignore_index=-100, schedule="rows")
  with pytest.raises(ValueError, match='cannot handle reduction="none"'):
    tokens(H, W, Y, ignore_index=-100, reduction="none")


def test_auto_picks_vocab_on_an_accelerator(monkeypatch):
  f32 = jax.ShapeDtypeStruct((512, 32768), jnp.float32)
  choose = functools.partial(_fused_tokens.choose_schedule, "f", reduction="mean", sharded=False)
  assert choose("auto", weight=f32) == "tokens"  # these tests run on the CPU backend
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert choose("auto", weight=f32) == "vocab"
  assert choose("tokens", weight=f32) == "tokens"  # an explicit choice is kept


def test_auto_chunk_size_bounds_the_logits_of_a_chunk():
  assert _fused_tokens.auto_chunk_size(2048, 32768) == 512
  assert _fused_tokens.auto_chunk_size(8192, 131072) == 128
  assert _fused_tokens.auto_chunk_size(8192, 10**6) == 16
  assert _fused_tokens.auto_chunk_size(8192, 10**8) == 8
  assert _fused_tokens.auto_chunk_size(5, 100) == 5
  assert _fused_tokens.auto_chunk_size(1024, 8192) == 512  # never one chunk of every row
  # ... unless the hidden size outweighs the vocabulary: then one chunk, or what fits.
  assert _fused_tokens.auto_chunk_size(2048, 32768, 512) == 512
  assert _fused_tokens.auto_chunk_size(4096, 1000, 4096) == 4096
  assert _fused_tokens.auto_chunk_size(1024, 8192, 4096) == 1024
  assert _fused_tokens.auto_chunk_size(65536, 1000, 65536) == 248


def test_column_block_bounds_the_d_weight_update():
  assert _fused_tokens.column_block(512, 512, 32768) == 8192
  assert _fused_tokens.column_block(8, 512, 32768) == 256  # 8 * 32768 / (2 * 512)
  assert _fused_tokens.column_block(8, 4096, 32768) == 32
  assert _fused_tokens.column_block(1, 4096, 1000) == 8  # at least 8 columns
  assert _fused_tokens.column_block(512, 64, 1000) == 1000  # at most V
  assert _fused_tokens.column_block(1, 64, 4096) == 4096  # a small [D, V] update in one go


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16, jnp.float32])
def test_column_slices_are_exact_in_every_dtype(dtype):
  x = jnp.asarray(rng.normal(size=(3, 10)), dtype)
  start = jnp.asarray(4)
  np.testing.assert_array_equal(_columns.slice_columns(x, start, 5), x[:, 4:9])
  block = jnp.asarray(rng.normal(size=(3, 5)), dtype)
  np.testing.assert_array_equal(_columns.update_columns(x, block, start), x.at[:, 4:9].set(block))


def _temp_bytes(fn, n, d, v, dtype):
  args = (
    jax.ShapeDtypeStruct((n, d), dtype),
    jax.ShapeDtypeStruct((d, v), dtype),
    jax.ShapeDtypeStruct((n,), jnp.int32),
  )
  compiled = jax.jit(jax.value_and_grad(fn, argnums=(0, 1))).lower(*args).compile()
  return compiled.memory_analysis().temp_size_in_bytes


def test_bfloat16_weight_is_never_copied_to_float32():
  # XLA:CPU used to hoist a float32 copy of the whole bf16 weight out of the block loop.
  n, d, v = 256, 256, 32768
  vocab = functools.partial(xentax.fused_linear_cross_entropy, schedule="vocab", block_size=2048)
  weight_f32_bytes = d * v * 4
  assert _temp_bytes(vocab, n, d, v, jnp.bfloat16) < weight_f32_bytes / 4
  # The tokens schedule needs its float32 d W accumulator (which "auto" counts), no more.
  chunked = functools.partial(tokens, chunk_size=64)
  chunk_logits_bytes = 64 * v * 4
  assert _temp_bytes(chunked, n, d, v, jnp.bfloat16) < weight_f32_bytes + 3 * chunk_logits_bytes


def test_float32_temporaries_are_flat_in_the_vocabulary():
  n, d = 1024, 128
  fused = functools.partial(tokens)  # the auto chunk keeps chunk * V at 2^24 logits
  small = _temp_bytes(fused, n, d, 1 << 16, jnp.float32)
  large = _temp_bytes(fused, n, d, 1 << 18, jnp.float32)
  assert large <= 1.1 * small
  assert large < n * (1 << 18) * 4 / 4  # a quarter of the full logits at most


@pytest.mark.parametrize("schedule", ["tokens", "vocab"])
@pytest.mark.parametrize("chunk_size", [3, 4, 11])
def test_dropped_rows_holding_inf_or_nan_change_no_value_or_gradient(schedule, chunk_size):
  # The rows are sanitized in the logits' statistics and in d logits, not in a copy of h;
  # 11 tokens in chunks of 3 or 4 end in a chunk that overlaps its predecessor.
  poisoned = H.copy()
  poisoned[2] = np.inf
  poisoned[9, 1] = np.nan
  zeroed = H.copy()
  zeroed[[2, 9]] = 0.0
  sizes = {"chunk_size": chunk_size} if schedule == "tokens" else {"block_size": 8}

  def loss(h, w, b, cw, eps, z, cap, s):
    return xentax.fused_linear_cross_entropy(
      h, w, Y, bias=b, class_weights=cw, label_smoothing=eps, z_loss=z, softcap=cap,
      sample_weight=s, ignore_index=-100, schedule=schedule, **sizes,
    )  # fmt: skip

  grad = jax.value_and_grad(loss, argnums=tuple(range(8)))
  args = (W, B, CW, 0.2, 0.03, 2.5, np.linspace(0.5, 2.0, N))
  got_value, got = grad(poisoned, *args)
  want_value, want = grad(zeroed, *args)
  np.testing.assert_allclose(got_value, want_value, **tol("float64"))
  for name, g, w in zip(["h", "w", "b", "cw", "eps", "z", "cap", "s"], got, want, strict=True):
    np.testing.assert_allclose(g, w, err_msg=name, **tol("float64", "grad"))
  # Smoothing without class weights masks its row sums, not each entry.
  unweighted = jax.value_and_grad(
    lambda h, w, b, eps, z, cap, s: loss(h, w, b, None, eps, z, cap, s), argnums=tuple(range(7))
  )
  args = (W, B, 0.2, 0.03, 2.5, np.linspace(0.5, 2.0, N))
  got_value, got = unweighted(poisoned, *args)
  want_value, want = unweighted(zeroed, *args)
  np.testing.assert_allclose(got_value, want_value, **tol("float64"))
  for name, g, w in zip(["h", "w", "b", "eps", "z", "cap", "s"], got, want, strict=True):
    np.testing.assert_allclose(g, w, err_msg=name, **tol("float64", "grad"))


def test_a_bad_label_makes_its_loss_and_gradients_nan_under_jit():
  y = np.where(Y < 0, 0, Y)
  y[4] = V + 3
  value, (d_h, d_w) = jax.jit(
    jax.value_and_grad(lambda h, w: tokens(h, w, y, chunk_size=4), (0, 1))
  )(H, W)
  assert np.isnan(value) and np.isnan(d_h[4]).all() and np.isnan(d_w).any()


def test_the_hidden_states_are_never_copied():
  # Neither sanitizing the dropped rows nor padding to whole chunks copies h: with one
  # chunk's logits far smaller than h, the temporaries stay below half of h.
  n, d, v = 1000, 1024, 64  # 1000 tokens: the last chunk of 128 overlaps its predecessor
  hidden_bytes = n * d * 4
  chunked = functools.partial(tokens, chunk_size=128)
  assert _temp_bytes(chunked, n, d, v, jnp.float32) < hidden_bytes / 2
  args = (jax.ShapeDtypeStruct((n, d), jnp.float32), jax.ShapeDtypeStruct((d, v), jnp.float32))
  forward = jax.jit(lambda h, w: chunked(h, w, jnp.zeros(n, jnp.int32))).lower(*args).compile()
  assert forward.memory_analysis().temp_size_in_bytes < hidden_bytes / 4


@pytest.mark.parametrize("shape", [(4096, 4096, 1000), (1024, 4096, 8192), (600, 2048, 64)])
def test_defaults_hold_no_more_than_full_logits_where_the_hidden_size_dominates(shape):
  """A chunk's ``[chunk, D]`` buffers can outweigh the whole ``[N, V]`` logits; the
  automatic chunk then holds what full logits hold (compiled only)."""
  n, d, v = shape
  full = _temp_bytes(lambda h, w, y: _dense(h, w, 0.0, y), n, d, v, jnp.float32)
  assert _temp_bytes(tokens, n, d, v, jnp.float32) <= full + 64 * 1024


def test_a_bad_label_makes_the_lse_gradient_nan_too():
  """Through a cotangent on the returned ``lse`` alone (its own backward pass), as in the
  vocabulary-blocked schedule."""
  y = np.where(Y < 0, 0, Y)
  y[4] = V + 3

  def lse_sum(h, w, schedule):
    lse = xentax.fused_linear_cross_entropy(
      h, w, y, return_lse=True, schedule=schedule, chunk_size=4 if schedule == "tokens" else None
    )[1]
    return jnp.sum(lse)

  for schedule in ("tokens", "vocab"):
    d_h, d_w = jax.jit(jax.grad(lse_sum, (0, 1)), static_argnums=2)(H, W, schedule)
    assert np.isnan(d_h[4]).all() and np.isnan(d_w).any(), schedule
    assert np.isfinite(np.delete(np.asarray(d_h), 4, axis=0)).all(), schedule
