"""The fused losses on ``NamedSharding`` inputs under ``jit``, on Explicit and Auto meshes.

No ``shard_map`` in user code: on an Explicit mesh the loss reads the layout from its inputs'
types; on an Auto mesh its partitioned ops read it when XLA's partitioner reaches them. Either
way each device runs its share: value and every gradient equal the unsharded call (float64),
and the compiled program's collectives are the ones the layout needs, never an all-gather.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import xentax
from tests.parallel._fused_inputs import fused_inputs

rng = np.random.default_rng(0)
N, D, V = 32, 6, 64
HIDDEN, WEIGHT, LABELS, FLOATS = fused_inputs(N, D, V)
WHERE = np.arange(N) % 7 != 0
MESH = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AxisType.Explicit,) * 2)
AUTO = jax.make_mesh((2, 4), ("data", "model"), axis_types=(AxisType.Auto,) * 2)
MESHES = {"explicit": MESH, "auto": AUTO}
LAYOUTS = {
  "tokens": (P("data", None), P()),
  "vocab": (P(), P(None, "model")),
  "tokens-and-vocab": (P("data", None), P(None, "model")),
  "tokens-over-both-axes": (P(("data", "model"), None), P()),
}


def _loss(hidden, weight, floats, reduction="mean", return_lse=False):
  out = xentax.fused_linear_cross_entropy(
    hidden,
    weight,
    LABELS,
    ignore_index=-100,
    where=WHERE,
    reduction=reduction,
    return_lse=return_lse,
    **floats,
  )
  if return_lse:
    loss, lse = out
    return jnp.sum(jnp.cos(loss)) + 0.1 * jnp.sum(jnp.sin(lse))
  return jnp.sum(jnp.cos(out))


def _placed(layout):
  hidden_spec, weight_spec = LAYOUTS[layout]
  return jax.device_put(HIDDEN, hidden_spec), jax.device_put(WEIGHT, weight_spec)


def _value_and_grads(hidden, weight, floats, **kw):
  floats = {k: jnp.asarray(v) for k, v in floats.items()}
  f = jax.jit(jax.value_and_grad(lambda h, w, f: _loss(h, w, f, **kw), argnums=(0, 1, 2)))
  return f(hidden, weight, floats)


def _check(layout, floats, mesh="explicit", **kw):
  want = _value_and_grads(jnp.asarray(HIDDEN), jnp.asarray(WEIGHT), floats, **kw)
  with jax.set_mesh(MESHES[mesh]):
    got = _value_and_grads(*_placed(layout), floats, **kw)
  for (path, g), w in zip(jax.tree.leaves_with_path(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12, err_msg=jax.tree_util.keystr(path))


# The fast loop keeps every layout at "mean" on the Explicit mesh, and "mean" and "none"
# with both axes sharded on the Auto one.
FAST = (
  {("explicit", "mean", layout) for layout in LAYOUTS}
  | {("auto", r, "tokens-and-vocab") for r in ("mean", "none")}
  | {("explicit", "none", "tokens-and-vocab")}
)
CASES = [
  pytest.param(mesh, r, layout, marks=() if (mesh, r, layout) in FAST else pytest.mark.slow)
  for mesh in MESHES
  for r in ("mean", "sum", "sum_over_batch_size", "none")
  for layout in LAYOUTS
]


@pytest.mark.parametrize(("mesh", "reduction", "layout"), CASES)
def test_every_option_on_matches_the_unsharded_call(mesh, layout, reduction):
  _check(layout, FLOATS, mesh, reduction=reduction)


@pytest.mark.slow  # the fast loop keeps the all-options cases
@pytest.mark.parametrize("name", list(FLOATS))
@pytest.mark.parametrize("mesh", list(MESHES))
def test_each_option_alone(mesh, name):
  _check("tokens-and-vocab", {name: FLOATS[name]}, mesh)


@pytest.mark.slow  # the fast loop keeps the all-options cases
@pytest.mark.parametrize("layout", ["tokens", "vocab"])
@pytest.mark.parametrize("mesh", list(MESHES))
def test_a_cotangent_on_lse(mesh, layout):
  _check(layout, FLOATS, mesh, return_lse=True)


def _collectives(layout, mesh):
  """``{kind: [element counts]}`` of the compiled value-and-grad's collectives."""
  floats = {"bias": jnp.asarray(FLOATS["bias"])}
  with jax.set_mesh(MESHES[mesh]):
    hidden, weight = _placed(layout)
    f = jax.jit(jax.value_and_grad(lambda h, w, f: _loss(h, w, f), argnums=(0, 1, 2)))
    text = f.lower(hidden, weight, floats).compile().as_text()
  found = {}
  for kind in ("all-gather", "all-reduce", "reduce-scatter", "all-to-all", "collective-permute"):
    for line in text.splitlines():
      if re.search(rf" {kind}(-start)?\(", line):
        shapes = re.findall(r"f64\[([\d,]*)\]", line.split("=")[1].split(kind)[0])
        sizes = [int(np.prod([int(d) for d in s.split(",") if d])) for s in shapes]
        found.setdefault(kind, []).append(max(sizes, default=1))
  return found


@pytest.mark.parametrize("mesh", list(MESHES))
def test_the_collectives_are_the_ones_each_layout_needs(mesh):
  layouts = ("tokens", "vocab", "tokens-and-vocab")
  tokens, vocab, both = (_collectives(k, mesh) for k in layouts)
  for found in (tokens, vocab, both):
    assert set(found) == {"all-reduce"}, found  # never a gather, of anything
  # Tokens: d weight (with d bias) and the scalar reduction; no [N]-sized statistic.
  assert max(tokens["all-reduce"]) == D * V and N not in tokens["all-reduce"], tokens
  # Vocabulary: [N] row statistics and d hidden [N, D]; nothing weight- or logits-sized.
  assert max(vocab["all-reduce"]) == N * D and N in vocab["all-reduce"], vocab
  # Both: each device's tokens and columns.
  assert max(both["all-reduce"]) == max(N // 2 * D, D * V // 4), both


def test_a_sharded_feature_axis_is_refused():
  with jax.set_mesh(MESH):
    hidden = jax.device_put(HIDDEN, P(None, "data"))
    weight = jax.device_put(WEIGHT, P("data", None))
    with pytest.raises(ValueError, match="feature axis D is sharded"):
      xentax.fused_linear_cross_entropy(hidden, weight, LABELS, ignore_index=-100)


def test_one_axis_for_tokens_and_vocabulary_is_refused():
  with jax.set_mesh(MESH):
    hidden = jax.device_put(HIDDEN, P("model", None))
    weight = jax.device_put(WEIGHT, P(None, "model"))
    with pytest.raises(ValueError, match="shard both the tokens"):
      xentax.fused_linear_cross_entropy(hidden, weight, LABELS, ignore_index=-100)


def test_the_tokens_schedule_on_sharded_inputs_is_refused():
  with jax.set_mesh(MESH):
    hidden, weight = _placed("tokens")
    with pytest.raises(ValueError, match='schedule="tokens" cannot handle'):
      xentax.fused_linear_cross_entropy(
        hidden, weight, LABELS, ignore_index=-100, schedule="tokens"
      )


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("mesh", list(MESHES))
def test_fused_linear_distillation_with_sharded_tokens(mesh, reduction):
  teacher_hidden, teacher_weight = HIDDEN[::-1] * 0.5, rng.normal(size=(D, V)) / 2
  labels = np.where(LABELS < 0, 0, LABELS)

  def loss(hs, ws, ht, wt, sw):
    return xentax.fused_linear_distillation(
      hs,
      ws,
      ht,
      wt,
      labels,
      where=WHERE,
      sample_weight=sw,
      temperature=2.0,
      alpha=0.3,
      chunk_size=3,
      reduction=reduction,
      teacher_gradient=True,
    )

  args = (HIDDEN, WEIGHT, teacher_hidden, teacher_weight, FLOATS["sample_weight"])
  step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4)))
  want = step(*(jnp.asarray(a) for a in args))
  with jax.set_mesh(MESHES[mesh]):
    tokens = P(("data", "model"), None)
    placed = (
      jax.device_put(HIDDEN, tokens),
      jnp.asarray(WEIGHT),
      jax.device_put(teacher_hidden, tokens),
      jnp.asarray(teacher_weight),
      jax.device_put(FLOATS["sample_weight"], P(("data", "model"))),  # with its tokens
    )
    got = step(*placed)
    text = step.lower(*placed).compile().as_text()
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
  assert " all-gather(" not in text


def test_fused_linear_distillation_refuses_a_sharded_vocabulary():
  with jax.set_mesh(MESH):
    weight = jax.device_put(WEIGHT, P(None, "model"))
    with pytest.raises(ValueError, match="partitions the tokens only"):
      xentax.fused_linear_distillation(HIDDEN, weight, HIDDEN, WEIGHT, np.maximum(LABELS, 0))


def test_fused_linear_distillation_gathers_a_sharded_vocabulary_on_auto_with_a_warning():
  labels = np.maximum(LABELS, 0)

  def step(ws):
    loss = xentax.fused_linear_distillation
    return jax.jit(jax.value_and_grad(lambda w: loss(HIDDEN, w, HIDDEN, WEIGHT, labels)))(ws)

  want = step(jnp.asarray(WEIGHT))
  with jax.set_mesh(AUTO), pytest.warns(UserWarning, match="partitions the tokens only"):
    got = step(jax.device_put(WEIGHT, P(None, "model")))
  _assert_close(got, want)


def _loss_and_grads(hidden, weight, labels=LABELS, **kw):
  def loss(h, w):
    return xentax.fused_linear_cross_entropy(h, w, labels, ignore_index=-100, **kw)

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(hidden, weight)


def _assert_close(got, want):
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mesh", list(MESHES))
def test_jit_needs_no_context_mesh(mesh):
  """``NamedSharding`` inputs passed straight to ``jit``; on an Auto mesh, an eager call too
  (JAX's explicit mode needs ``jax.set_mesh`` for eager calls)."""
  hidden = jax.device_put(HIDDEN, NamedSharding(MESHES[mesh], P("data", None)))
  weight = jax.device_put(WEIGHT, NamedSharding(MESHES[mesh], P(None, "model")))
  want = _loss_and_grads(jnp.asarray(HIDDEN), jnp.asarray(WEIGHT))
  _assert_close(_loss_and_grads(hidden, weight), want)
  if mesh == "auto":
    eager = jax.value_and_grad(
      lambda h: xentax.fused_linear_cross_entropy(h, weight, LABELS, ignore_index=-100)
    )(hidden)
    _assert_close(eager, (want[0], want[1][0]))
  text = jax.jit(xentax.fused_linear_cross_entropy).lower(hidden, weight, LABELS).as_text()
  assert ("CustomSPMDPartitioning" in text) == (mesh == "auto")


def test_unsharded_programs_have_no_partitioned_op():
  text = jax.jit(xentax.fused_linear_cross_entropy).lower(HIDDEN, WEIGHT, LABELS).as_text()
  assert "CustomSPMDPartitioning" not in text
  with jax.set_mesh(MESH):  # an Explicit mesh with replicated inputs: nothing to partition
    text = jax.jit(xentax.fused_linear_cross_entropy).lower(HIDDEN, WEIGHT, LABELS).as_text()
  assert "CustomSPMDPartitioning" not in text


def test_auto_a_sharded_feature_axis_is_gathered_with_a_warning():
  want = _loss_and_grads(jnp.asarray(HIDDEN), jnp.asarray(WEIGHT))
  with jax.set_mesh(AUTO), pytest.warns(UserWarning, match=r"hidden over \['data'\]"):
    got = _loss_and_grads(
      jax.device_put(HIDDEN, P(None, "data")), jax.device_put(WEIGHT, P("data", None))
    )
  _assert_close(got, want)


def test_auto_tokens_that_do_not_divide_are_gathered_with_a_warning():
  keep = N - 2  # sliced inside jit, so the partitioner cuts 30 rows unevenly over 8 devices

  def loss(h, w):
    return xentax.fused_linear_cross_entropy(h[:keep], w, LABELS[:keep], ignore_index=-100)

  want = jax.value_and_grad(loss, argnums=(0, 1))(jnp.asarray(HIDDEN), jnp.asarray(WEIGHT))
  with jax.set_mesh(AUTO), pytest.warns(UserWarning, match=f"{keep} tokens do not divide"):
    hidden = jax.device_put(HIDDEN, P(("data", "model"), None))
    got = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(hidden, jnp.asarray(WEIGHT))
  _assert_close(got, want)


def test_auto_the_tokens_schedule_and_vmap_run_unpartitioned_with_a_warning():
  want = _loss_and_grads(jnp.asarray(HIDDEN), jnp.asarray(WEIGHT), schedule="tokens")
  with jax.set_mesh(AUTO):
    hidden, weight = jax.device_put(HIDDEN, P("data", None)), jax.device_put(WEIGHT, P())
    with pytest.warns(UserWarning, match='schedule="tokens" is not partitioned'):
      got = _loss_and_grads(hidden, weight, schedule="tokens")
    _assert_close(got, want)
    labels = jnp.stack([LABELS, LABELS[::-1]])

    def loss(y):
      return xentax.fused_linear_cross_entropy(hidden, weight, y, ignore_index=-100)

    # vmap outside jit or checkpoint reaches the op after it is traced.
    for batch in (jax.vmap(loss), jax.vmap(jax.checkpoint(loss))):
      with pytest.warns(UserWarning, match="a vmapped call is not partitioned"):
        batched = jax.jit(batch)(labels)
      for y, got in zip(labels, batched, strict=True):
        want = xentax.fused_linear_cross_entropy(HIDDEN, WEIGHT, y, ignore_index=-100)
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_no_warning_outside_a_mesh_or_inside_shard_map():
  import warnings

  with warnings.catch_warnings():
    warnings.simplefilter("error")
    xentax.fused_linear_cross_entropy(HIDDEN, WEIGHT, LABELS, ignore_index=-100)
    auto = jax.make_mesh((8,), ("data",), axis_types=(AxisType.Auto,))
    with jax.set_mesh(auto):  # eager, op by op: "auto" picks the "vocab" schedule here
      sharded = jax.shard_map(
        lambda h, y: jax.lax.psum(
          xentax.fused_linear_cross_entropy(h, WEIGHT, y, ignore_index=-100, reduction="sum"),
          "data",
        ),
        in_specs=(P("data"), P("data")),
        out_specs=P(),
      )
      value, grad = jax.value_and_grad(sharded)(HIDDEN, LABELS)

  def f(h):
    return xentax.fused_linear_cross_entropy(h, WEIGHT, LABELS, ignore_index=-100, reduction="sum")

  want, want_grad = jax.value_and_grad(f)(HIDDEN)
  np.testing.assert_allclose(value, want, rtol=1e-12)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-10, atol=1e-12)


def test_a_sample_weight_of_the_wrong_shape_is_named():
  with jax.set_mesh(MESH):
    hidden, weight = _placed("tokens-and-vocab")
    with pytest.raises(ValueError, match="sample_weight has shape"):
      xentax.fused_linear_cross_entropy(
        hidden, weight, LABELS, ignore_index=-100, sample_weight=np.ones(N + 1)
      )


def test_auto_one_axis_for_tokens_and_vocabulary_cuts_the_tokens_with_a_warning():
  want = _loss_and_grads(jnp.asarray(HIDDEN), jnp.asarray(WEIGHT))
  with jax.set_mesh(AUTO), pytest.warns(UserWarning, match="cut both the tokens"):
    got = _loss_and_grads(
      jax.device_put(HIDDEN, P("model", None)), jax.device_put(WEIGHT, P(None, "model"))
    )
  _assert_close(got, want)


@pytest.mark.parametrize("spec", [P(None, "data", None), P("data", "model", None)])
def test_auto_a_sharded_sequence_axis_is_kept(spec):
  """``hidden [B, T, D]`` with the sequence sharded: each device runs its own tokens (a
  flattening to ``[B T, D]`` first would gather them)."""
  hidden, labels = HIDDEN.reshape(4, 8, D), LABELS.reshape(4, 8)

  def loss(h, w):
    return xentax.fused_linear_cross_entropy(h, w, labels, ignore_index=-100)

  step = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
  want = step(jnp.asarray(hidden), jnp.asarray(WEIGHT))
  with jax.set_mesh(AUTO):
    placed = jax.device_put(hidden, spec), jnp.asarray(WEIGHT)
    _assert_close(step(*placed), want)
    text = step.lower(*placed).compile().as_text()
  assert not re.search(r" all-gather(-start)?\(", text)
