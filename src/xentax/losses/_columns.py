"""Column blocks of a ``[D, V]`` weight, sliced and updated in the weight's own dtype."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

# XLA:CPU upcasts a 16-bit dynamic-slice's whole operand to float32 and hoists that copy
# out of the loop; slicing the same bits as unsigned integers keeps the weight's dtype.
_BITS = {2: jnp.uint16}


def slice_columns(x, start, size: int):
  """``x[:, start:start + size]`` for a dynamic ``start``, never upcasting ``x``."""
  bits = _BITS.get(x.dtype.itemsize) if jnp.issubdtype(x.dtype, jnp.floating) else None
  if bits is None:
    return lax.dynamic_slice_in_dim(x, start, size, axis=1)
  # Tied to `start` by the barrier, the bitcast stays in the loop, fused into the slice.
  x, start = lax.optimization_barrier((x, start))
  block = lax.dynamic_slice_in_dim(lax.bitcast_convert_type(x, bits), start, size, axis=1)
  return lax.bitcast_convert_type(block, x.dtype)


def update_columns(x, block, start):
  """``x`` with ``x[:, start:start + block.shape[1]] = block``, never upcasting ``x``."""
  block = block.astype(x.dtype)
  bits = _BITS.get(x.dtype.itemsize) if jnp.issubdtype(x.dtype, jnp.floating) else None
  if bits is None:
    return lax.dynamic_update_slice_in_dim(x, block, start, axis=1)
  updated = lax.dynamic_update_slice_in_dim(
    lax.bitcast_convert_type(x, bits), lax.bitcast_convert_type(block, bits), start, axis=1
  )
  return lax.bitcast_convert_type(updated, x.dtype)
