r"""Derivative rule of the Pallas fused linear cross-entropy kernels (:mod:`._pallas_fused`).

:func:`row_stats` returns, per row of ``z = h W + b`` (soft-capped or not), ``lse``, ``z_y``
and ``W_n = sum_c w_c z_c`` without the logits in memory. Reverse mode runs the backward
kernel with the statistics' cotangents as the coefficients of
``G = g_lse p + g_y [c = y] + g_W w_c``: ``d h = G W^T``, ``d W = h^T G``, ``d b = sum_n G``.
The class weights' gradient through ``W_n`` and the softcap's, when differentiated, are
computed from the full logits by XLA (the one case that holds them).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from xentax.losses import _common, _rows, _softcap
from xentax.losses import _pallas_fused as pf
from xentax.losses._pallas_sparse_grad import coefficients, flag, perturbed, primal


class Spec(NamedTuple):
  """Static: what the kernels read (:class:`._pallas_sparse.Options`) and their tiling."""

  options: object
  config: tuple = ()


def _capped(z, cap):
  return z if cap is None else _softcap.softcap(z, cap)


def _target(h, weight, bias, labels, cap):
  """``z_y`` per row in float32: the labels' columns of ``W`` gathered, ``[D, N]``."""
  columns = jnp.take(weight, labels, axis=1).astype(jnp.float32)
  target = jnp.sum(h.astype(jnp.float32) * columns.T, axis=1)
  if bias is not None:
    target = target + bias[labels].astype(jnp.float32)
  return _capped(target, cap)


def _xla_stats(h, weight, bias, labels, weights, cap):
  """The statistics from full logits, for the options' gradients only."""
  z = jnp.dot(h.astype(jnp.float32), weight.astype(jnp.float32))
  z = _capped(z if bias is None else z + bias.astype(jnp.float32), cap)
  lse = _rows.logsumexp(z)
  target = jnp.take_along_axis(z, labels[:, None], axis=1)[:, 0]
  w = jnp.ones(z.shape[1], jnp.float32) if weights is None else weights
  return lse, target, jnp.sum(_common.safe_mul(w, z), axis=1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def row_stats(spec, h, weight, bias, labels, weights, cap, nan_rows):
  """``(lse, z_y, W)`` per row of ``h [N, D] @ weight [D, V] (+ bias)``, float32;
  ``nan_rows [N]`` (0 or NaN) is added to each row's gradient."""
  del nan_rows
  config = dict(spec.config)
  lse, ws = pf.forward(h, weight, bias, spec.options, weights, cap, config=config)
  return lse, _target(h, weight, bias, labels, cap), ws


def _row_stats_fwd(spec, h, weight, bias, labels, weights, cap, nan_rows):
  need_w = perturbed(weights) and spec.options.smoothing
  need_cap = perturbed(cap)
  args = primal((h, weight, bias, labels, weights, cap, nan_rows))
  out = row_stats(spec, *args)
  return out, (*args, out[0], flag(need_w), flag(need_cap))


def _row_stats_bwd(spec, res, cotangents):
  h, weight, bias, labels, weights, cap, nan_rows, lse, need_w, need_cap = res
  g_lse, g_target, g_ws = (_common.instantiate_tangent(lse, g) for g in cotangents)
  s = -g_ws if spec.options.smoothing else None
  coef = coefficients(g_lse + nan_rows, jnp.zeros_like(lse), -g_target, s)
  d_h, d_weight, d_bias = pf.backward(
    h, weight, bias, labels, lse, coef, spec.options, weights, cap, config=dict(spec.config)
  )
  d_h, d_weight = d_h.astype(h.dtype), d_weight.astype(weight.dtype)
  d_bias = None if bias is None else d_bias.astype(bias.dtype)
  d_weights = d_cap = None
  if need_w is not None or need_cap is not None:
    kept = jnp.where(coef.live[:, None] != 0, h, jnp.zeros_like(h))  # dropped rows may be NaN
    stats = functools.partial(_xla_stats, kept, weight, bias, labels)
    _, pullback = jax.vjp(stats, weights, cap)
    d_weights, d_cap = pullback((g_lse, g_target, g_ws))
    d_weights = d_weights if need_w is not None else None
    d_cap = d_cap if need_cap is not None else None
  return d_h, d_weight, d_bias, None, d_weights, d_cap, None


row_stats.defvjp(_row_stats_fwd, _row_stats_bwd, symbolic_zeros=True)
