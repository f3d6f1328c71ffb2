"""Masking and reduction for the closed-form gradients, shared by every loss's formula.

Design notes:
  A loss ``L = R(l_1, ..., l_N)`` reduces per-example losses ``l_n`` that each depend on
  their own scores only. Its gradient is therefore the per-example gradient ``g_n = d l_n /
  d s_n`` scaled by ``d R / d l_n``: ``1`` for ``"sum"``, ``1 / D`` for ``"mean"`` (``D``
  the kept count, or ``sum w[y_n]`` over kept examples for the weighted sparse losses; it
  does not depend on the scores), and ``0`` for dropped examples. For ``"none"`` the
  Jacobian is block diagonal with blocks ``g_n``, so the closed form returns those rows:
  the gradient of ``sum(l_n)``, what ``jax.grad(lambda s: loss(s, reduction="none").sum())``
  returns. Written independently of :mod:`xentax.losses` so it can check it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

REDUCTIONS = ("none", "sum", "mean")


def check_reduction(fn_name: str, reduction: str) -> None:
  if reduction not in REDUCTIONS:
    raise ValueError(
      f"{fn_name}: reduction={reduction!r} is not supported; choose one of {REDUCTIONS}."
    )


def float_dtype(x) -> jnp.dtype:
  """float64 stays float64; every other input is differentiated in float32, as the losses do."""
  return jnp.dtype(jnp.float64) if jnp.result_type(x) == jnp.float64 else jnp.dtype(jnp.float32)


def kept_mask(where, shape) -> jax.Array:
  return jnp.ones(shape, bool) if where is None else jnp.broadcast_to(jnp.asarray(where), shape)


def reduce_grad(g, kept, reduction: str, denominator=None) -> jax.Array:
  """Scale per-example gradients ``g`` (``kept.shape`` plus trailing axes) by ``dR / dl_n``.

  Args:
    g: per-example gradients; ``g.shape[:kept.ndim] == kept.shape``.
    kept: boolean mask of the examples that enter the loss.
    reduction: ``"none"``, ``"sum"`` or ``"mean"``.
    denominator: per-example contribution to the mean's denominator (``None``: 1 each).
  """
  extra = (None,) * (g.ndim - kept.ndim)
  g = jnp.where(kept[(...,) + extra], g, jnp.zeros_like(g))
  if reduction in ("none", "sum"):
    return g
  weights = jnp.ones(kept.shape, g.dtype) if denominator is None else denominator
  total = jnp.sum(jnp.where(kept, weights, jnp.zeros_like(weights)))
  return jnp.where(total != 0, g / jnp.where(total != 0, total, 1), jnp.zeros_like(g))
