"""Sparse softmax cross-entropy from logits as Pallas (Triton) kernels for NVIDIA GPUs.

Per row ``n`` with logits ``z`` over ``C`` classes and label ``y``:

  loss_n = lse(z) - z_y,          lse(z) = m + log sum_c exp(z_c - m),  m = max_c z_c
  d loss_n / d z_c = softmax(z)_c - [c = y]

Two kernels, each reading a block of rows in column chunks of ``block_cols``:

  * ``forward``: one pass, an online log-sum-exp (running max ``m`` and rescaled sum ``s``,
    Milakov and Gimelshein 2018) and the target logit; writes only per-row ``loss`` and ``lse``.
    Logits are read once: the memory traffic is ``N C`` elements.
  * ``gradient``: the same pass, then a second pass over the row that writes
    ``scale_n (exp(z_c - lse) - [c = y])`` in the logits' dtype (Liger-Kernel's way). A row is
    ``C`` elements, so the second read of a block of rows is served from L2 while the grid
    walks the rows: the traffic is one read and one write of ``N C`` elements.

``sparse_cross_entropy`` wraps both in a ``custom_vjp``: under ``"mean"``/``"sum"`` the
differentiated call runs ``gradient`` alone (the loss comes with it) and keeps its output as
the residual, so the backward pass is ``g * residual`` (a no-op for the cotangent 1 of a
top-level ``grad``); under ``"none"`` the forward keeps only ``lse`` and the backward runs
``gradient`` with ``scale = g``.

Ignored rows (``where`` false or ``label == ignore_index``) get weight 0: their loss is 0 and
their gradient row is written as zeros. Labels of kept rows must lie in ``[0, C)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

DEFAULT_CONFIG = {"block_rows": 1, "block_cols": 4096, "num_warps": 8, "num_stages": 1}


def _chunk(x_ref, start, block_cols, num_classes, masked):
  """Loads ``x[:, start:start + block_cols]`` as float32; columns past ``C`` read as -inf."""
  view = x_ref.at[:, pl.ds(start, block_cols)]
  cols = start + jax.lax.broadcasted_iota(jnp.int32, (1, block_cols), 1)
  if masked:
    x = plgpu.load(view, mask=cols < num_classes, other=-jnp.inf)
  else:
    x = view[...]
  return x.astype(jnp.float32), cols


def _row_stats(x_ref, y, *, block_cols, num_classes):
  """One pass over the row block: ``lse`` and the target logit, each ``[block_rows]``."""
  rows = y.shape[0]
  num_full = num_classes // block_cols

  def step(start, carry, masked):
    m, s, t = carry
    x, cols = _chunk(x_ref, start, block_cols, num_classes, masked)
    m_new = jnp.maximum(m, jnp.max(x, axis=1))
    shift = jnp.where(m_new == -jnp.inf, 0.0, m_new)  # all -inf so far: keep exp finite
    s = s * jnp.exp(m - shift) + jnp.sum(jnp.exp(x - shift[:, None]), axis=1)
    t = t + jnp.sum(jnp.where(cols == y[:, None], x, 0.0), axis=1)
    return m_new, s, t

  init = (
    jnp.full((rows,), -jnp.inf, jnp.float32),
    jnp.zeros((rows,), jnp.float32),
    jnp.zeros((rows,), jnp.float32),
  )
  carry = init
  if num_full:
    carry = jax.lax.fori_loop(
      0, num_full, lambda j, c: step(j * block_cols, c, masked=False), carry
    )
  if num_classes % block_cols:
    # A traced start: the tail chunk reaches past C, and only the mask keeps it in bounds.
    carry = step(jnp.int32(num_full * block_cols), carry, masked=True)
  m, s, t = carry
  return m + jnp.log(s), t


def _forward_kernel(x_ref, y_ref, loss_ref, lse_ref, *, block_cols, num_classes):
  y = y_ref[...]
  lse, target = _row_stats(x_ref, y, block_cols=block_cols, num_classes=num_classes)
  loss_ref[...] = lse - target
  lse_ref[...] = lse


def _gradient_kernel(x_ref, y_ref, scale_ref, loss_ref, g_ref, *, block_cols, num_classes):
  y = y_ref[...]
  scale = scale_ref[...]
  lse, target = _row_stats(x_ref, y, block_cols=block_cols, num_classes=num_classes)
  loss_ref[...] = lse - target
  num_chunks = pl.cdiv(num_classes, block_cols)
  masked = num_classes % block_cols != 0

  def write(j, _):
    start = j * block_cols
    x, cols = _chunk(x_ref, start, block_cols, num_classes, masked)
    g = (jnp.exp(x - lse[:, None]) - jnp.where(cols == y[:, None], 1.0, 0.0)) * scale[:, None]
    view = g_ref.at[:, pl.ds(start, block_cols)]
    if masked:
      plgpu.store(view, g.astype(g_ref.dtype), mask=cols < num_classes)
    else:
      view[...] = g.astype(g_ref.dtype)
    return 0

  jax.lax.fori_loop(0, num_chunks, write, 0)


def _params(config, n, c):
  block_rows = config["block_rows"] if n % config["block_rows"] == 0 else 1
  block_cols = min(config["block_cols"], pl.next_power_of_2(c))
  compiler = plgpu.CompilerParams(num_warps=config["num_warps"], num_stages=config["num_stages"])
  return block_rows, block_cols, compiler


def forward(logits, labels, *, config=None, interpret=False):
  """Per-row ``(loss, lse)`` in float32, reading the logits once."""
  config = {**DEFAULT_CONFIG, **dict(config or {})}
  n, c = logits.shape
  block_rows, block_cols, compiler = _params(config, n, c)
  row = pl.BlockSpec((block_rows,), lambda i: (i,))
  return pl.pallas_call(
    functools.partial(_forward_kernel, block_cols=block_cols, num_classes=c),
    out_shape=(jax.ShapeDtypeStruct((n,), jnp.float32),) * 2,
    grid=(n // block_rows,),
    in_specs=[pl.BlockSpec((block_rows, c), lambda i: (i, 0)), row],
    out_specs=(row, row),
    compiler_params=compiler,
    interpret=interpret,
    name="xentax_sparse_ce_forward",
  )(logits, labels)


def gradient(logits, labels, scale, *, config=None, interpret=False):
  """Per-row loss (float32) and ``scale[:, None] * (softmax - onehot)`` in the logits' dtype."""
  config = {**DEFAULT_CONFIG, **dict(config or {})}
  n, c = logits.shape
  block_rows, block_cols, compiler = _params(config, n, c)
  row = pl.BlockSpec((block_rows,), lambda i: (i,))
  full = pl.BlockSpec((block_rows, c), lambda i: (i, 0))
  return pl.pallas_call(
    functools.partial(_gradient_kernel, block_cols=block_cols, num_classes=c),
    out_shape=(
      jax.ShapeDtypeStruct((n,), jnp.float32),
      jax.ShapeDtypeStruct((n, c), logits.dtype),
    ),
    grid=(n // block_rows,),
    in_specs=[full, row, row],
    out_specs=(row, full),
    compiler_params=compiler,
    interpret=interpret,
    name="xentax_sparse_ce_gradient",
  )(logits, labels, scale.astype(jnp.float32))


def _row_weights(labels, num_classes, where, ignore_index):
  keep = jnp.ones(labels.shape, bool) if where is None else where
  if ignore_index is not None:
    keep = keep & (labels != ignore_index)
  safe = jnp.where(keep, labels, 0).astype(jnp.int32)
  return safe, keep.astype(jnp.float32)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _reduced(logits, labels, weights, reduction, config, interpret):
  loss, _ = forward(logits, labels, config=config, interpret=interpret)
  total = jnp.sum(jnp.where(weights > 0, loss, 0.0))
  return total / jnp.sum(weights) if reduction == "mean" else total


def _reduced_fwd(logits, labels, weights, reduction, config, interpret):
  denom = jnp.sum(weights) if reduction == "mean" else jnp.float32(1)
  scale = weights / denom
  loss, grad = gradient(logits, labels, scale, config=config, interpret=interpret)
  value = jnp.sum(jnp.where(weights > 0, loss, 0.0)) / denom
  return value, (grad, labels, weights)


def _reduced_bwd(reduction, config, interpret, res, g):
  grad, labels, weights = res
  return (g.astype(grad.dtype) * grad, None, jnp.zeros_like(weights))


_reduced.defvjp(_reduced_fwd, _reduced_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _rows(logits, labels, weights, config, interpret):
  loss, _ = forward(logits, labels, config=config, interpret=interpret)
  return jnp.where(weights > 0, loss, 0.0)


def _rows_fwd(logits, labels, weights, config, interpret):
  return _rows(logits, labels, weights, config, interpret), (logits, labels, weights)


def _rows_bwd(config, interpret, res, g):
  logits, labels, weights = res
  _, grad = gradient(logits, labels, g * weights, config=config, interpret=interpret)
  return (grad, None, jnp.zeros_like(weights))


_rows.defvjp(_rows_fwd, _rows_bwd)


def sparse_cross_entropy(
  logits,
  labels,
  *,
  reduction="mean",
  where=None,
  ignore_index=None,
  config=None,
  interpret=False,
):
  """Sparse softmax cross-entropy ``lse(z_n) - z_{n, y_n}`` of ``[N, C]`` logits.

  ``reduction``: ``"mean"`` over kept rows, ``"sum"``, or ``"none"`` (``[N]``, 0 where ignored).
  ``config``: kernel tiling (``block_rows``, ``block_cols``, ``num_warps``, ``num_stages``).
  ``interpret=True`` runs the kernels in Pallas's interpreter (any backend).
  """
  if logits.ndim != 2:
    raise ValueError(f"sparse_cross_entropy: logits must be [N, C], got shape {logits.shape}.")
  if labels.shape != logits.shape[:1]:
    raise ValueError(
      f"sparse_cross_entropy: labels must be [N] = {logits.shape[:1]}, got {labels.shape}."
    )
  if reduction not in ("mean", "sum", "none"):
    raise ValueError(f"sparse_cross_entropy: reduction must be mean, sum or none; {reduction!r}.")
  safe, weights = _row_weights(labels, logits.shape[1], where, ignore_index)
  config = tuple(sorted({**DEFAULT_CONFIG, **(config or {})}.items()))  # hashable: static
  if reduction == "none":
    return _rows(logits, safe, weights, config, interpret)
  return _reduced(logits, safe, weights, reduction, config, interpret)
