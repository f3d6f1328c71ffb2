"""Vocabulary-parallel losses on 8 CPU devices, against the single-device dense loss."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import xentax

rng = np.random.default_rng(0)
N, V, D = 12, 48, 6
LOGITS = rng.normal(size=(N, V)) * 3
LABELS = rng.integers(0, V, N)
LABELS[[2, 5]] = -100
HIDDEN = rng.normal(size=(N, D))
WEIGHT = rng.normal(size=(D, V)) / 2
BIAS = rng.normal(size=V)

OPTIONS = {
  "plain": {"ignore_index": -100},
  "all": {
    "ignore_index": -100,
    "class_weights": rng.uniform(0.5, 2.0, V),
    "label_smoothing": 0.15,
    "z_loss": 1e-2,
    "where": np.arange(N) % 5 != 0,
  },
}


def _mesh(shape, axes):
  # Auto axes: shard_map reshards plain inputs itself. With jax.make_mesh's default
  # (Explicit) axes, inputs must already carry the in_specs' sharding.
  return jax.make_mesh(shape, axes, axis_types=(jax.sharding.AxisType.Auto,) * len(axes))


def _dense(logits, labels, **options):
  return xentax.sparse_categorical_cross_entropy_with_logits(logits, labels, **options)


def _vocab_parallel_loss(mesh, options, batch_axis=None):
  def loss(logits, labels, where, class_weights):
    return xentax.parallel.vocab_parallel_cross_entropy(
      logits,
      labels,
      axis_name="vocab",
      batch_axis_name=batch_axis,
      where=where,
      class_weights=class_weights,
      **options,
    )

  return jax.shard_map(
    loss,
    mesh=mesh,
    in_specs=(P(batch_axis, "vocab"), P(batch_axis), P(batch_axis), P()),
    out_specs=P(),
  )


def _split(options):
  options = dict(options)
  where = options.pop("where", np.ones(N, bool))
  class_weights = options.pop("class_weights", np.ones(V))
  return options, where, class_weights


@pytest.mark.parametrize("mesh_shape", [(8,), (2, 4)])
@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_vocab_parallel_matches_dense(name, mesh_shape, reduction):
  axes = ("vocab",) if len(mesh_shape) == 1 else ("data", "vocab")
  mesh = _mesh(mesh_shape, axes)
  options, where, class_weights = _split(OPTIONS[name])
  options["reduction"] = reduction
  batch_axis = "data" if "data" in axes else None
  sharded = _vocab_parallel_loss(mesh, options, batch_axis)
  value, grad = jax.jit(jax.value_and_grad(sharded))(LOGITS, LABELS, where, class_weights)
  dense = functools.partial(_dense, labels=LABELS, where=where, class_weights=class_weights)
  want_value, want_grad = jax.value_and_grad(lambda z: dense(z, **options))(LOGITS)
  np.testing.assert_allclose(value, want_value, rtol=1e-12)
  np.testing.assert_allclose(grad, want_grad, rtol=1e-11, atol=1e-14)


def test_at_most_two_all_reduces_in_forward_and_backward():
  mesh = _mesh((8,), ("vocab",))
  options, where, class_weights = _split(OPTIONS["all"])
  sharded = _vocab_parallel_loss(mesh, options)
  hlo = (
    jax.jit(jax.value_and_grad(sharded))
    .lower(LOGITS, LABELS, where, class_weights)
    .compile()
    .as_text()
  )
  all_reduces = hlo.count("all-reduce(") + hlo.count("all-reduce-start(")
  assert 1 <= all_reduces <= 2, all_reduces
  assert "all-gather" not in hlo


def test_vocab_parallel_fused_matches_dense_on_a_data_by_vocab_mesh():
  mesh = _mesh((2, 4), ("data", "vocab"))
  options = dict(OPTIONS["all"])
  where = options.pop("where")
  class_weights = options.pop("class_weights")

  def loss(hidden, weight, bias, labels, where, class_weights):
    return xentax.parallel.vocab_parallel_fused_linear_cross_entropy(
      hidden,
      weight,
      labels,
      axis_name="vocab",
      batch_axis_name="data",
      bias_shard=bias,
      block_size=5,
      where=where,
      class_weights=class_weights,
      **options,
    )

  sharded = jax.shard_map(
    loss,
    mesh=mesh,
    in_specs=(P("data"), P(None, "vocab"), P("vocab"), P("data"), P("data"), P()),
    out_specs=P(),
  )
  args = (HIDDEN, WEIGHT, BIAS, LABELS, where, class_weights)
  value, grads = jax.jit(jax.value_and_grad(sharded, argnums=(0, 1, 2)))(*args)

  def dense(hidden, weight, bias):
    return _dense(
      hidden @ weight + bias, LABELS, where=where, class_weights=class_weights, **options
    )

  want_value, want_grads = jax.value_and_grad(dense, argnums=(0, 1, 2))(HIDDEN, WEIGHT, BIAS)
  np.testing.assert_allclose(value, want_value, rtol=1e-12)
  for g, w in zip(grads, want_grads, strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-14)


def test_explicit_mesh_with_inputs_placed_by_named_sharding():
  mesh = jax.make_mesh((8,), ("vocab",))  # Explicit axes: every input must be placed
  options, where, class_weights = _split(OPTIONS["plain"])
  logits = jax.device_put(LOGITS, NamedSharding(mesh, P(None, "vocab")))
  labels, where, class_weights = (
    jax.device_put(x, NamedSharding(mesh, P())) for x in (LABELS, where, class_weights)
  )
  assert logits.addressable_shards[0].data.shape == (N, V // 8)
  grad = jax.jit(jax.grad(_vocab_parallel_loss(mesh, options)))(
    logits, labels, where, class_weights
  )
  assert grad.sharding.spec == P(None, "vocab")
  want = jax.grad(lambda z: _dense(z, LABELS, **options))(LOGITS)
  np.testing.assert_allclose(grad, want, rtol=1e-11, atol=1e-14)


def test_labels_shape_mismatch_is_a_clear_error():
  mesh = _mesh((8,), ("vocab",))
  f = jax.shard_map(
    functools.partial(xentax.parallel.vocab_parallel_cross_entropy, axis_name="vocab"),
    mesh=mesh,
    in_specs=(P(None, "vocab"), P()),
    out_specs=P(),
  )
  with pytest.raises(ValueError, match="labels have shape"):
    f(jnp.zeros((4, 16)), jnp.zeros((3,), jnp.int32))


@pytest.mark.parametrize("mesh_shape", [(8,), (2, 4)])
def test_vocab_parallel_option_gradients_match_dense(mesh_shape):
  # Learned class weights and meta-learned smoothing / z-loss weight: the custom_vjp
  # must return their exact gradients, not zeros.
  axes = ("vocab",) if len(mesh_shape) == 1 else ("data", "vocab")
  batch_axis = "data" if "data" in axes else None
  mesh = _mesh(mesh_shape, axes)
  options = dict(OPTIONS["all"])
  where, class_weights = options.pop("where"), options.pop("class_weights")
  del options["label_smoothing"], options["z_loss"]

  def loss(logits, labels, where, class_weights, eps, z):
    return xentax.parallel.vocab_parallel_cross_entropy(
      logits,
      labels,
      axis_name="vocab",
      batch_axis_name=batch_axis,
      where=where,
      class_weights=class_weights,
      label_smoothing=eps,
      z_loss=z,
      **options,
    )

  sharded = jax.shard_map(
    loss,
    mesh=mesh,
    in_specs=(P(batch_axis, "vocab"), P(batch_axis), P(batch_axis), P(), P(), P()),
    out_specs=P(),
  )
  args = (LOGITS, LABELS, where, class_weights, 0.15, 0.01)
  grads = jax.jit(jax.grad(sharded, argnums=(3, 4, 5)))(*args)

  def dense(class_weights, eps, z):
    return _dense(
      LOGITS,
      LABELS,
      where=where,
      class_weights=class_weights,
      label_smoothing=eps,
      z_loss=z,
      **options,
    )

  want = jax.grad(dense, argnums=(0, 1, 2))(class_weights, 0.15, 0.01)
  for g, w in zip(grads, want, strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-13)


def test_vocab_parallel_fused_option_gradients_match_dense():
  mesh = _mesh((2, 4), ("data", "vocab"))
  options = dict(OPTIONS["all"])
  where, class_weights = options.pop("where"), options.pop("class_weights")
  del options["label_smoothing"], options["z_loss"]

  def loss(hidden, weight, labels, where, class_weights, eps, z, cap):
    return xentax.parallel.vocab_parallel_fused_linear_cross_entropy(
      hidden,
      weight,
      labels,
      axis_name="vocab",
      batch_axis_name="data",
      block_size=4,
      where=where,
      class_weights=class_weights,
      label_smoothing=eps,
      z_loss=z,
      softcap=cap,
      **options,
    )

  sharded = jax.shard_map(
    loss,
    mesh=mesh,
    in_specs=(P("data"), P(None, "vocab"), P("data"), P("data"), P(), P(), P(), P()),
    out_specs=P(),
  )
  args = (HIDDEN, WEIGHT, LABELS, where, class_weights, 0.15, 0.01, 2.5)
  grads = jax.jit(jax.grad(sharded, argnums=(4, 5, 6, 7)))(*args)

  def dense(class_weights, eps, z, cap):
    logits = cap * jnp.tanh(HIDDEN @ WEIGHT / cap)
    return _dense(
      logits,
      LABELS,
      where=where,
      class_weights=class_weights,
      label_smoothing=eps,
      z_loss=z,
      **options,
    )

  want = jax.grad(dense, argnums=(0, 1, 2, 3))(class_weights, 0.15, 0.01, 2.5)
  for g, w in zip(grads, want, strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-13)


def test_mesh_without_the_named_axis_is_a_clear_error():
  mesh = _mesh((8,), ("vocab",))
  for kwargs in ({"axis_name": "vocab", "batch_axis_name": "data"}, {"axis_name": "model"}):
    f = jax.shard_map(
      functools.partial(xentax.parallel.vocab_parallel_cross_entropy, **kwargs),
      mesh=mesh,
      in_specs=(P(None, "vocab"), P()),
      out_specs=P(),
    )
    name = "batch_axis_name" if "batch_axis_name" in kwargs else "axis_name"
    with pytest.raises(ValueError, match=f"{name}=.* is not a mesh axis"):
      f(jnp.zeros((4, 16)), jnp.zeros((4,), jnp.int32))
    g = jax.shard_map(
      lambda h, w, y, kwargs=kwargs: xentax.parallel.vocab_parallel_fused_linear_cross_entropy(
        h, w, y, **kwargs
      ),
      mesh=mesh,
      in_specs=(P(), P(None, "vocab"), P()),
      out_specs=P(),
    )
    with pytest.raises(ValueError, match=f"{name}=.* is not a mesh axis"):
      g(jnp.zeros((4, 3)), jnp.zeros((3, 16)), jnp.zeros((4,), jnp.int32))


# --- sample_weight, sharded with the examples (issue 12 item 2) ------------------------------

SAMPLE_WEIGHT = rng.uniform(0.25, 2.0, N)


def _weighted_parallel_loss(mesh, batch_axis, reduction, fused):
  options = dict(OPTIONS["all"])
  where, class_weights = options.pop("where"), options.pop("class_weights")

  def loss(x, labels, where, class_weights, s):
    common = dict(
      axis_name="vocab",
      batch_axis_name=batch_axis,
      where=where,
      class_weights=class_weights,
      sample_weight=s,
      reduction=reduction,
      **options,
    )
    if fused:
      hidden, weight = x
      return xentax.parallel.vocab_parallel_fused_linear_cross_entropy(
        hidden, weight, labels, block_size=5, softcap=4.0, **common
      )
    return xentax.parallel.vocab_parallel_cross_entropy(x, labels, **common)

  x_spec = (P(batch_axis), P(None, "vocab")) if fused else P(batch_axis, "vocab")
  sharded = jax.shard_map(
    loss,
    mesh=mesh,
    in_specs=(x_spec, P(batch_axis), P(batch_axis), P(), P(batch_axis)),
    out_specs=P(),
  )

  def dense(x, s):
    logits = x[0] @ x[1] if fused else x
    if fused:
      logits = 4.0 * jnp.tanh(logits / 4.0)
    return _dense(
      logits,
      LABELS,
      where=where,
      class_weights=class_weights,
      sample_weight=s,
      reduction=reduction,
      **options,
    )

  return (lambda x, s: sharded(x, LABELS, where, class_weights, s)), dense


@pytest.mark.parametrize("fused", [False, True], ids=["logits", "fused"])
@pytest.mark.parametrize("mesh_shape", [(8,), (2, 4)])
@pytest.mark.parametrize("reduction", ["sum", "mean", "sum_over_batch_size"])
def test_vocab_parallel_sample_weight_matches_dense(reduction, mesh_shape, fused):
  axes = ("vocab",) if len(mesh_shape) == 1 else ("data", "vocab")
  batch_axis = "data" if "data" in axes else None
  sharded, dense = _weighted_parallel_loss(_mesh(mesh_shape, axes), batch_axis, reduction, fused)
  x = (HIDDEN, WEIGHT) if fused else LOGITS
  value, grads = jax.jit(jax.value_and_grad(sharded, argnums=(0, 1)))(x, SAMPLE_WEIGHT)
  want_value, want_grads = jax.value_and_grad(dense, argnums=(0, 1))(x, SAMPLE_WEIGHT)
  np.testing.assert_allclose(value, want_value, rtol=1e-12)
  for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-14)


def test_vocab_parallel_sample_weight_gradient_matches_finite_differences():
  sharded, _ = _weighted_parallel_loss(_mesh((2, 4), ("data", "vocab")), "data", "mean", False)
  f = jax.jit(sharded)
  got = jax.jit(jax.grad(sharded, argnums=1))(LOGITS, SAMPLE_WEIGHT)
  step = 1e-6
  numeric = [
    (f(LOGITS, SAMPLE_WEIGHT + step * e) - f(LOGITS, SAMPLE_WEIGHT - step * e)) / (2 * step)
    for e in np.eye(N)
  ]
  np.testing.assert_allclose(got, numeric, rtol=1e-7, atol=1e-9)


def test_vocab_parallel_bad_sample_weight():
  sharded, _ = _weighted_parallel_loss(_mesh((2, 4), ("data", "vocab")), "data", "mean", False)
  bad = SAMPLE_WEIGHT.copy()
  bad[3] = -1.0
  sharded = jax.jit(sharded)
  assert np.isnan(sharded(LOGITS, bad))  # traced inside shard_map: NaN, not a wrong number
  with pytest.raises(ValueError, match=r"sample_weight has shape"):
    sharded(LOGITS, SAMPLE_WEIGHT[:4])
