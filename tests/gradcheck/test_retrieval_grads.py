"""Closed forms of _retrieval_grads against ``jax.grad`` of the losses, float64 differences of
the NumPy references and hand-computed values."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xentax
from tests import _reference as ref
from tests._tolerances import tol
from xentax import gradcheck

REDUCTIONS = ["mean", "sum", "sum_over_batch_size", "none"]
GRAD = tol("float64", "grad")
IN_BATCH_KEYS = ("query", "item", "log_q", "temperature", "sampled_item", "sampled_log_q")

rng = np.random.default_rng(21)
B, D, S = 5, 3, 3
Q, V = rng.normal(size=(2, B, D))
SAMPLED = rng.normal(size=(S, D))
LOG_Q = np.log(rng.uniform(0.05, 0.5, B))
SAMPLED_LOG_Q = np.log(rng.uniform(0.05, 0.5, S))
IDS = np.array([3, 7, 3, 1, 5])  # pairs 0 and 2 hold the same item
SAMPLED_IDS = np.array([7, 2, 5])  # sampled items 0 and 2 are queries 1's and 4's items
KEPT = np.arange(B) != 3
WEIGHTS = rng.uniform(0.5, 2.0, B)


def _total(out, reduction):
  return out.sum() if reduction == "none" else out


def _in_batch_autodiff(params, reduction, chunk_size=2, **fixed):
  """``jax.grad`` of the loss in every float input given in ``params`` (a dict)."""

  def f(p):
    q, v = p["query"], p["item"]
    options = {k: x for k, x in p.items() if k not in ("query", "item")}
    out = xentax.in_batch_softmax_cross_entropy(
      q, v, **options, **fixed, chunk_size=chunk_size, reduction=reduction
    )
    return _total(out, reduction)

  return jax.grad(f)(params)


def _assert_close(closed, auto, keys):
  for key in keys:
    np.testing.assert_allclose(closed[f"d_{key}"], auto[key], **GRAD, err_msg=key)


IN_BATCH_CASES = {
  "plain": ({}, {}),
  "temperature and log_q": ({"temperature": 0.5, "log_q": LOG_Q}, {}),
  "accidental hits, where, weights": (
    {"temperature": 0.7, "log_q": LOG_Q},
    {"item_ids": IDS, "where": KEPT, "sample_weight": WEIGHTS},
  ),
  "mixed negatives": (
    {"temperature": 0.7, "sampled_item": SAMPLED, "sampled_log_q": SAMPLED_LOG_Q},
    {"where": KEPT},
  ),
  "everything": (
    {"temperature": 0.7, "log_q": LOG_Q, "sampled_item": SAMPLED, "sampled_log_q": SAMPLED_LOG_Q},
    {"item_ids": IDS, "sampled_ids": SAMPLED_IDS, "where": KEPT, "sample_weight": WEIGHTS},
  ),
}


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("case", sorted(IN_BATCH_CASES))
def test_in_batch_matches_autodiff(case, reduction):
  options, fixed = IN_BATCH_CASES[case]
  params = {"query": Q, "item": V, **options}
  auto = _in_batch_autodiff(params, reduction, **fixed)
  closed = gradcheck.in_batch_softmax_cross_entropy_grad(
    Q, V, **options, **fixed, reduction=reduction
  )
  _assert_close(closed, auto, params)
  for key in set(IN_BATCH_KEYS) - set(params) - {"temperature"}:
    assert closed[f"d_{key}"] is None, key


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("where", [None, KEPT])
def test_clip_and_siglip_match_autodiff(where, reduction):
  common = dict(where=where, reduction=reduction)

  def clip(p):
    out = xentax.clip_loss(
      p["image"], p["text"], logit_scale=p["logit_scale"], chunk_size=2, **common
    )
    return _total(out, reduction)

  def siglip(p):
    out = xentax.siglip_loss(
      p["image"], p["text"], logit_scale=p["logit_scale"], logit_bias=p["logit_bias"],
      chunk_size=2, **common,
    )  # fmt: skip
    return _total(out, reduction)

  params = {"image": Q, "text": V, "logit_scale": 2.5}
  closed = gradcheck.clip_loss_grad(Q, V, logit_scale=2.5, **common)
  _assert_close(closed, jax.grad(clip)(params), params)
  params = {**params, "logit_bias": -1.0}
  closed = gradcheck.siglip_loss_grad(Q, V, logit_scale=2.5, logit_bias=-1.0, **common)
  _assert_close(closed, jax.grad(siglip)(params), params)


@pytest.mark.slow  # many shapes, each compiled; the fixed cases above run in the fast loop
@settings(max_examples=6, deadline=None)  # each shape and option set compiles once
@given(
  seed=st.integers(0, 2**16),
  b=st.integers(1, 6),
  d=st.integers(1, 4),
  s=st.integers(0, 3),
  chunk=st.sampled_from([None, 1, 2, 4]),
  with_ids=st.booleans(),
  with_mask=st.booleans(),
  with_weights=st.booleans(),
  reduction=st.sampled_from(REDUCTIONS),
)
def test_every_loss_matches_autodiff_over_shapes_and_options(
  seed, b, d, s, chunk, with_ids, with_mask, with_weights, reduction
):
  draw = np.random.default_rng(seed)
  a, c = draw.normal(size=(2, b, d))
  kept = draw.random(b) < 0.7 if with_mask else None
  params = {"query": a, "item": c, "temperature": draw.uniform(0.3, 2.0)}
  params["log_q"] = np.log(draw.uniform(0.05, 0.5, b))
  fixed = {"where": kept}
  if with_ids:
    fixed["item_ids"] = draw.integers(0, 3, b)
  if with_weights:
    fixed["sample_weight"] = draw.uniform(0.5, 2.0, b)
  if s:
    params["sampled_item"] = draw.normal(size=(s, d))
    params["sampled_log_q"] = np.log(draw.uniform(0.05, 0.5, s))
    if with_ids:
      fixed["sampled_ids"] = draw.integers(0, 3, s)
  auto = _in_batch_autodiff(params, reduction, chunk_size=chunk, **fixed)
  options = {k: v for k, v in params.items() if k not in ("query", "item")}
  closed = gradcheck.in_batch_softmax_cross_entropy_grad(
    a, c, **options, **fixed, reduction=reduction
  )
  _assert_close(closed, auto, params)
  scale, bias = draw.uniform(0.5, 5.0), draw.normal()
  common = dict(where=kept, reduction=reduction)

  def clip(x, t, scale):
    return _total(xentax.clip_loss(x, t, logit_scale=scale, chunk_size=chunk, **common), reduction)

  def siglip(x, t, scale, bias):
    out = xentax.siglip_loss(x, t, logit_scale=scale, logit_bias=bias, chunk_size=chunk, **common)
    return _total(out, reduction)

  auto = jax.grad(clip, argnums=(0, 1, 2))(a, c, scale)
  closed = gradcheck.clip_loss_grad(a, c, logit_scale=scale, **common)
  for got, want in zip(closed.values(), auto, strict=True):
    np.testing.assert_allclose(got, want, **GRAD)
  auto = jax.grad(siglip, argnums=(0, 1, 2, 3))(a, c, scale, bias)
  closed = gradcheck.siglip_loss_grad(a, c, logit_scale=scale, logit_bias=bias, **common)
  for got, want in zip(closed.values(), auto, strict=True):
    np.testing.assert_allclose(got, want, **GRAD)


@pytest.mark.parametrize("option", ["temperature", "log_q", "sampled_log_q"])
@pytest.mark.parametrize("shape", ["full", "scalar", "one"])
def test_in_batch_option_gradients_match_autodiff(option, shape):
  """Each option's gradient alone (the others held fixed), in the option's own shape: a
  broadcast correction gets the sum over the columns it shifts."""
  value = {"temperature": 0.6, "log_q": LOG_Q, "sampled_log_q": SAMPLED_LOG_Q}[option]
  value = {"full": value, "scalar": np.mean(value), "one": np.mean(value, keepdims=True)}[shape]
  if option == "temperature" and shape == "full":
    value = np.asarray(value)
  fixed = dict(
    item_ids=IDS, sampled_item=SAMPLED, sampled_ids=SAMPLED_IDS, where=KEPT, sample_weight=WEIGHTS
  )
  others = {"temperature": 0.6, "log_q": LOG_Q, "sampled_log_q": SAMPLED_LOG_Q}
  others.pop(option)

  def f(x):
    return xentax.in_batch_softmax_cross_entropy(
      Q, V, **{option: x}, **others, **fixed, chunk_size=2
    )

  auto = jax.grad(f)(value)
  closed = gradcheck.in_batch_softmax_cross_entropy_grad(Q, V, **{option: value}, **others, **fixed)
  assert np.shape(closed[f"d_{option}"]) == np.shape(value)
  np.testing.assert_allclose(closed[f"d_{option}"], auto, **GRAD)


@pytest.mark.parametrize("option", ["logit_scale", "logit_bias"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_scale_and_bias_gradients_match_autodiff(option, reduction):
  values = {"logit_scale": 3.0, "logit_bias": -2.0}

  def siglip(x):
    out = xentax.siglip_loss(
      Q, V, **{**values, option: x}, where=KEPT, chunk_size=3, reduction=reduction
    )
    return _total(out, reduction)

  closed = gradcheck.siglip_loss_grad(Q, V, **values, where=KEPT, reduction=reduction)
  np.testing.assert_allclose(closed[f"d_{option}"], jax.grad(siglip)(values[option]), **GRAD)
  if option == "logit_scale":

    def clip(x):
      out = xentax.clip_loss(Q, V, logit_scale=x, where=KEPT, chunk_size=3, reduction=reduction)
      return _total(out, reduction)

    closed = gradcheck.clip_loss_grad(Q, V, logit_scale=3.0, where=KEPT, reduction=reduction)
    np.testing.assert_allclose(closed["d_logit_scale"], jax.grad(clip)(3.0), **GRAD)


def _differences(f, x, h=1e-6):
  x = np.asarray(x, np.float64)
  g = np.zeros_like(x)
  for i in np.ndindex(*x.shape):
    e = np.zeros_like(x)
    e[i] = h
    g[i] = (np.sum(f(x + e)) - np.sum(f(x - e))) / (2 * h)
  return g


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_in_batch_matches_differences_of_the_numpy_reference(reduction):
  fixed = dict(
    item_ids=IDS, sampled_ids=SAMPLED_IDS, kept=KEPT, sample_weight=WEIGHTS, reduction=reduction
  )
  inputs = dict(
    query=Q, item=V, temperature=0.7, log_q=LOG_Q, sampled=SAMPLED, sampled_log_q=SAMPLED_LOG_Q
  )
  closed = gradcheck.in_batch_softmax_cross_entropy_grad(
    Q, V, item_ids=IDS, log_q=LOG_Q, temperature=0.7, sampled_item=SAMPLED,
    sampled_log_q=SAMPLED_LOG_Q, sampled_ids=SAMPLED_IDS, where=KEPT, sample_weight=WEIGHTS,
    reduction=reduction,
  )  # fmt: skip
  names = {"sampled": "sampled_item"}
  for arg, value in inputs.items():

    def f(x, arg=arg):
      return ref.in_batch_softmax(**{**inputs, arg: x}, **fixed)

    want = _differences(f, value)
    np.testing.assert_allclose(closed[f"d_{names.get(arg, arg)}"], want, rtol=1e-6, atol=1e-8)


def test_clip_and_siglip_match_differences_of_the_numpy_references():
  closed = gradcheck.clip_loss_grad(Q, V, logit_scale=2.5, where=KEPT)
  inputs = {"image": Q, "text": V, "logit_scale": 2.5}
  for arg, value in inputs.items():
    want = _differences(lambda x, arg=arg: ref.clip(**{**inputs, arg: x}, kept=KEPT), value)
    np.testing.assert_allclose(closed[f"d_{arg}"], want, rtol=1e-6, atol=1e-8)
  closed = gradcheck.siglip_loss_grad(Q, V, logit_scale=2.5, logit_bias=-1.0, where=KEPT)
  inputs = {**inputs, "logit_bias": -1.0}
  for arg, value in inputs.items():
    want = _differences(lambda x, arg=arg: ref.siglip(**{**inputs, arg: x}, kept=KEPT), value)
    np.testing.assert_allclose(closed[f"d_{arg}"], want, rtol=1e-6, atol=1e-8)


def test_hand_computed_values():
  # In-batch, q = v = [[1], [0]], T = 1, mean: row 0's logits [1, 0], row 1's [0, 0], so
  # G = [[-1/(e+1), 1/(e+1)], [1/2, -1/2]] / 2, d q = G v, d v = G^T q, d T = -G_00.
  e = math.e
  g = gradcheck.in_batch_softmax_cross_entropy_grad(np.array([[1.0], [0.0]]), [[1.0], [0.0]])
  np.testing.assert_allclose(g["d_query"], [[-1 / (2 * (e + 1))], [0.25]], rtol=1e-14)
  np.testing.assert_allclose(g["d_item"], [[-1 / (2 * (e + 1))], [1 / (2 * (e + 1))]], rtol=1e-14)
  np.testing.assert_allclose(g["d_temperature"], 1 / (2 * (e + 1)), rtol=1e-14)
  # SigLIP, one pair: z = s x t + b = 2, d l / d z = -sigmoid(-2).
  g = gradcheck.siglip_loss_grad(np.array([[1.0]]), [[2.0]], logit_scale=1.0, logit_bias=0.0)
  sig = 1 / (1 + math.exp(2.0))
  np.testing.assert_allclose(
    [g["d_image"][0, 0], g["d_text"][0, 0], g["d_logit_scale"], g["d_logit_bias"]],
    [-2 * sig, -sig, -2 * sig, -sig],
    rtol=1e-14,
  )
  # CLIP, one pair: both softmaxes are 1, the loss is 0 whatever the inputs.
  g = gradcheck.clip_loss_grad(np.array([[1.0, 2.0]]), [[3.0, -1.0]], logit_scale=4.0)
  assert all(np.all(v == 0) for v in g.values())


def test_every_item_the_same_leaves_nothing_to_learn():
  # Every other item is an accidental hit: each row's softmax is its positive alone.
  same = np.zeros(B, int)
  g = gradcheck.in_batch_softmax_cross_entropy_grad(Q, V, item_ids=same, log_q=LOG_Q)
  assert all(np.all(v == 0) for v in g.values() if v is not None)


@pytest.mark.parametrize("loss", ["in_batch", "clip", "siglip"])
def test_dropped_pairs_equal_the_kept_batch(loss):
  """``where`` equals removing the dropped pairs, and inf/NaN in them reaches no gradient."""
  fn = {
    "in_batch": functools.partial(gradcheck.in_batch_softmax_cross_entropy_grad, temperature=0.5),
    "clip": functools.partial(gradcheck.clip_loss_grad, logit_scale=2.0),
    "siglip": functools.partial(gradcheck.siglip_loss_grad, logit_scale=2.0, logit_bias=-1.0),
  }[loss]
  a, b = Q.copy(), V.copy()
  a[3], b[3, 0] = np.inf, np.nan
  masked, alone = fn(a, b, where=KEPT), fn(Q[KEPT], V[KEPT])
  for key, value in masked.items():
    if value is None:
      assert alone[key] is None
      continue
    value = np.asarray(value)
    if value.ndim == 2:
      assert np.all(value[~KEPT] == 0)
      value = value[KEPT]
    np.testing.assert_allclose(value, alone[key], **GRAD, err_msg=key)


def test_float32_inputs_give_float32_and_jit_traces():
  a, b = Q.astype(np.float32), V.astype(np.float32)
  g = gradcheck.clip_loss_grad(a, b, logit_scale=2.0)
  assert all(v.dtype == jnp.float32 for v in g.values())
  g = gradcheck.siglip_loss_grad(
    jnp.asarray(a, jnp.bfloat16), b, logit_scale=np.float32(2.0), logit_bias=np.float32(0.0)
  )
  assert g["d_image"].dtype == jnp.float32
  jitted = jax.jit(lambda t: gradcheck.in_batch_softmax_cross_entropy_grad(Q, V, temperature=t))
  want = gradcheck.in_batch_softmax_cross_entropy_grad(Q, V, temperature=0.5)
  np.testing.assert_allclose(jitted(0.5)["d_temperature"], want["d_temperature"], **GRAD)


@pytest.mark.parametrize(
  ("call", "error", "match"),
  [
    (lambda: gradcheck.clip_loss_grad(Q, V[:2], logit_scale=1.0), ValueError, r"\[B, D\]"),
    (lambda: gradcheck.clip_loss_grad(Q, V, logit_scale=0.0), ValueError, "logit_scale"),
    (
      lambda: gradcheck.clip_loss_grad(Q, V, logit_scale=1.0, reduction="x"),
      ValueError,
      "reduction",
    ),
    (
      lambda: gradcheck.siglip_loss_grad(Q, V, logit_scale=1.0, logit_bias=np.nan),
      ValueError,
      "logit_bias",
    ),
    (
      lambda: gradcheck.in_batch_softmax_cross_entropy_grad(Q, V, temperature=-1.0),
      ValueError,
      "temperature",
    ),
    (
      lambda: gradcheck.in_batch_softmax_cross_entropy_grad(Q, V, log_q=[0.0, np.inf, 0, 0, 0]),
      ValueError,
      "log_q must be finite",
    ),
    (
      lambda: gradcheck.in_batch_softmax_cross_entropy_grad(Q, V, item_ids=[1, 2]),
      ValueError,
      "item_ids",
    ),
    (
      lambda: gradcheck.in_batch_softmax_cross_entropy_grad(Q, V, sampled_item=np.ones((2, 4))),
      ValueError,
      "sampled_item",
    ),
    (
      lambda: gradcheck.in_batch_softmax_cross_entropy_grad(
        Q, V, item_ids=IDS, sampled_item=SAMPLED
      ),
      ValueError,
      "sampled_ids",
    ),
    (
      lambda: gradcheck.clip_loss_grad(Q, V, logit_scale=1.0, where=np.ones(B)),
      TypeError,
      "where",
    ),
    (lambda: gradcheck.clip_loss_grad(Q.astype(int), V, logit_scale=1.0), TypeError, "image"),
  ],
)
def test_bad_input_raises_like_the_loss(call, error, match):
  with pytest.raises(error, match=match):
    call()
