"""``in_batch_softmax_cross_entropy``, ``clip_loss`` and ``siglip_loss`` against float64
references and torch (open_clip's formulas), chunked and not, on a mesh, and their contract."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

import xentax
from tests import _reference

REDUCTIONS = ["mean", "sum", "sum_over_batch_size", "none"]


def _pairs(rng, b, d=4):
  return rng.normal(size=(b, d)), rng.normal(size=(b, d))


@settings(max_examples=10, deadline=None)  # each shape and option set compiles once
@given(
  seed=st.integers(0, 2**16),
  b=st.integers(1, 7),
  s=st.integers(0, 3),
  chunk=st.sampled_from([None, 1, 2, 3]),
  with_ids=st.booleans(),
  with_mask=st.booleans(),
  with_weights=st.booleans(),
  reduction=st.sampled_from(REDUCTIONS),
)
def test_in_batch_matches_the_reference(
  seed, b, s, chunk, with_ids, with_mask, with_weights, reduction
):
  rng = np.random.default_rng(seed)
  query, item = _pairs(rng, b)
  ids = rng.integers(0, 3, b) if with_ids else None
  kept = rng.random(b) < 0.7 if with_mask else None
  weights = rng.uniform(0.5, 2.0, b) if with_weights else None
  log_q = np.log(rng.uniform(0.01, 0.5, b))
  sampled = rng.normal(size=(s, 4)) if s else None
  sampled_q = np.log(rng.uniform(0.01, 0.5, s)) if s else None
  sampled_ids = rng.integers(0, 3, s) if s and with_ids else None
  if kept is not None:  # dropped pairs may hold anything
    query, item = (np.where(kept[:, None], x, np.nan) for x in (query, item))
  options = dict(item_ids=ids, log_q=log_q, temperature=0.7, sample_weight=weights)
  got = xentax.in_batch_softmax_cross_entropy(
    query, item, sampled_item=sampled, sampled_log_q=sampled_q, sampled_ids=sampled_ids,
    chunk_size=chunk, where=kept, reduction=reduction, **options,
  )  # fmt: skip
  want = _reference.in_batch_softmax(
    query, item, sampled=sampled, sampled_log_q=sampled_q, sampled_ids=sampled_ids,
    kept=kept, reduction=reduction, **options,
  )  # fmt: skip
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@settings(max_examples=8, deadline=None)
@given(
  seed=st.integers(0, 2**16),
  b=st.integers(1, 7),
  chunk=st.sampled_from([None, 1, 3]),
  with_mask=st.booleans(),
  reduction=st.sampled_from(REDUCTIONS),
)
def test_clip_and_siglip_match_the_references(seed, b, chunk, with_mask, reduction):
  rng = np.random.default_rng(seed)
  image, text = _pairs(rng, b)
  kept = rng.random(b) < 0.7 if with_mask else None
  if kept is not None:
    image, text = (np.where(kept[:, None], x, np.inf) for x in (image, text))
  common = dict(chunk_size=chunk, where=kept, reduction=reduction)
  got = xentax.clip_loss(image, text, logit_scale=2.5, **common)
  want = _reference.clip(image, text, logit_scale=2.5, kept=kept, reduction=reduction)
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
  got = xentax.siglip_loss(image, text, logit_scale=2.5, logit_bias=-1.5, **common)
  want = _reference.siglip(
    image, text, logit_scale=2.5, logit_bias=-1.5, kept=kept, reduction=reduction
  )
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_match_torch():
  """open_clip's ``ClipLoss`` and ``SigLipLoss`` formulas, and TFRS's corrected in-batch
  softmax with accidental hits, written in torch."""
  rng = np.random.default_rng(0)
  image, text = _pairs(rng, 6, 5)
  x, t = torch.tensor(image), torch.tensor(text)
  logits, labels = 3.0 * x @ t.T, torch.arange(6)
  want = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
  np.testing.assert_allclose(xentax.clip_loss(image, text, logit_scale=3.0), want.item(), 1e-12)
  z = 3.0 * x @ t.T - 2.0
  want = -F.logsigmoid((2 * torch.eye(6) - 1) * z).sum() / 6
  got = xentax.siglip_loss(image, text, logit_scale=3.0, logit_bias=-2.0)
  np.testing.assert_allclose(got, want.item(), 1e-12)
  ids, log_q = torch.tensor([0, 1, 0, 2, 3, 1]), torch.log(torch.linspace(0.1, 0.6, 6))
  z = x @ t.T / 0.5 - log_q
  z = z.masked_fill((ids[:, None] == ids[None]) & ~torch.eye(6, dtype=bool), -torch.inf)
  want = F.cross_entropy(z, labels)
  got = xentax.in_batch_softmax_cross_entropy(
    image, text, item_ids=ids.numpy(), log_q=log_q.numpy(), temperature=0.5
  )
  np.testing.assert_allclose(got, want.item(), 1e-12)


def test_gradients_in_every_float_input():
  """Reverse mode through the checkpointed blocks against float64 finite differences."""
  rng = np.random.default_rng(1)
  q, v = _pairs(rng, 5)
  sampled, ids = rng.normal(size=(2, 4)), np.array([0, 1, 0, 2, 3])

  def in_batch(q, v, log_q, temperature, sampled, sampled_q):
    return xentax.in_batch_softmax_cross_entropy(
      q, v, item_ids=ids, log_q=log_q, temperature=temperature, sampled_item=sampled,
      sampled_log_q=sampled_q, sampled_ids=np.array([1, 4]), chunk_size=2,
    )  # fmt: skip

  check_grads(
    in_batch, (q, v, np.log(np.linspace(0.1, 0.5, 5)), 0.7, sampled, np.array([-1.0, -2.0])),
    order=1, modes=["rev"],
  )  # fmt: skip
  clip = functools.partial(xentax.clip_loss, chunk_size=2)
  check_grads(lambda a, b, s: clip(a, b, logit_scale=s), (q, v, 2.0), order=1, modes=["rev"])
  siglip = functools.partial(xentax.siglip_loss, chunk_size=2)
  check_grads(
    lambda a, b, s, c: siglip(a, b, logit_scale=s, logit_bias=c), (q, v, 2.0, -1.0),
    order=1, modes=["rev"],
  )  # fmt: skip


@pytest.mark.parametrize("loss", ["in_batch", "clip", "siglip"])
def test_dropped_pairs_never_leak(loss):
  """inf/NaN in a dropped pair: a finite loss, finite gradients, zero in the dropped rows."""
  rng = np.random.default_rng(2)
  a, b = _pairs(rng, 6)
  kept = np.array([True, False, True, True, False, True])
  a[1], b[4] = np.inf, np.nan
  fn = {
    "in_batch": functools.partial(xentax.in_batch_softmax_cross_entropy, temperature=0.5),
    "clip": functools.partial(xentax.clip_loss, logit_scale=2.0),
    "siglip": functools.partial(xentax.siglip_loss, logit_scale=2.0, logit_bias=-1.0),
  }[loss]
  value, (da, db) = jax.value_and_grad(
    lambda a, b: fn(a, b, where=kept, chunk_size=4), argnums=(0, 1)
  )(a, b)
  assert np.isfinite(value)
  assert np.all(np.isfinite(da)) and np.all(np.isfinite(db))
  assert np.all(da[~kept] == 0) and np.all(db[~kept] == 0)


def test_nan_in_a_kept_pair_gives_nan():
  rng = np.random.default_rng(3)
  a, b = _pairs(rng, 4)
  b[2, 0] = np.nan  # item 2 is every query's negative
  assert np.isnan(xentax.in_batch_softmax_cross_entropy(a, b))
  assert np.isnan(xentax.clip_loss(a, b, logit_scale=1.0))
  losses = xentax.siglip_loss(a, b, logit_scale=1.0, logit_bias=0.0, reduction="none")
  assert np.all(np.isnan(losses))


def test_chunked_programs_hold_a_block():
  """Value-and-grad temporaries at B = 1024: chunks of 64 rows hold well under one
  ``[B, B]`` float32 matrix (4 MiB); the unchunked program holds several."""
  b = jax.ShapeDtypeStruct((1024, 32), jnp.float32)

  def temp(chunk):
    def f(x, t):
      return xentax.clip_loss(x, t, logit_scale=10.0, chunk_size=chunk)

    compiled = jax.jit(jax.value_and_grad(f, argnums=(0, 1))).lower(b, b).compile()
    return compiled.memory_analysis().temp_size_in_bytes

  square = 1024 * 1024 * 4
  assert temp(64) < square / 2 < 2 * square <= temp(1024)


def test_bf16_inputs_compute_in_float32():
  rng = np.random.default_rng(4)
  a, b = _pairs(rng, 5)
  a16, b16 = jnp.asarray(a, jnp.bfloat16), jnp.asarray(b, jnp.bfloat16)
  got = xentax.clip_loss(a16, b16, logit_scale=2.0, chunk_size=2)
  assert got.dtype == jnp.float32
  want = _reference.clip(np.asarray(a16, np.float64), np.asarray(b16, np.float64), logit_scale=2.0)
  np.testing.assert_allclose(got, want, rtol=1e-5)


def test_jit_and_vmap():
  rng = np.random.default_rng(5)
  a, b = rng.normal(size=(3, 4, 2)), rng.normal(size=(3, 4, 2))
  loss = jax.jit(jax.vmap(lambda a, b: xentax.in_batch_softmax_cross_entropy(a, b, chunk_size=3)))
  want = [_reference.in_batch_softmax(a[i], b[i]) for i in range(3)]
  np.testing.assert_allclose(loss(a, b), want, rtol=1e-12)


@pytest.mark.parametrize("loss", ["in_batch", "clip", "siglip"])
def test_shard_map_equals_the_global_batch(loss):
  """Inside ``shard_map`` with ``axis_name``, 4 devices: the global batch's value and
  gradients, negatives from every device."""
  mesh = jax.make_mesh((4,), ("x",), axis_types=(AxisType.Auto,))
  rng = np.random.default_rng(6)
  a, b = _pairs(rng, 12)
  kept = np.ones(12, bool)
  kept[5] = False
  ids, log_q = rng.integers(0, 5, 12), np.log(rng.uniform(0.05, 0.5, 12))
  fn = {
    "in_batch": lambda a, b, k, i, q, **kw: xentax.in_batch_softmax_cross_entropy(
      a, b, item_ids=i, log_q=q, temperature=0.5, where=k, **kw
    ),
    "clip": lambda a, b, k, i, q, **kw: xentax.clip_loss(a, b, logit_scale=2.0, where=k, **kw),
    "siglip": lambda a, b, k, i, q, **kw: xentax.siglip_loss(
      a, b, logit_scale=2.0, logit_bias=-1.0, where=k, **kw
    ),
  }[loss]
  args = (a, b, kept, ids, log_q)
  want, want_grads = jax.value_and_grad(fn, argnums=(0, 1))(*args)
  local = functools.partial(fn, axis_name="x", chunk_size=2)
  sharded = jax.shard_map(local, mesh=mesh, in_specs=(P("x"),) * 5, out_specs=P())
  got, grads = jax.jit(jax.value_and_grad(sharded, argnums=(0, 1)))(*args)
  np.testing.assert_allclose(got, want, rtol=1e-12)
  for g, w in zip(grads, want_grads, strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-13)


def test_traced_bad_options_give_nan():
  rng = np.random.default_rng(7)
  a, b = _pairs(rng, 3)
  got = jax.jit(lambda t: xentax.in_batch_softmax_cross_entropy(a, b, temperature=t))(0.0)
  assert np.isnan(got)
  assert np.isnan(jax.jit(lambda s: xentax.clip_loss(a, b, logit_scale=s))(-1.0))
  got = jax.jit(lambda c: xentax.siglip_loss(a, b, logit_scale=1.0, logit_bias=c))(np.inf)
  assert np.isnan(got)


@pytest.mark.parametrize(
  ("call", "error", "match"),
  [
    (lambda a, b: xentax.clip_loss(a, b[:2], logit_scale=1.0), ValueError, r"\[B, D\]"),
    (lambda a, b: xentax.clip_loss(a[0], b[0], logit_scale=1.0), ValueError, r"\[B, D\]"),
    (lambda a, b: xentax.clip_loss(a, b, logit_scale=0.0), ValueError, "logit_scale"),
    (
      lambda a, b: xentax.siglip_loss(a, b, logit_scale=1.0, logit_bias=np.nan),
      ValueError,
      "logit_bias",
    ),
    (
      lambda a, b: xentax.in_batch_softmax_cross_entropy(a, b, temperature=-1.0),
      ValueError,
      "temperature",
    ),
    (
      lambda a, b: xentax.in_batch_softmax_cross_entropy(a, b, log_q=[0.0, np.inf, 0.0]),
      ValueError,
      "log_q must be finite",
    ),
    (
      lambda a, b: xentax.in_batch_softmax_cross_entropy(a, b, item_ids=[1, 2]),
      ValueError,
      "item_ids",
    ),
    (
      lambda a, b: xentax.in_batch_softmax_cross_entropy(a, b, sampled_item=np.ones((2, 3))),
      ValueError,
      "sampled_item",
    ),
    (
      lambda a, b: xentax.in_batch_softmax_cross_entropy(
        a, b, item_ids=[1, 2, 3], sampled_item=np.ones((2, 4))
      ),
      ValueError,
      "sampled_ids",
    ),
    (lambda a, b: xentax.clip_loss(a, b, logit_scale=1.0, chunk_size=0), ValueError, "chunk"),
    (
      lambda a, b: xentax.clip_loss(a, b, logit_scale=1.0, axis_name="x"),
      ValueError,
      "axis_name",
    ),
    (lambda a, b: xentax.clip_loss(a, b, logit_scale=1.0, reduction="x"), ValueError, "reduction"),
    (lambda a, b: xentax.clip_loss(a, b, temperature=1.0), TypeError, "temperature"),
    (lambda a, b: xentax.clip_loss(a.astype(int), b, logit_scale=1.0), TypeError, "image"),
  ],
)
def test_bad_input_raises(call, error, match):
  rng = np.random.default_rng(8)
  a, b = _pairs(rng, 3)
  with pytest.raises(error, match=match):
    call(a, b)
