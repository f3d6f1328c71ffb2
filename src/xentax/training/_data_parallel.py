"""Data-parallel training: a 1-D ``("data",)`` mesh, replicated state, batches split by example.

Design notes:
  The training step stays one program whether it runs on one device or on N. Parameters
  and optimizer state are replicated (``NamedSharding(mesh, P())``), each batch is split
  along its example axis (``P("data")``; ``P(None, "data")`` for the loop's stacked
  ``[steps, batch, ...]`` chunks), and ``jax.jit`` hands the step to XLA's GSPMD
  partitioner, which splits the forward and backward passes by example and inserts the
  all-reduce of the gradients itself (the loss is a mean over the sharded axis). The mesh
  axis is ``AxisType.Auto``, so neither the model nor the loss has to know about the mesh.

  The result equals the single-device run up to the order of float additions: each device
  sums its share of the batch and the shares are then added.
"""

from __future__ import annotations

import jax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def data_mesh(num_devices: int, platform: str | None = None) -> Mesh:
  """A 1-D mesh with axis ``"data"`` over the first ``num_devices`` devices.

  Args:
    num_devices: devices to split each batch over (>= 1).
    platform: ``"cpu"``, ``"gpu"`` or None (JAX's default backend).

  Returns:
    A ``jax.sharding.Mesh`` with one ``Auto`` axis named ``"data"``.

  Raises:
    ValueError: ``num_devices < 1``, or fewer devices than that on ``platform``.
  """
  if num_devices < 1:
    raise ValueError(f"devices must be >= 1; got {num_devices}")
  devices = jax.devices(platform) if platform else jax.devices()
  if len(devices) < num_devices:
    kind = devices[0].platform if devices else (platform or "default")
    raise ValueError(
      f"devices={num_devices} needs {num_devices} {kind} devices, but this process has"
      f" {len(devices)}. Use --devices {len(devices)} or fewer. On CPU, JAX can split the"
      f" host into virtual devices, but only before its backend starts:"
      f" jax.config.update('jax_num_cpu_devices', {num_devices}) at the top of the program,"
      f" or XLA_FLAGS=--xla_force_host_platform_device_count={num_devices} in the"
      f" environment (`xentax train --devices {num_devices}` does this for you)."
    )
  return jax.make_mesh(
    (num_devices,), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices[:num_devices]
  )


def replicated(mesh: Mesh) -> NamedSharding:
  """The sharding of parameters and optimizer state: a full copy on every device."""
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, *, stacked: bool = False) -> NamedSharding:
  """The sharding of a batch: split along its example axis over ``"data"``.

  Args:
    mesh: a mesh with a ``"data"`` axis (see :func:`data_mesh`).
    stacked: the arrays are ``[steps, batch, ...]`` (the loop's chunks), so the example
      axis is axis 1; otherwise it is the leading axis.
  """
  return NamedSharding(mesh, P(None, DATA_AXIS) if stacked else P(DATA_AXIS))
