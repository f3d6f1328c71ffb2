"""The ``parallel`` suite: vocabulary-parallel cross-entropy on N devices vs dense on one."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import xentax
from xentax.bench import _measure


def run(batch: int, classes: int, *, repeats: int = 5) -> list[dict]:
  """Value-and-grad of the sparse loss: dense on one device, vocab-parallel on all."""
  devices = jax.devices()
  mesh = jax.make_mesh((len(devices),), ("vocab",), axis_types=(AxisType.Explicit,))
  key_x, key_y = jax.random.split(jax.random.key(0))
  logits = jax.random.normal(key_x, (batch, classes), jnp.float32)
  labels = jax.random.randint(key_y, (batch,), 0, classes)

  def dense(x, y):
    return xentax.sparse_categorical_cross_entropy_with_logits(x, y)

  sharded = jax.shard_map(
    functools.partial(xentax.parallel.vocab_parallel_cross_entropy, axis_name="vocab"),
    mesh=mesh,
    in_specs=(P(None, "vocab"), P()),
    out_specs=P(),
  )
  dense_name, parallel_name = "dense, 1 device", f"vocab-parallel, {len(devices)} device(s)"
  fns: dict[str, Callable] = {dense_name: dense, parallel_name: sharded}
  placements = {
    dense_name: (devices[0], devices[0]),
    parallel_name: (NamedSharding(mesh, P(None, "vocab")), NamedSharding(mesh, P())),
  }
  placed = {
    name: [
      (jax.device_put(x, x_place), jax.device_put(labels, y_place)) for x in (logits, logits + 1)
    ]
    for name, (x_place, y_place) in placements.items()
  }
  records = []
  device = _measure.device_info()
  compiled, compile_s, memory = {}, {}, {}
  for name, fn in fns.items():
    compiled[name], compile_s[name] = _measure.compile_ahead(
      jax.value_and_grad(fn), *placed[name][0]
    )
    memory[name] = _measure.memory_bytes(compiled[name])
  timings = _measure.time_side_by_side(compiled, placed, repeats=repeats, compile_seconds=compile_s)  # type: ignore[arg-type]  # a list is the Sequence asked for
  baseline = timings[dense_name].median_s
  for name, timing in timings.items():
    records.append(
      {
        "suite": "parallel",
        "implementation": name,
        "batch": batch,
        "classes": classes,
        "dtype": "float32",
        "devices": len(devices) if "parallel" in name else 1,
        "compile_s": timing.compile_s,
        "median_s": timing.median_s,
        "spread": timing.spread,
        "repeats": timing.repeats,
        "ratio": timing.median_s / baseline,
        "gbps": logits.nbytes / timing.median_s / 1e9,
        **memory[name],
        **device,
      }
    )
  return records


# name -> (the ("data", "model") mesh shape on n devices, hidden spec, weight spec)
LAYOUTS = {
  "tokens": (lambda n: (n, 1), P("data", None), P()),
  "vocab": (lambda n: (1, n), P(), P(None, "model")),
  "tokens-and-vocab": (lambda n: (max(1, n // 2), min(n, 2)), P("data", None), P(None, "model")),
}


def fused_layouts(
  tokens: int, dim: int, vocab: int, *, device_counts=(1, 2, 4, 8), axis_types=("Explicit", "Auto")
) -> list[dict]:
  """``fused_linear_cross_entropy``'s value-and-grad on ``NamedSharding`` inputs of an Explicit
  and of an Auto mesh, compiled only: per-device temporaries and the bytes its collectives move.

  Weak scaling: each device holds ``tokens`` tokens and ``vocab`` columns of the layout's
  sharded axes, so a flat per-device temporary is the goal.
  """
  records = []
  device = _measure.device_info()
  for count in device_counts:
    if count > jax.device_count():
      continue
    for (layout, (shape_of, hidden_spec, weight_spec)), axis_type in itertools.product(
      LAYOUTS.items(), axis_types
    ):
      shape = shape_of(count)
      mesh = jax.make_mesh(
        shape,
        ("data", "model"),
        axis_types=(getattr(AxisType, axis_type),) * 2,
        devices=jax.devices()[:count],
      )
      num_tokens, vocab_size = tokens * shape[0], vocab * shape[1]

      def placed(shape, dtype, spec, mesh=mesh):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(mesh, spec))

      hidden = placed((num_tokens, dim), jnp.float32, hidden_spec)
      weight = placed((dim, vocab_size), jnp.float32, weight_spec)
      labels = placed((num_tokens,), jnp.int32, P(*hidden_spec[:1]))
      step = jax.value_and_grad(xentax.fused_linear_cross_entropy, argnums=(0, 1))
      compiled = jax.jit(step).lower(hidden, weight, labels).compile()
      moved = _measure.collective_bytes(compiled)
      records.append(
        {
          "suite": "parallel",
          "implementation": f"fused, {layout}, {axis_type}",
          "layout": layout,
          "axis_types": axis_type,
          "mesh": list(shape),
          "devices": count,
          "num_tokens": num_tokens,
          "dim": dim,
          "vocab_size": vocab_size,
          "dtype": "float32",
          "collectives": {kind: list(v) for kind, v in moved.items() if v[0]},
          **_measure.memory_bytes(compiled),
          **device,
        }
      )
  return records
