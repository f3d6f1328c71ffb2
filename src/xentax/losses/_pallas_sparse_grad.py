r"""Derivative rules of the Pallas sparse cross-entropy kernels (:mod:`._pallas_sparse`).

A loss is a function of three per-row statistics of ``z`` (``x`` soft-capped or not),
``lse``, ``z_y`` and ``W = sum_c w_c z_c``, and of small options. Its logit gradient is

.. math::
  G_c = \frac{\partial f}{\partial \mathrm{lse}}\, p_c
    + \frac{\partial f}{\partial z_y} [c = y] + \frac{\partial f}{\partial W} w_c

(times ``dz/dx``), which the kernels write for per-row coefficients. Two rules:

* :func:`row_stats` returns the statistics (one read); reverse mode runs a gradient kernel
  with the cotangents as coefficients (one read, one write).
* :func:`reduced` returns a scalar ``total(stats, options)`` at most quadratic in ``lse``
  (the z-loss): its coefficients ``a_0 + a_1 lse`` are known before the kernel, which writes
  the gradient in the pass that reads the logits; reverse mode only scales it.

The options' gradients come from ``jax.vjp`` of ``total`` with the statistics held; the class
weights' through ``W`` and the softcap's take one XLA pass over the logits, only when they
are differentiated.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from xentax.losses import _common, _softcap
from xentax.losses import _pallas_sparse as ps


class Spec(NamedTuple):
  """Static: what the kernels read and their tiling (sorted items)."""

  options: ps.Options
  config: tuple = ()


def _target(x, labels, cap):
  """``z_y`` per row in float32."""
  target = jnp.take_along_axis(x, labels[:, None], axis=1)[:, 0].astype(jnp.float32)
  return target if cap is None else _softcap.softcap(target, cap)


def _kernel_gradient(spec, x, labels, coef, weights, cap):
  # float16 gradients in float32: scaled by the cotangent only later, they would underflow.
  grad_dtype = jnp.float32 if x.dtype == jnp.float16 else x.dtype
  return ps.row_gradient(
    x, labels, coef, spec.options, weights, cap, dict(spec.config), grad_dtype=grad_dtype
  )


def primal(arg):
  """A ``custom_vjp`` forward rule's argument (under ``symbolic_zeros``) without its wrapper."""
  wrapped = lambda v: isinstance(v, jax.custom_derivatives.CustomVJPPrimal)  # noqa: E731
  return jax.tree.map(lambda v: v.value if wrapped(v) else v, arg, is_leaf=wrapped)


def perturbed(arg) -> bool:
  return bool(getattr(arg, "perturbed", False))


def flag(on: bool):
  """A static flag as a residual: ``()`` when on, None when off (no leaves either way)."""
  return () if on else None


def coefficients(a0, a1, b, s):
  live = (a0 != 0) | (a1 != 0) | (b != 0)
  if s is not None:
    live = live | (s != 0)
  return ps.Coefficients(a0, a1, b, s, live.astype(jnp.float32))


def _option_grads(spec, x, labels, lse, coef, weights, cap, need_weights, need_cap):
  """``d / d w`` through ``W`` and ``d / d c`` (softcap), each None when not needed."""
  if not (need_weights or need_cap):
    return None, None
  kept = coef.live[:, None] != 0
  z = x.astype(jnp.float32)
  z = z if cap is None else _softcap.softcap(z, cap)
  d_weights = d_cap = None
  if need_weights:  # d / d w_c of sum_n (-s_n) W_n
    d_weights = -jnp.sum(jnp.where(kept, _common.safe_mul(coef.s[:, None], z), 0.0), axis=0)
  if need_cap:
    w = jnp.ones(x.shape[1], jnp.float32) if weights is None else weights
    p = jnp.exp(z - lse[:, None])
    onehot = jnp.arange(x.shape[1]) == labels[:, None]
    g = (coef.a0 + coef.a1 * lse)[:, None] * p - jnp.where(onehot, coef.b[:, None], 0.0)
    if coef.s is not None:
      g = g - coef.s[:, None] * w
    dz_dcap = _softcap.softcap_derivatives(x, cap)[1]
    d_cap = jnp.sum(jnp.where(kept, g * dz_dcap, 0.0)).astype(jnp.result_type(cap))
  return d_weights, d_cap


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def row_stats(spec, x, labels, weights, cap, nan_rows):
  """``(lse, z_y, W)`` per row of ``x [N, C]`` (``W`` zeros without smoothing), float32;
  ``nan_rows [N]`` (0 or NaN) is added to each row's gradient."""
  del nan_rows
  lse, ws = ps.forward(x, spec.options, weights, cap, config=dict(spec.config))
  return lse, _target(x, labels, cap), jnp.zeros_like(lse) if ws is None else ws


def _row_stats_fwd(spec, x, labels, weights, cap, nan_rows):
  need_w = perturbed(weights) and spec.options.smoothing
  need_cap = perturbed(cap)
  x, labels, weights, cap, nan_rows = primal((x, labels, weights, cap, nan_rows))
  out = row_stats(spec, x, labels, weights, cap, nan_rows)
  return out, (x, labels, weights, cap, nan_rows, out[0], flag(need_w), flag(need_cap))


def _row_stats_bwd(spec, res, cotangents):
  x, labels, weights, cap, nan_rows, lse, need_w, need_cap = res
  g_lse, g_target, g_ws = (_common.instantiate_tangent(lse, g) for g in cotangents)
  s = -g_ws if spec.options.smoothing else None
  coef = coefficients(g_lse + nan_rows, jnp.zeros_like(lse), -g_target, s)
  _, _, grad = _kernel_gradient(spec, x, labels, coef, weights, cap)
  need_w, need_cap = need_w is not None, need_cap is not None
  d_w, d_cap = _option_grads(spec, x, labels, lse, coef, weights, cap, need_w, need_cap)
  return grad, None, d_w, d_cap, None


row_stats.defvjp(_row_stats_fwd, _row_stats_bwd, symbolic_zeros=True)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def reduced(spec, total, x, labels, weights, cap, nan_rows, aux, rest):
  """``total(lse, z_y, W, weights, aux, rest)``: a scalar, at most quadratic in each ``lse``.

  ``nan_rows [N]``: 0, or NaN for a row whose gradient must be NaN (a bad label); ``aux``:
  integer and boolean arrays ``total`` reads; ``rest``: its float options.
  """
  lse, ws = ps.forward(x, spec.options, weights, cap, config=dict(spec.config))
  ws = jnp.zeros_like(lse) if ws is None else ws
  return total(lse, _target(x, labels, cap), ws, weights, aux, rest)


def _reduced_fwd(spec, total, x, labels, weights, cap, nan_rows, aux, rest):
  need_w = perturbed(weights) and spec.options.smoothing
  need_cap = perturbed(cap)
  x, labels, weights, cap, nan_rows, aux, rest = primal(
    (x, labels, weights, cap, nan_rows, aux, rest)
  )
  target = _target(x, labels, cap)
  zeros = jnp.zeros_like(target)
  by_stats = jax.grad(total, argnums=(0, 1, 2))
  a_at_0, d_target, d_ws = by_stats(zeros, target, zeros, weights, aux, rest)
  a_at_1 = by_stats(zeros + 1, target, zeros, weights, aux, rest)[0]
  s = -d_ws if spec.options.smoothing else None
  coef = coefficients(a_at_0 + nan_rows, a_at_1 - a_at_0, -d_target, s)
  lse, ws, grad = _kernel_gradient(spec, x, labels, coef, weights, cap)
  ws = zeros if ws is None else ws
  value = total(lse, target, ws, weights, aux, rest)
  saved_x = (x, labels) if need_w or need_cap else None
  res = (
    grad,
    lse,
    target,
    ws,
    weights,
    cap,
    aux,
    rest,
    coef,
    saved_x,
    flag(need_w),
    flag(need_cap),
    jnp.zeros((0,), x.dtype),  # the logits' dtype, for their gradient
  )
  return value, res


def _reduced_bwd(spec, total, res, g):
  grad, lse, target, ws, weights, cap, aux, rest, coef, saved_x, need_w, need_cap, like = res
  d_x = (g * grad).astype(like.dtype)
  _, pullback = jax.vjp(lambda w, r: total(lse, target, ws, w, aux, r), weights, rest)
  d_weights, d_rest = pullback(g)
  d_w = d_cap = None
  if saved_x is not None:
    x, labels = saved_x
    need = need_w is not None, need_cap is not None
    d_w, d_cap = _option_grads(spec, x, labels, lse, coef, weights, cap, *need)
    d_w = None if d_w is None else g * d_w
    d_cap = None if d_cap is None else g * d_cap
  if d_w is not None:
    d_weights = d_weights + d_w
  return d_x, None, d_weights, d_cap, None, None, d_rest


reduced.defvjp(_reduced_fwd, _reduced_bwd, symbolic_zeros=True)
