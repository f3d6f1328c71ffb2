"""The ``parallel`` suite: vocabulary-parallel cross-entropy on N devices vs dense on one."""

from __future__ import annotations

import functools
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
