"""Fused linear + cross-entropy: equal to the dense loss on hidden @ weight + bias."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xentax
from tests import _reference as ref

rng = np.random.default_rng(0)
N, D, V = 13, 8, 50
H = rng.normal(size=(N, D))
W = rng.normal(size=(D, V)) / 2
B = rng.normal(size=V)
Y = rng.integers(0, V, N)
Y[[3, 7]] = -100
Y_FULL = np.where(Y < 0, 1, Y)  # the same labels with none ignored

OPTIONS = {
  "plain": {},
  "ignore_index": {"ignore_index": -100},
  "class_weights": {"ignore_index": -100, "class_weights": rng.uniform(0.5, 2.0, V)},
  "label_smoothing": {"ignore_index": -100, "label_smoothing": 0.1},
  "z_loss": {"ignore_index": -100, "z_loss": 1e-2},
  "where": {"ignore_index": -100, "where": np.arange(N) % 3 != 0},
  "all": {
    "ignore_index": -100,
    "class_weights": rng.uniform(0.5, 2.0, V),
    "label_smoothing": 0.2,
    "z_loss": 1e-2,
    "where": np.arange(N) % 4 != 0,
  },
}


SCHEDULES = ("vocab", "tokens")


def _sizes(schedule, size):
  """The schedule and its block size: vocabulary columns, or tokens per chunk."""
  key = "block_size" if schedule == "vocab" else "chunk_size"
  return {"schedule": schedule, key: size}


def _dense(h, w, b, y, *, softcap=None, **options):
  logits = h @ w + (0 if b is None else b)
  if softcap is not None:
    logits = softcap * jnp.tanh(logits / softcap)
  return xentax.sparse_categorical_cross_entropy_with_logits(logits, y, **options)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_value_matches_float64_reference(name, reduction, schedule):
  options = dict(OPTIONS[name])
  y = Y if "ignore_index" in options else Y_FULL
  if schedule == "tokens" and reduction == "none":
    with pytest.raises(ValueError, match='schedule="tokens" cannot handle reduction="none"'):
      xentax.fused_linear_cross_entropy(H, W, y, schedule="tokens", reduction="none")
    schedule = "auto"  # falls back to the vocabulary schedule
  got = xentax.fused_linear_cross_entropy(
    H, W, y, bias=B, reduction=reduction, **_sizes(schedule, 5), **options
  )
  want = ref.sparse_categorical_cross_entropy_with_logits(
    H @ W + B, y, reduction=reduction, **options
  )
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("schedule", SCHEDULES)
@pytest.mark.parametrize("block_size", [1, 7, 16, 50])
@pytest.mark.parametrize("softcap", [None, 3.0])
@pytest.mark.parametrize("name", ["plain", "all"])
def test_gradients_match_dense(name, softcap, block_size, schedule):
  options = dict(OPTIONS[name])
  y = Y if "ignore_index" in options else Y_FULL
  fused = functools.partial(
    xentax.fused_linear_cross_entropy,
    softcap=softcap,
    **_sizes(schedule, block_size),
    **options,
  )
  dense = functools.partial(_dense, softcap=softcap, **options)
  got = jax.value_and_grad(lambda h, w, b: fused(h, w, y, bias=b), argnums=(0, 1, 2))(H, W, B)
  want = jax.value_and_grad(lambda h, w, b: dense(h, w, b, y), argnums=(0, 1, 2))(H, W, B)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-13)


def test_per_example_cotangents_reach_each_token():
  # reduction="none" with arbitrary per-token cotangents, through vjp.
  cot = rng.normal(size=N)
  _, fused_vjp = jax.vjp(
    lambda h, w: xentax.fused_linear_cross_entropy(h, w, Y_FULL, reduction="none", block_size=9),
    H,
    W,
  )
  _, dense_vjp = jax.vjp(lambda h, w: _dense(h, w, None, Y_FULL, reduction="none"), H, W)
  for g, w in zip(fused_vjp(cot), dense_vjp(cot), strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_return_lse_gives_log_normaliser_and_its_gradient(schedule):
  y = Y_FULL
  sizes = _sizes(schedule, 6)
  loss, lse = xentax.fused_linear_cross_entropy(H, W, y, bias=B, return_lse=True, **sizes)
  logits = H @ W + B
  np.testing.assert_allclose(lse, np.log(np.exp(logits).sum(-1)), rtol=1e-12)
  grad = jax.grad(
    lambda h: xentax.fused_linear_cross_entropy(h, W, y, return_lse=True, **sizes)[1].sum()
  )(H)
  softmax = np.exp(H @ W) / np.exp(H @ W).sum(-1, keepdims=True)
  np.testing.assert_allclose(grad, softmax @ W.T, rtol=1e-11)

  # The loss and the log-normaliser both differentiated (a z-loss computed outside).
  def both(h, w):
    loss, lse = xentax.fused_linear_cross_entropy(h, w, y, return_lse=True, **sizes)
    return loss**2 + jnp.sum(lse**2)

  def dense(h, w):
    return _dense(h, w, None, y) ** 2 + jnp.sum(jax.nn.logsumexp(h @ w, axis=-1) ** 2)

  got, want = jax.grad(both, (0, 1))(H, W), jax.grad(dense, (0, 1))(H, W)
  for g, w in zip(got, want, strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-13)
  _, lse = xentax.fused_linear_cross_entropy(
    H, W, Y, ignore_index=-100, return_lse=True, schedule=schedule
  )
  assert np.all(np.asarray(lse)[[3, 7]] == 0)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_batch_dims_and_vmap(schedule):
  h = rng.normal(size=(3, 5, D))
  y = rng.integers(0, V, (3, 5))
  sizes = _sizes(schedule, 4)
  want = np.asarray(_dense(h, W, None, y, reduction="none"))
  if schedule == "vocab":  # the tokens schedule refuses reduction="none" (tested above)
    got = xentax.fused_linear_cross_entropy(h, W, y, reduction="none", **sizes)
    assert got.shape == (3, 5)
    np.testing.assert_allclose(got, want, rtol=1e-12)
  per_sequence = jax.vmap(
    lambda h, y: xentax.fused_linear_cross_entropy(h, W, y, reduction="sum", **sizes)
  )(h, y)
  np.testing.assert_allclose(per_sequence, want.sum(-1), rtol=1e-12)
  grad = jax.jit(jax.grad(lambda w: xentax.fused_linear_cross_entropy(h, w, y, **sizes)))(W)
  np.testing.assert_allclose(grad, jax.grad(lambda w: _dense(h, w, None, y))(W), rtol=1e-11)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_bfloat16_inputs_accumulate_in_float32(schedule):
  h, w = jnp.asarray(H, jnp.bfloat16), jnp.asarray(W, jnp.bfloat16)
  y = Y_FULL
  sizes = _sizes(schedule, 16 if schedule == "vocab" else 5)
  got = xentax.fused_linear_cross_entropy(h, w, y, **sizes)
  assert got.dtype == jnp.float32
  want = _dense(np.asarray(h, np.float64), np.asarray(w, np.float64), None, y)
  np.testing.assert_allclose(got, want, rtol=1e-5)
  grads = jax.grad(
    lambda h, w: xentax.fused_linear_cross_entropy(h, w, y, **sizes), argnums=(0, 1)
  )(h, w)
  assert grads[0].dtype == jnp.bfloat16 and grads[1].dtype == jnp.bfloat16
  h64, w64 = np.asarray(h, np.float64), np.asarray(w, np.float64)
  want = jax.grad(lambda h, w: _dense(h, w, None, y), argnums=(0, 1))(h64, w64)
  for g, w in zip(grads, want, strict=True):
    np.testing.assert_allclose(np.asarray(g, np.float64), w, rtol=2e-2, atol=2e-3)


def test_float32_stays_float32_with_x64():
  got = xentax.fused_linear_cross_entropy(
    H.astype(np.float32), W.astype(np.float32), Y_FULL, label_smoothing=0.1, z_loss=0.1
  )
  assert got.dtype == jnp.float32


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_forward_mode_is_a_clear_error(schedule):
  f = lambda h: xentax.fused_linear_cross_entropy(h, W, Y_FULL, schedule=schedule)  # noqa: E731
  with pytest.raises(TypeError, match="forward-mode"):
    jax.jvp(f, (H,), (H,))


def test_out_of_range_labels():
  with pytest.raises(ValueError, match=r"labels must lie in \[0, 50\); found 50"):
    xentax.fused_linear_cross_entropy(H, W, np.full(N, V))
  losses = jax.jit(
    lambda y: xentax.fused_linear_cross_entropy(H, W, y, reduction="none", block_size=16)
  )(np.where(np.arange(N) == 2, V + 3, Y_FULL))
  losses = np.asarray(losses)
  assert np.isnan(losses[2]) and np.isfinite(np.delete(losses, 2)).all()


def test_out_of_range_label_makes_the_tokens_schedule_sum_nan():
  y = np.where(np.arange(N) == 2, V + 3, Y_FULL)
  f = jax.jit(
    lambda y, where: xentax.fused_linear_cross_entropy(
      H, W, y, where=where, schedule="tokens", chunk_size=4
    )
  )
  assert np.isnan(f(y, np.ones(N, bool)))
  assert np.isfinite(f(y, np.arange(N) != 2))  # the bad token masked out


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_dropped_rows_with_inf_are_harmless(schedule):
  h = H.copy()
  h[3] = np.inf
  sizes = _sizes(schedule, 5)
  value, grad = jax.value_and_grad(
    lambda h: xentax.fused_linear_cross_entropy(h, W, Y, ignore_index=-100, **sizes)
  )(h)
  # The dropped row's hidden state never reaches the loss: the same as a zero row there.
  clean = np.where(np.isfinite(h), h, 0.0)
  want = ref.sparse_categorical_cross_entropy_with_logits(clean @ W, Y, ignore_index=-100)
  np.testing.assert_allclose(value, want, rtol=1e-12)
  want_grad = jax.grad(lambda h: _dense(h, W, None, Y, ignore_index=-100))(clean)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-11, atol=1e-14)
  assert np.all(np.asarray(grad)[[3, 7]] == 0)


def test_bad_arguments_raise_clear_errors():
  with pytest.raises(ValueError, match=r"\[\.\.\., D\] and \[D, V\]"):
    xentax.fused_linear_cross_entropy(H, W.T, Y_FULL)
  with pytest.raises(ValueError, match="labels have shape"):
    xentax.fused_linear_cross_entropy(H, W, Y_FULL[:5])
  with pytest.raises(ValueError, match="block_size=0"):
    xentax.fused_linear_cross_entropy(H, W, Y_FULL, block_size=0)
  for bad in (0, -7):
    with pytest.raises(ValueError, match=f"chunk_size={bad} must be a positive integer"):
      xentax.fused_linear_cross_entropy(H, W, Y_FULL, schedule="tokens", chunk_size=bad)
  for bad in (True, 2.5, "3"):
    with pytest.raises(TypeError, match="chunk_size=.* must be a Python or NumPy integer"):
      xentax.fused_linear_cross_entropy(H, W, Y_FULL, schedule="tokens", chunk_size=bad)
  got = xentax.fused_linear_cross_entropy(H, W, Y_FULL, schedule="tokens", chunk_size=np.int64(4))
  np.testing.assert_allclose(got, xentax.fused_linear_cross_entropy(H, W, Y_FULL), rtol=1e-12)
  with pytest.raises(ValueError, match="bias has shape"):
    xentax.fused_linear_cross_entropy(H, W, Y_FULL, bias=np.ones(3))
  with pytest.raises(TypeError, match="integer class indices"):
    xentax.fused_linear_cross_entropy(H, W, Y_FULL.astype(float))


def _temp_bytes(fn, n, d, v):
  args = (
    jax.ShapeDtypeStruct((n, d), jnp.float32),
    jax.ShapeDtypeStruct((d, v), jnp.float32),
    jax.ShapeDtypeStruct((n,), jnp.int32),
  )
  compiled = jax.jit(jax.value_and_grad(fn, argnums=(0, 1))).lower(*args).compile()
  return compiled.memory_analysis().temp_size_in_bytes


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_temporaries_stay_flat_as_vocabulary_grows(schedule):
  def fused(v):
    # The vocabulary schedule holds [N, 1024] logits; the tokens schedule [2^18 / V, V].
    sizes = _sizes(schedule, 1024 if schedule == "vocab" else (1 << 18) // v)
    return functools.partial(xentax.fused_linear_cross_entropy, **sizes)

  dense = lambda h, w, y: _dense(h, w, None, y)  # noqa: E731
  n, d = 512, 64
  small, large = _temp_bytes(fused(8192), n, d, 8192), _temp_bytes(fused(65536), n, d, 65536)
  assert large <= 1.1 * small
  # The dense loss holds the [n, V] logits (and their gradient): 128 MiB at V = 65536.
  assert _temp_bytes(dense, n, d, 65536) >= n * 65536 * 4
  assert large < n * 65536 * 4 / 8


def test_auto_block_size_never_holds_the_full_logits_of_a_large_vocabulary():
  from xentax.losses._fused_vocab import auto_block_size

  assert auto_block_size(8192, 131072) == 2048
  assert auto_block_size(512, 32768) == 8192  # not the whole vocabulary
  assert auto_block_size(4, 1000) == 1000
  assert auto_block_size(10**6, 50257) == 128


# --- sample_weight on both schedules (issue 12 item 2) ---------------------------------------

SAMPLE_WEIGHT = np.random.default_rng(7).uniform(0.0, 2.0, N)
SAMPLE_WEIGHT[5] = 0.0


@pytest.mark.parametrize("schedule, size", [("vocab", 7), ("tokens", 4), ("tokens", None)])
@pytest.mark.parametrize("reduction", ["sum", "mean", "sum_over_batch_size"])
@pytest.mark.parametrize("name", ["ignore_index", "all"])
def test_sample_weight_matches_reference_on_both_schedules(name, reduction, schedule, size):
  options = dict(OPTIONS[name], softcap=4.0) if name == "all" else dict(OPTIONS[name])
  got = xentax.fused_linear_cross_entropy(
    H, W, Y, bias=B, sample_weight=SAMPLE_WEIGHT, reduction=reduction,
    **_sizes(schedule, size), **options,
  )  # fmt: skip
  want = ref.sparse_categorical_cross_entropy_with_logits(
    H @ W + B, Y, sample_weight=SAMPLE_WEIGHT, reduction=reduction, **options
  )
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_sample_weight_with_reduction_none_scales_each_token():
  got = xentax.fused_linear_cross_entropy(
    H, W, Y, bias=B, ignore_index=-100, sample_weight=SAMPLE_WEIGHT, reduction="none"
  )
  want = ref.sparse_categorical_cross_entropy_with_logits(
    H @ W + B, Y, ignore_index=-100, sample_weight=SAMPLE_WEIGHT, reduction="none"
  )
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("schedule, size", [("vocab", 7), ("tokens", 4)])
@pytest.mark.parametrize("reduction", ["sum", "mean", "sum_over_batch_size"])
def test_sample_weight_gradients_on_both_schedules(reduction, schedule, size):
  options = dict(OPTIONS["all"], softcap=4.0)

  def fused(h, w, b, s):
    return xentax.fused_linear_cross_entropy(
      h, w, Y, bias=b, sample_weight=s, reduction=reduction, **_sizes(schedule, size), **options
    )

  def dense(h, w, b, s):
    return _dense(h, w, b, Y, sample_weight=s, reduction=reduction, **options)

  s = SAMPLE_WEIGHT + 0.25  # positive, so the differences stay inside the domain
  args = (H, W, B, s)
  got = jax.jit(jax.grad(fused, argnums=(0, 1, 2, 3)))(*args)
  want = jax.jit(jax.grad(dense, argnums=(0, 1, 2, 3)))(*args)
  for g, w_ in zip(got, want, strict=True):
    np.testing.assert_allclose(g, w_, rtol=1e-10, atol=1e-13)
  # d loss / d s against float64 central differences of the fused loss itself.
  step = 1e-6
  f = jax.jit(fused)
  numeric = [(f(H, W, B, s + step * e) - f(H, W, B, s - step * e)) / (2 * step) for e in np.eye(N)]
  np.testing.assert_allclose(got[3], numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_sample_weight_under_jit_and_a_frozen_weight_vector(schedule):
  f = jax.jit(
    lambda h, s: xentax.fused_linear_cross_entropy(
      h, W, Y, ignore_index=-100, sample_weight=s, schedule=schedule
    )
  )
  want = ref.sparse_categorical_cross_entropy_with_logits(
    H @ W, Y, ignore_index=-100, sample_weight=SAMPLE_WEIGHT
  )
  np.testing.assert_allclose(f(H, SAMPLE_WEIGHT), want, rtol=1e-12)
  # Gradient in h only (the weights are data): the same as the dense loss's.
  got = jax.grad(f)(H, SAMPLE_WEIGHT)
  dense = jax.grad(lambda h: _dense(h, W, None, Y, ignore_index=-100, sample_weight=SAMPLE_WEIGHT))(
    H
  )
  np.testing.assert_allclose(got, dense, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_sample_weight_bad_values(schedule):
  f = functools.partial(xentax.fused_linear_cross_entropy, schedule=schedule)
  with pytest.raises(ValueError, match="sample_weight"):
    f(H, W, Y, ignore_index=-100, sample_weight=-SAMPLE_WEIGHT)
  with pytest.raises(ValueError, match=r"sample_weight has shape \(3,\)"):
    f(H, W, Y, ignore_index=-100, sample_weight=np.ones(3))
  bad = SAMPLE_WEIGHT.copy()
  bad[0] = -1.0
  value = jax.jit(lambda s: f(H, W, Y, ignore_index=-100, sample_weight=s))(bad)
  assert np.isnan(value)


def test_sample_weight_on_the_tokens_schedule_keeps_the_memory_contract():
  # No [tokens, V] buffer: the compiled value-and-grad's temporaries stay those of one chunk.
  h = jnp.zeros((256, 16))
  w = jnp.zeros((16, 4096))
  y = jnp.zeros(256, jnp.int32)
  s = jnp.ones(256)

  def temp_bytes(sample_weight):
    def f(h, w, s):
      return xentax.fused_linear_cross_entropy(
        h, w, y, sample_weight=s if sample_weight else None, schedule="tokens", chunk_size=32
      )

    argnums = (0, 1, 2) if sample_weight else (0, 1)
    compiled = jax.jit(jax.value_and_grad(f, argnums=argnums)).lower(h, w, s).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  full_logits = 256 * 4096 * 4
  assert temp_bytes(True) < full_logits / 2
  assert temp_bytes(True) <= temp_bytes(False) + 64 * 1024


@pytest.mark.parametrize("kwargs", [{"schedule": "vocab"}, {"schedule": "tokens"}])
def test_zero_features_give_the_bias_loss_and_empty_gradients(kwargs):
  h, w = np.zeros((N, 0)), np.zeros((0, V))
  options = OPTIONS["all"]

  def fused(h, w, b):
    return xentax.fused_linear_cross_entropy(h, w, Y, bias=b, **kwargs, **options)

  value, grads = jax.value_and_grad(fused, argnums=(0, 1, 2))(h, w, B)
  want, want_db = jax.value_and_grad(lambda b: _dense(h, w, b, Y, **options))(B)
  np.testing.assert_allclose(value, want, rtol=1e-12)
  np.testing.assert_allclose(grads[2], want_db, rtol=1e-12, atol=1e-15)
  assert grads[0].shape == (N, 0) and grads[1].shape == (0, V)


@pytest.mark.parametrize(
  "kwargs",
  [{"schedule": "vocab", "block_size": 7}, {"schedule": "tokens"}, {"implementation": "pallas"}],
)
def test_a_plus_inf_logit_gives_an_infinite_loss_like_the_dense_loss(kwargs):
  b = B.copy()
  b[3] = np.inf  # every token's logit of class 3 is +inf; no label is 3
  y = np.where(Y_FULL == 3, 4, Y_FULL)
  h, w = H.astype(np.float32), W.astype(np.float32)
  got = xentax.fused_linear_cross_entropy(
    h, w, y, bias=b.astype(np.float32), reduction="sum", **kwargs
  )
  assert float(got) == np.inf
  assert float(_dense(h, w, b.astype(np.float32), y, reduction="sum")) == np.inf
