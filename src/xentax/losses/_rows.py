"""Row machinery of the losses from logits: log-sum-exp, rows reduced in pieces, masks.

Design rules:
  * XLA:CPU reduces a very long row to a per-row result several times slower per element:
    rows longer than :data:`CPU_ROW_PIECE` are reduced in pieces, joined past a barrier.
  * Under differentiation, small logits keep their exponentials for the backward pass
    (:func:`keeps_exp`): while the working set stays in cache, ``exp`` is the cost.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import _common


def logsumexp(x, axis: int = -1) -> jax.Array:
  """log(sum(exp(x))) along ``axis``; ``-inf`` (with zero gradient) for an all ``-inf`` row."""
  return lse_keeping_exp(jnp.moveaxis(x, axis, -1))[0]


CPU_ROW_PIECE = 32768


def row_pieces(num_classes: int) -> int:
  """How many equal pieces, each at most :data:`CPU_ROW_PIECE` long, to reduce a row of
  ``num_classes`` in on the CPU backend (1: in one go)."""
  if num_classes <= CPU_ROW_PIECE or jax.default_backend() != "cpu":
    return 1
  for pieces in range(2, 257):
    if num_classes % pieces == 0 and num_classes // pieces <= CPU_ROW_PIECE:
      return pieces
  return 1


def split_rows(x, pieces: int):
  """``[..., C] -> [..., P, C / P]`` (a free reshape), or ``x`` itself when ``P = 1``."""
  if pieces == 1 or x is None:
    return x
  return x.reshape(*x.shape[:-1], pieces, x.shape[-1] // pieces)


def row_axes(pieces: int):
  """The index that broadcasts a ``[...]`` row statistic against rows or their pieces."""
  return (..., None) if pieces == 1 else (..., None, None)


def first_term(rows, pieces: int):
  """Ones at each row's first entry, zeros elsewhere, shaped like the trailing axes of
  ``rows`` (``[C]``, or ``[P, C / P]`` for pieces): adds a per-row term inside a fused row
  sum without a select."""
  shape = rows.shape[-1:] if pieces == 1 else rows.shape[-2:]
  return jnp.zeros(shape, rows.dtype).at[(0,) * len(shape)].set(1)


def row_reduce(values, pieces: int, reduce=jnp.sum):
  """Row sums (or another ``reduce``) of ``values``: ``[..., C]``, or the ``[..., P, C / P]``
  pieces of :func:`split_rows`, joined past a barrier so XLA cannot merge them back."""
  if pieces == 1:
    return reduce(values, axis=-1)
  return reduce(lax.optimization_barrier(reduce(values, axis=-1)), axis=-1)


def row_max(z, pieces: int) -> jax.Array:
  """``[...]``: each row's max, for rows ``z`` (or their pieces, :func:`split_rows`)."""
  return lax.stop_gradient(row_reduce(z, pieces, jnp.max))


def fast_lse(z, m, pieces: int) -> jax.Array:
  """``m + log(sum(exp(z - m)))`` per row of ``z`` (or of its pieces), ``m`` the row max;
  guard-free, not finite only for a NaN or infinite max."""
  return m + jnp.log(row_reduce(jnp.exp(z - m[row_axes(pieces)]), pieces))


# The most logit entries whose exponentials are kept for the backward pass (module notes);
# the dense loss holds more [..., C] arrays in cache, hence its lower limit.
SPARSE_KEEP_EXP_MAX_ENTRIES = 2**22


DENSE_KEEP_EXP_MAX_ENTRIES = 2**21


def keeps_exp(x, t_x, max_entries: int) -> bool:
  """Whether a jvp rule keeps the exponentials of logits ``x``: a logit tangent, logits in
  their compute dtype (no float32 residual for bf16) and at most ``max_entries`` entries."""
  return (
    not _common.is_symbolic_zero(t_x)
    and x.dtype == _common.compute_dtype(x)
    and x.size <= max_entries
  )


def finite_shift(row_max):
  """A log-sum-exp's shift: the row max, or 0 where it is infinite, so that a ``+inf``
  entry gives ``lse = +inf`` and a row of ``-inf`` gives ``-inf``, never ``inf - inf``."""
  return jnp.where(jnp.isfinite(row_max), row_max, jnp.zeros_like(row_max))


def lse_keeping_exp(x):
  """``(lse, exp(x - m), sum exp(x - m))`` per row of ``x [..., C]``, ``m`` the row max
  (zero where not finite): the log-sum-exp of :func:`logsumexp`, with its exponentials."""
  # stop_gradient: the result does not depend on m; its gradient would only cancel.
  m = finite_shift(lax.stop_gradient(jnp.max(x, axis=-1)))
  exp_shifted = jnp.exp(x - m[..., None])
  exp_sum = jnp.sum(exp_shifted, axis=-1)
  # Guard log(0) for all -inf rows; `s == 0`, not `s > 0`, so that a NaN row stays NaN.
  empty = exp_sum == 0
  lse = jnp.log(jnp.where(empty, jnp.ones_like(exp_sum), exp_sum)) + m
  lse = jnp.where(empty, jnp.full_like(lse, -jnp.inf), lse)
  return lse, exp_shifted, exp_sum


def mask_rows(values, valid):
  """Zero the dropped rows of ``[...]`` values or ``[..., C]`` rows (``valid`` None: all kept)."""
  if valid is None:
    return values
  valid = valid if values.ndim == valid.ndim else valid[..., None]
  return jnp.where(valid, values, jnp.zeros_like(values))
