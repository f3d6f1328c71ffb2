r"""Fused linear cross-entropy kernels in Pallas (Triton): the logits ``z = h W + b`` (soft-capped
or not) live only in blocks on chip, never in memory.

* :func:`forward`: per row ``lse(z)`` and, for label smoothing, ``sum_c w_c z_c``. A program
  owns ``block_rows`` rows and walks the vocabulary a ``block_cols`` block at a time, each
  block a loop of ``block_dim``-deep matmuls accumulated in float32, with an online
  log-sum-exp.
* :func:`backward`: a program per ``(row block, column block)`` recomputes its logits
  block, forms ``G = a p - b [c = y] - s w_c`` (times ``1 - (z / c)^2`` with a softcap) for
  per-row coefficients, and adds ``G W^T`` into ``d h``, ``h^T G`` into ``d W`` and the
  column sums of ``G`` into ``d b`` with atomic adds (Cut Cross-Entropy's scheme,
  Wijmans et al. 2024). ``filter_eps``: a block whose ``|G|`` stays below it is skipped
  (their gradient filtering); off by default.

The accumulators are float32 and padded to whole blocks (masked atomics are not
interpretable); inputs are read with masks, so nothing is padded or copied.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from xentax.losses._pallas_sparse import _index, by_platform, tiling_scope

DEFAULT_CONFIG = {
  "block_rows": 64,
  "block_cols": 128,
  "block_dim": 64,
  "num_warps": 4,
  "num_stages": 2,
  "filter_eps": None,  # a float: skip the matmuls of a block whose |G| < filter_eps
}
tiling = tiling_scope(DEFAULT_CONFIG)


class Shape(NamedTuple):
  n: int
  d: int
  v: int
  rows: int  # block sizes
  cols: int
  dim: int


def _shape(hidden, weight, config) -> Shape:
  (n, d), v = hidden.shape, weight.shape[1]
  fit = lambda size, limit: max(16, min(limit, pl.next_power_of_2(size)))  # noqa: E731
  rows = fit(n, config["block_rows"])
  return Shape(n, d, v, rows, fit(v, config["block_cols"]), fit(d, config["block_dim"]))


def _config(config):
  return {**DEFAULT_CONFIG, **dict(config or {})}


def _ids(start, size, limit):
  ids = jnp.asarray(start, jnp.int32) + jax.lax.broadcasted_iota(jnp.int32, (size,), 0)
  return ids, ids < limit


def _logits(refs, shape, i, j, options):
  """The ``[rows, cols]`` block ``(i, j)`` of ``z`` in float32, ``-inf`` past ``V``."""
  h_ref, w_ref, b_ref, cap_ref = refs
  row_ok = _ids(i * shape.rows, shape.rows, shape.n)[1]
  cols, col_ok = _ids(j * shape.cols, shape.cols, shape.v)

  def step(k, acc):
    dims, dim_ok = _ids(k * shape.dim, shape.dim, shape.d)
    h = plgpu.load(
      h_ref.at[pl.ds(_index(i * shape.rows), shape.rows), pl.ds(_index(k * shape.dim), shape.dim)],
      mask=row_ok[:, None] & dim_ok[None, :],
      other=0.0,
    )
    w = plgpu.load(
      w_ref.at[pl.ds(_index(k * shape.dim), shape.dim), pl.ds(_index(j * shape.cols), shape.cols)],
      mask=dim_ok[:, None] & col_ok[None, :],
      other=0.0,
    )
    return acc + _matmul(h, w, ((1,), (0,)))

  zeros = jnp.zeros((shape.rows, shape.cols), jnp.float32)
  z = jax.lax.fori_loop(0, pl.cdiv(shape.d, shape.dim), step, zeros)
  if b_ref is not None:
    b = plgpu.load(b_ref.at[pl.ds(_index(j * shape.cols), shape.cols)], mask=col_ok, other=0.0)
    z = z + b.astype(jnp.float32)[None, :]
  if cap_ref is not None:
    cap = cap_ref[...]
    z = cap * jnp.tanh(z / cap)
  return jnp.where(col_ok[None, :], z, -jnp.inf), cols, col_ok


def _matmul(a, b, contract):
  """``a b`` contracting the axes ``contract``, in their common dtype, accumulated in float32."""
  dtype = jnp.result_type(a, b)
  numbers = (contract, ((), ()))
  return jax.lax.dot_general(
    a.astype(dtype),
    b.astype(dtype),
    numbers,
    precision=jax.lax.Precision.HIGHEST,  # float32 in float32 (not TF32) on a GPU
    preferred_element_type=jnp.float32,
  )


def _class_weights(w_ref, shape, j, col_ok):
  if w_ref is None:
    return col_ok.astype(jnp.float32)[None, :]
  w = plgpu.load(w_ref.at[pl.ds(_index(j * shape.cols), shape.cols)], mask=col_ok, other=0.0)
  return w.astype(jnp.float32)[None, :]


def _split(options, refs, has_bias):
  refs = list(refs)
  h_ref, w_ref = refs.pop(0), refs.pop(0)
  b_ref = refs.pop(0) if has_bias else None
  cw_ref = refs.pop(0) if options.smoothing and options.weighted else None
  cap_ref = refs.pop(0) if options.softcap else None
  return (h_ref, w_ref, b_ref, cap_ref), cw_ref, refs


def _forward_kernel(*refs, options, shape, has_bias):
  logits_refs, cw_ref, (lse_ref, ws_ref) = _split(options, refs, has_bias)
  i = pl.program_id(0)

  def step(j, carry):
    m, s, ws = carry
    z, _, col_ok = _logits(logits_refs, shape, i, j, options)
    m_new = jnp.maximum(m, jnp.max(z, axis=1))
    shift = jnp.where(jnp.isfinite(m_new), m_new, 0.0)  # +-inf max: exp stays exact
    s = s * jnp.exp(m - shift) + jnp.sum(jnp.exp(z - shift[:, None]), axis=1)
    if options.smoothing:
      w = _class_weights(cw_ref, shape, j, col_ok)
      ws = ws + jnp.sum(jnp.where(w == 0, 0.0, w * z), axis=1)
    return m_new, s, ws

  zeros = jnp.zeros((shape.rows,), jnp.float32)
  m, s, ws = jax.lax.fori_loop(
    0, pl.cdiv(shape.v, shape.cols), step, (zeros - jnp.inf, zeros, zeros)
  )
  lse_ref[...] = m + jnp.log(s)
  ws_ref[...] = ws


def _option_inputs(options, bias, weights, cap, shape):
  whole = lambda *dims: pl.BlockSpec(dims, lambda *_: (0,) * len(dims))  # noqa: E731
  inputs, specs = [], []
  if bias is not None:
    inputs.append(bias)
    specs.append(whole(shape.v))
  if options.smoothing and options.weighted:
    inputs.append(weights.astype(jnp.float32))
    specs.append(whole(shape.v))
  if options.softcap:
    inputs.append(jnp.reshape(cap, (1,)).astype(jnp.float32))
    specs.append(whole(1))
  return inputs, specs


def forward(hidden, weight, bias, options, weights, cap, *, config=None, interpret=None):
  """Per-row ``(lse, sum_c w_c z_c)`` in float32 (the second zeros without smoothing)."""
  return by_platform(
    _forward,
    hidden,
    weight,
    bias,
    weights,
    cap,
    interpret=interpret,
    options=options,
    config=config,
  )


def _forward(hidden, weight, bias, weights, cap, *, options, config, interpret):
  config = _config(config)
  shape = _shape(hidden, weight, config)
  blocks = pl.cdiv(shape.n, shape.rows)
  padded = blocks * shape.rows
  extra, extra_specs = _option_inputs(options, bias, weights, cap, shape)
  row = pl.BlockSpec((shape.rows,), lambda i: (i,))
  kernel = functools.partial(
    _forward_kernel, options=options, shape=shape, has_bias=bias is not None
  )
  lse, ws = pl.pallas_call(
    kernel,
    out_shape=[jax.ShapeDtypeStruct((padded,), jnp.float32)] * 2,
    grid=(blocks,),
    in_specs=[
      pl.BlockSpec((shape.n, shape.d), lambda i: (0, 0)),
      pl.BlockSpec((shape.d, shape.v), lambda i: (0, 0)),
      *extra_specs,
    ],
    out_specs=[row, row],
    compiler_params=plgpu.CompilerParams(
      num_warps=config["num_warps"], num_stages=config["num_stages"]
    ),
    interpret=interpret,
    name="xentax_fused_ce_forward",
  )(hidden, weight, *extra)
  return lse[: shape.n], ws[: shape.n]


def _backward_kernel(*refs, options, shape, has_bias, filter_eps):
  logits_refs, cw_ref, rest = _split(options, refs, has_bias)
  y_ref, lse_ref, a_ref, b_ref, *rest = rest
  s_ref = rest.pop(0) if options.smoothing else None
  live_ref = rest.pop(0)
  accumulators = 3 if has_bias else 2
  dh_ref, dw_ref, *db_ref = rest[accumulators:]  # outputs, aliased to zero-filled inputs
  i, j = pl.program_id(0), pl.program_id(1)
  z, cols, col_ok = _logits(logits_refs, shape, i, j, options)
  lse, a, b, live = lse_ref[...], a_ref[...], b_ref[...], live_ref[...]
  g = a[:, None] * jnp.exp(z - lse[:, None])
  g = g - jnp.where(cols[None, :] == y_ref[...][:, None], b[:, None], 0.0)
  if options.smoothing:
    g = g - s_ref[...][:, None] * _class_weights(cw_ref, shape, j, col_ok)
  if options.softcap:
    g = g * (1 - jnp.square(z / logits_refs[3][...]))
  g = jnp.where((live[:, None] == 0) | ~col_ok[None, :], 0.0, g)

  def accumulate():
    h_ref, w_ref = logits_refs[:2]
    g_in = g.astype(jnp.result_type(h_ref.dtype, w_ref.dtype))  # f32 accumulation
    # A dropped row's h may hold NaN or inf: read as 0, as its G row is 0.
    row_ok = _ids(i * shape.rows, shape.rows, shape.n)[1] & (live != 0)
    if db_ref:
      plgpu.atomic_add(db_ref[0], pl.ds(_index(j * shape.cols), shape.cols), jnp.sum(g, axis=0))

    def step(k, carry):
      dim_ok = _ids(k * shape.dim, shape.dim, shape.d)[1]
      dims = pl.ds(_index(k * shape.dim), shape.dim)
      rows, cols = (
        pl.ds(_index(i * shape.rows), shape.rows),
        pl.ds(_index(j * shape.cols), shape.cols),
      )
      w = plgpu.load(w_ref.at[dims, cols], mask=dim_ok[:, None] & col_ok[None, :], other=0.0)
      plgpu.atomic_add(dh_ref, (rows, dims), _matmul(g_in, w, ((1,), (1,))))
      h = plgpu.load(h_ref.at[rows, dims], mask=row_ok[:, None] & dim_ok[None, :], other=0.0)
      plgpu.atomic_add(dw_ref, (dims, cols), _matmul(h, g_in, ((0,), (0,))))
      return carry

    jax.lax.fori_loop(0, pl.cdiv(shape.d, shape.dim), step, 0)

  if filter_eps is None:
    accumulate()
  else:
    # Counted, not a max: a NaN entry (not below eps) keeps its block, as a max may drop it.
    large = jnp.sum(jnp.where(jnp.abs(g) < filter_eps, 0, 1))
    jax.lax.cond(large > 0, accumulate, lambda: None)


def backward(hidden, weight, bias, labels, lse, coef, options, weights, cap, *, config=None):
  """``(d h, d W, d b or None)`` in float32 for ``G`` of the per-row coefficients ``coef``
  (:class:`._pallas_sparse.Coefficients` with ``a1 = 0``: ``a0`` is the whole ``a``)."""
  return by_platform(
    _backward,
    hidden,
    weight,
    bias,
    labels,
    lse,
    coef,
    weights,
    cap,
    options=options,
    config=config,
  )


def _backward(hidden, weight, bias, labels, lse, coef, weights, cap, *, options, config, interpret):
  config = _config(config)
  shape = _shape(hidden, weight, config)
  grid = (pl.cdiv(shape.n, shape.rows), pl.cdiv(shape.v, shape.cols))
  n_pad, v_pad = grid[0] * shape.rows, grid[1] * shape.cols
  d_pad = pl.cdiv(shape.d, shape.dim) * shape.dim
  pad = lambda v, dtype=jnp.float32: jnp.pad(v.astype(dtype), (0, n_pad - shape.n))  # noqa: E731
  rows = [pad(labels, jnp.int32), pad(lse), pad(coef.a0), pad(coef.b)]
  rows += [pad(coef.s)] if options.smoothing else []
  rows += [pad(coef.live)]
  extra, extra_specs = _option_inputs(options, bias, weights, cap, shape)
  zeros = [jnp.zeros((n_pad, d_pad), jnp.float32), jnp.zeros((d_pad, v_pad), jnp.float32)]
  zeros += [jnp.zeros((v_pad,), jnp.float32)] if bias is not None else []
  whole = lambda a: pl.BlockSpec(a.shape, lambda i, j: (0,) * a.ndim)  # noqa: E731
  first_zero = 2 + len(extra) + len(rows)
  kernel = functools.partial(
    _backward_kernel,
    options=options,
    shape=shape,
    has_bias=bias is not None,
    filter_eps=config["filter_eps"],
  )
  outs = pl.pallas_call(
    kernel,
    out_shape=[jax.ShapeDtypeStruct(z.shape, z.dtype) for z in zeros],
    grid=grid,
    in_specs=[
      whole(hidden),
      whole(weight),
      *[pl.BlockSpec(s.block_shape, lambda i, j: (0,)) for s in extra_specs],
      *[pl.BlockSpec((shape.rows,), lambda i, j: (i,)) for _ in rows],
      *[whole(z) for z in zeros],
    ],
    out_specs=[whole(z) for z in zeros],
    input_output_aliases={first_zero + k: k for k in range(len(zeros))},
    compiler_params=plgpu.CompilerParams(
      num_warps=config["num_warps"], num_stages=config["num_stages"]
    ),
    interpret=interpret,
    name="xentax_fused_ce_backward",
  )(hidden, weight, *extra, *rows, *zeros)
  d_bias = outs[2][: shape.v] if bias is not None else None
  return outs[0][: shape.n, : shape.d], outs[1][: shape.d, : shape.v], d_bias
