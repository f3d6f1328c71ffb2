"""The fused losses inside a user's data-parallel ``shard_map`` (8 CPU devices, float64).

The tokens are split over the mesh; the weight, the bias and every option are replicated.
Each device's loss is the loss of its own tokens, so the sharded call's value and gradients
equal the unsharded loss of each device's block of tokens, combined as the user combines
them (``psum``); a replicated input's gradient is summed over the devices, as JAX's own
rules sum it. No ``axis_name`` is passed: the loss sees only the types of its inputs.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import xentax
from tests.parallel._fused_inputs import fused_inputs

rng = np.random.default_rng(0)
DEVICES = 8  # tests/conftest.py
N, D, V = 4 * DEVICES, 6, 40  # four tokens per device
HIDDEN, WEIGHT, LABELS, FLOATS = fused_inputs(N, D, V)
TOKEN_WISE = {"sample_weight"}  # split over the devices with the tokens
WHERE = np.arange(N) % 5 != 0


def _mesh(shape, axes):
  return jax.make_mesh(shape, axes, axis_types=(jax.sharding.AxisType.Auto,) * len(axes))


def _loss(
  hidden, weight, labels, where, floats, *, reduction, schedule, return_lse=False, chunk_size=None
):
  out = xentax.fused_linear_cross_entropy(
    hidden,
    weight,
    labels,
    where=where,
    ignore_index=-100,
    reduction=reduction,
    schedule=schedule,
    return_lse=return_lse,
    chunk_size=chunk_size,
    **floats,
  )
  if not return_lse:
    return out
  loss, lse = out
  return loss + 0.1 * jnp.sum(jnp.sin(lse))  # a cotangent on every token's lse


def _sharded(names, tokens, **kw):
  """``(hidden, weight, floats) -> scalar``: the per-device loss summed over the devices."""
  mesh = _mesh((DEVICES,) if isinstance(tokens, str) else (2, DEVICES // 2), names)

  def per_device(hidden, weight, labels, where, floats):
    loss = _loss(hidden, weight, labels, where, floats, **kw)
    if kw["reduction"] == "none":
      return loss
    return jax.lax.psum(loss, names)

  def total(h, w, f):
    floats_specs = {k: P(tokens) if k in TOKEN_WISE else P() for k in f}
    fn = jax.shard_map(
      per_device,
      mesh=mesh,
      in_specs=(P(tokens, None), P(), P(tokens), P(tokens), floats_specs),
      out_specs=P(tokens) if kw["reduction"] == "none" else P(),
    )
    return jnp.sum(jnp.cos(fn(h, w, LABELS, WHERE, f)))

  return total


def _unsharded(**kw):
  """The same total without a mesh: each device's block of tokens, one loss call each."""

  def total(h, w, f):
    blocks = []
    for d in range(DEVICES):
      rows = slice(d * N // DEVICES, (d + 1) * N // DEVICES)
      block = {k: v[rows] if k in TOKEN_WISE else v for k, v in f.items()}
      blocks.append(_loss(h[rows], w, LABELS[rows], WHERE[rows], block, **kw))
    if kw["reduction"] == "none":
      return jnp.sum(jnp.cos(jnp.concatenate(blocks)))
    return jnp.cos(sum(blocks))

  return total


def _check(sharded, unsharded, floats):
  args = (jnp.asarray(HIDDEN), jnp.asarray(WEIGHT), {k: jnp.asarray(v) for k, v in floats.items()})
  got = jax.jit(jax.value_and_grad(sharded, argnums=(0, 1, 2)))(*args)
  want = jax.jit(jax.value_and_grad(unsharded, argnums=(0, 1, 2)))(*args)
  flat_got, flat_want = jax.tree.leaves_with_path(got), jax.tree.leaves(want)
  for (path, g), w in zip(flat_got, flat_want, strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=jax.tree_util.keystr(path))


CASES = [
  (schedule, reduction)
  for schedule in ("auto", "tokens", "vocab")
  for reduction in ("mean", "sum", "sum_over_batch_size", "none")
  if not (schedule == "tokens" and reduction == "none")
]


@pytest.mark.parametrize("schedule, reduction", CASES)
def test_every_option_on_matches_each_devices_unsharded_loss(schedule, reduction):
  kw = {"reduction": reduction, "schedule": schedule}
  _check(_sharded("x", "x", **kw), _unsharded(**kw), FLOATS)


@pytest.mark.slow  # the fast loop keeps the all-options cases
@pytest.mark.parametrize("name", [None, *FLOATS])
@pytest.mark.parametrize("schedule", ["tokens", "vocab"])
def test_each_option_alone(schedule, name):
  floats = {} if name is None else {name: FLOATS[name]}
  kw = {"reduction": "sum", "schedule": schedule}
  _check(_sharded("x", "x", **kw), _unsharded(**kw), floats)


@pytest.mark.slow  # the fast loop keeps the all-options cases
@pytest.mark.parametrize("schedule", ["tokens", "vocab"])
def test_a_cotangent_on_lse(schedule):
  kw = {"reduction": "mean", "schedule": schedule, "return_lse": True}
  _check(_sharded("x", "x", **kw), _unsharded(**kw), FLOATS)


@pytest.mark.slow  # the fast loop keeps the all-options cases
@pytest.mark.parametrize("schedule", ["tokens", "vocab"])
def test_tokens_split_over_both_axes_of_a_2d_mesh(schedule):
  kw = {"reduction": "mean", "schedule": schedule}
  _check(_sharded(("data", "model"), ("data", "model"), **kw), _unsharded(**kw), FLOATS)


def test_the_replicated_weight_gradient_is_summed_once_inside_the_rule():
  """One all-reduce of ``d weight`` per call, none inside the loop over token chunks."""
  kw = {"reduction": "sum", "schedule": "tokens", "chunk_size": 1}  # 4 chunks per device
  floats = {k: jnp.asarray(v) for k, v in FLOATS.items() if k not in TOKEN_WISE}
  sharded = _sharded("x", "x", **kw)
  args = (jnp.asarray(HIDDEN), jnp.asarray(WEIGHT), floats)
  text = jax.jit(jax.grad(sharded, argnums=(0, 1, 2))).lower(*args).compile().as_text()
  loop_bodies = set(re.findall(r"\bbody=%?([\w.\-]+)", text))
  assert loop_bodies  # the token chunks' loop
  reduced, computation = [], None
  for line in text.splitlines():
    header = re.match(r"(?:ENTRY )?%?([\w.\-]+) \(.*\{$", line)
    if header:
      computation = header.group(1)
    elif " all-reduce(" in line:
      reduced.append((computation, line))
  assert reduced and all(c not in loop_bodies for c, _ in reduced), reduced
  assert len([line for _, line in reduced if f"[{D},{V}]" in line]) == 1, reduced


@pytest.mark.slow  # the fast loop keeps the all-options cases
@pytest.mark.parametrize("teacher", [False, True], ids=["student", "student-and-teacher"])
def test_fused_linear_distillation(teacher):
  teacher_weight = rng.normal(size=(D, V)) / 2
  sample_weight = FLOATS["sample_weight"]

  def loss(hs, ws, ht, wt, labels, sw):
    return xentax.fused_linear_distillation(
      hs,
      ws,
      ht,
      wt,
      labels,
      sample_weight=sw,
      temperature=2.0,
      alpha=0.3,
      chunk_size=2,
      teacher_gradient=teacher,
    )

  mesh = _mesh((DEVICES,), ("x",))
  per_device = lambda *a: jax.lax.psum(loss(*a), "x")  # noqa: E731
  specs = (P("x", None), P(), P("x", None), P(), P("x"), P("x"))
  sharded = jax.shard_map(per_device, mesh=mesh, in_specs=specs, out_specs=P())
  labels = np.where(LABELS < 0, 0, LABELS)

  def unsharded(hs, ws, ht, wt, labels, sw):
    k = N // DEVICES
    return sum(
      loss(hs[i : i + k], ws, ht[i : i + k], wt, labels[i : i + k], sw[i : i + k])
      for i in range(0, N, k)
    )

  args = (HIDDEN, WEIGHT, HIDDEN[::-1], teacher_weight, labels, sample_weight)
  args = tuple(jnp.asarray(a) for a in args)
  argnums = (0, 1, 2, 3, 5)
  got = jax.jit(jax.value_and_grad(sharded, argnums=argnums))(*args)
  want = jax.jit(jax.value_and_grad(unsharded, argnums=argnums))(*args)
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


def test_inside_a_users_shard_map_with_vma_checks_off():
  """``check_vma=False`` (no types to read): the loss of each device's tokens, as before."""
  kw = {"reduction": "sum", "schedule": "vocab"}
  mesh = _mesh((DEVICES,), ("x",))
  fn = jax.shard_map(
    lambda *args: functools.partial(_loss, floats={}, **kw)(*args)[None],
    mesh=mesh,
    in_specs=(P("x", None), P(), P("x"), P("x")),
    out_specs=P("x"),
    check_vma=False,
  )
  per_device = jax.jit(fn)(HIDDEN, WEIGHT, LABELS, WHERE)
  k = N // DEVICES
  for d in range(DEVICES):
    rows = slice(d * k, (d + 1) * k)
    want = _loss(HIDDEN[rows], WEIGHT, LABELS[rows], WHERE[rows], {}, **kw)
    np.testing.assert_allclose(per_device[d], want, rtol=1e-12)
