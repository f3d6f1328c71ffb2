"""One of two processes for test_multi_process.py: the vocabulary-parallel loss in shard_map and
the fused loss under jit on NamedSharding inputs, on 4 devices.

Run as ``python _two_process_worker.py PORT PROCESS_ID OUT_JSON``. Each process owns two CPU
devices; the mesh spans both processes; inputs are built from the same seed everywhere.
"""

import json
import sys

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

port, process_id, out_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_num_cpu_devices", 2)
jax.config.update("jax_cpu_collectives_implementation", "gloo")
jax.distributed.initialize(
  coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id
)

import xentax  # noqa: E402  (after initialize, as JAX requires)

rng = np.random.default_rng(0)
logits = rng.normal(size=(6, 16)) * 2
labels = rng.integers(0, 16, 6)
labels[1] = -100

mesh = jax.make_mesh((4,), ("vocab",))
logits_global = jax.make_array_from_callback(
  logits.shape, NamedSharding(mesh, P(None, "vocab")), lambda index: logits[index]
)
labels_global = jax.make_array_from_callback(
  labels.shape, NamedSharding(mesh, P()), lambda index: labels[index]
)


def loss(z, y):
  return xentax.parallel.vocab_parallel_cross_entropy(
    z, y, axis_name="vocab", ignore_index=-100, label_smoothing=0.1
  )


sharded = jax.shard_map(loss, mesh=mesh, in_specs=(P(None, "vocab"), P()), out_specs=P())
value, grad = jax.jit(jax.value_and_grad(sharded))(logits_global, labels_global)
grad = multihost_utils.process_allgather(grad, tiled=True)

# The fused loss under jit on an Explicit and on an Auto mesh spanning both processes: the
# tokens over "data", the weight over "model"; no shard_map here.
hidden = rng.normal(size=(8, 4))
weight = rng.normal(size=(4, 16)) / 2
fused_labels = rng.integers(0, 16, 8)
fused = {}
for kind in ("Explicit", "Auto"):
  two_by_two = jax.make_mesh(
    (2, 2), ("data", "model"), axis_types=(getattr(jax.sharding.AxisType, kind),) * 2
  )

  def placed(x, spec, mesh=two_by_two):
    return jax.make_array_from_callback(x.shape, NamedSharding(mesh, spec), lambda i: x[i])

  with jax.set_mesh(two_by_two):
    step = jax.jit(
      jax.value_and_grad(
        lambda h, w, y: xentax.fused_linear_cross_entropy(h, w, y, z_loss=1e-2), argnums=(0, 1)
      )
    )
    fused_value, grads = step(
      placed(hidden, P("data", None)),
      placed(weight, P(None, "model")),
      placed(fused_labels, P("data")),
    )
  d_hidden, d_weight = (multihost_utils.process_allgather(g, tiled=True) for g in grads)
  fused[kind] = {
    "loss": float(fused_value),
    "d_hidden": np.asarray(d_hidden).tolist(),
    "d_weight": np.asarray(d_weight).tolist(),
  }
with open(out_path, "w") as f:
  json.dump(
    {
      "process_count": jax.process_count(),
      "devices": jax.device_count(),
      "loss": float(value),
      "grad": np.asarray(grad).tolist(),
      "fused": fused,
    },
    f,
  )
jax.distributed.shutdown()
