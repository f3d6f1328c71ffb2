r"""Sparse softmax cross-entropy kernels in Pallas (Triton) for NVIDIA GPUs.

Per row of ``[N, C]`` logits ``x`` (``z = c tanh(x / c)`` with a softcap, else ``z = x``):

* :func:`forward`: ``lse(z)`` and, for label smoothing, ``sum_c w_c z_c``, by an online
  log-sum-exp over column chunks: one read of the logits.
* :func:`gradient` and :func:`split_gradient`: the same statistics and
  ``G = (a_0 + a_1 lse) p - b [c = y] - s w_c`` (times ``dz/dx = 1 - (z / c)^2`` with a
  softcap), ``p = softmax(z)``, for per-row coefficients ``(a_0, a_1, b, s)`` given by the
  caller (:mod:`._pallas_sparse_grad`). ``split_gradient`` splits a row over programs that
  combine their partial ``lse`` through an atomic count (one read, one write);
  ``gradient`` reads each row twice, the second pass backwards (its chunks still in L2).

A row whose coefficients are all 0 (a dropped row) gets a zero gradient row, whatever its
logits hold. Design rule: the kernels take only Pallas APIs present in jax 0.10 and 0.11.
"""

from __future__ import annotations

import contextlib
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

DEFAULT_CONFIG = {
  "block_rows": 1,
  "block_cols": 4096,
  "num_warps": 4,
  "num_stages": 1,
  "reverse": True,  # the gradient pass walks the row backwards (latest chunks still in L2)
  "evict": True,  # first-pass loads ask L2 to keep the lines, second-pass ones to drop them
  "segment": 8192,  # > 0: the gradient by split_gradient, a program per this many columns
}


def tiling_scope(defaults: dict):
  """A context manager ``tiling(config)``: kernels traced inside it take ``config`` over
  ``defaults`` (tests and tiling sweeps; the losses read the defaults when traced)."""

  @contextlib.contextmanager
  def tiling(config):
    saved = dict(defaults)
    defaults.update(config)
    try:
      yield
    finally:
      defaults.clear()
      defaults.update(saved)

  return tiling


tiling = tiling_scope(DEFAULT_CONFIG)


# Segments a row may be split over: a row's programs wait on each other, so must be resident.
MAX_SPLITS = 32


class Options(NamedTuple):
  """What a kernel reads besides the logits (static)."""

  smoothing: bool = False  # also sum_c w_c z_c (label smoothing), and s w_c in the gradient
  weighted: bool = False  # class weights w [C] (read only with smoothing)
  softcap: bool = False  # z = c tanh(x / c), the cap c a [1] input


class Coefficients(NamedTuple):
  """Per-row float32 coefficients of ``G`` (each ``[N]``); ``s`` only with smoothing."""

  a0: jax.Array
  a1: jax.Array
  b: jax.Array
  s: jax.Array | None
  live: jax.Array  # 1.0, or 0.0 where every coefficient is 0 (a zero gradient row)


PLAIN = Options()


def _index(i):
  """An index in JAX's default integer type, as the other dimensions' static slices get."""
  return jnp.asarray(i, jax.dtypes.canonicalize_dtype(jnp.int64))


class _Refs(NamedTuple):
  x: object
  weights: object  # [C] or None
  cap: object  # [1] or None


def _split_refs(options, refs, count):
  """``(_Refs, the next count refs, the rest)`` from a kernel's positional refs."""
  refs = list(refs)
  x = refs.pop(0)
  weights = refs.pop(0) if options.smoothing and options.weighted else None
  cap = refs.pop(0) if options.softcap else None
  return _Refs(x, weights, cap), refs[:count], refs[count:]


def _load(refs, start, block_cols, num_classes, masked, eviction_policy=None):
  """``z`` of columns ``[start, start + block_cols)`` in float32, and their indices;
  columns past ``C`` read as ``-inf``."""
  start = _index(start)
  cols = start + jax.lax.broadcasted_iota(jnp.int32, (1, block_cols), 1)
  mask = cols < num_classes if masked else None
  view = refs.x.at[:, pl.ds(start, block_cols)]
  x = plgpu.load(
    view, mask=mask, other=-jnp.inf if masked else None, eviction_policy=eviction_policy
  )
  z = x.astype(jnp.float32)
  if refs.cap is not None:
    cap = refs.cap[...]
    z = cap * jnp.tanh(z / cap)
    if masked:
      z = jnp.where(mask, z, -jnp.inf)  # tanh maps the padding's -inf to -1
  return z, cols


def _weights(refs, start, cols, num_classes, masked):
  """The chunk's class weights ``[1, block_cols]``: ``w_c``, or 1; 0 past ``C``."""
  if refs.weights is None:
    return (cols < num_classes).astype(jnp.float32)
  view = refs.weights.at[pl.ds(_index(start), cols.shape[1])]
  w = plgpu.load(
    view, mask=cols[0] < num_classes if masked else None, other=0.0 if masked else None
  )
  return w.astype(jnp.float32)[None, :]


def _weighted_sum(z, w):
  """``sum_c w_c z_c`` per row, a zero weight adding 0 even at ``z = -inf``."""
  return jnp.sum(jnp.where(w == 0, 0.0, w * z), axis=1)


def _chunk_loop(num_classes, block_cols, step, carry, *, reverse=False):
  """``step(start, carry, masked)`` over the column chunks (the partial one masked)."""
  num_full = num_classes // block_cols
  tail = num_classes % block_cols
  if tail and reverse:
    carry = step(jnp.int32(num_full * block_cols), carry, True)
  if num_full:
    if reverse:
      body = lambda j, c: step((num_full - 1 - j) * block_cols, c, False)  # noqa: E731
    else:
      body = lambda j, c: step(j * block_cols, c, False)  # noqa: E731
    carry = jax.lax.fori_loop(0, num_full, body, carry)
  if tail and not reverse:
    # A traced start: the tail chunk reaches past C, and only the mask keeps it in bounds.
    carry = step(jnp.int32(num_full * block_cols), carry, True)
  return carry


def _row_stats(options, refs, rows, num_classes, block_cols, eviction_policy=None):
  """Per row ``(lse, sum_c w_c z_c)`` online: ``s' = s e^(m - m') + sum_c e^(z_c - m')``."""

  def step(start, carry, masked):
    m, s, ws = carry
    z, cols = _load(refs, start, block_cols, num_classes, masked, eviction_policy)
    m_new = jnp.maximum(m, jnp.max(z, axis=1))
    shift = jnp.where(jnp.isfinite(m_new), m_new, 0.0)  # +-inf max: exp stays exact
    s = s * jnp.exp(m - shift) + jnp.sum(jnp.exp(z - shift[:, None]), axis=1)
    if options.smoothing:
      ws = ws + _weighted_sum(z, _weights(refs, start, cols, num_classes, masked))
    return m_new, s, ws

  zeros = jnp.zeros((rows,), jnp.float32)
  m, s, ws = _chunk_loop(num_classes, block_cols, step, (zeros - jnp.inf, zeros, zeros))
  return m + jnp.log(s), ws


def _grad(options, refs, z, cols, start, masked, num_classes, y, lse, coef):
  """``G`` of one chunk (see the module docstring); a dead row's is 0."""
  a0, a1, b, s, live = coef
  g = (a0 + a1 * lse)[:, None] * jnp.exp(z - lse[:, None])
  g = g - jnp.where(cols == y[:, None], b[:, None], 0.0)
  if options.smoothing:
    g = g - s[:, None] * _weights(refs, start, cols, num_classes, masked)
  if refs.cap is not None:
    g = g * (1 - jnp.square(z / refs.cap[...]))
  return jnp.where(live[:, None] == 0, 0.0, g)


def _forward_kernel(*refs, options, num_classes, config):
  refs, _, outs = _split_refs(options, refs, 0)
  lse, ws = _row_stats(options, refs, outs[0].shape[0], num_classes, config["block_cols"])
  outs[0][...] = lse
  if options.smoothing:
    outs[1][...] = ws


def _gradient_kernel(*refs, options, num_classes, config):
  refs, (y_ref, *coef_refs), outs = _split_refs(options, refs, 5 + options.smoothing)
  block_cols = config["block_cols"]
  y = y_ref[...]
  coef = _read_coefficients(options, coef_refs)
  keep, drop = ("evict_last", "evict_first") if config["evict"] else (None, None)
  lse, ws = _row_stats(options, refs, y.shape[0], num_classes, block_cols, keep)
  lse_ref, g_ref = outs[0], outs[-1]
  lse_ref[...] = lse
  if options.smoothing:
    outs[1][...] = ws

  def write(start, carry, masked):
    z, cols = _load(refs, start, block_cols, num_classes, masked, drop)
    g = _grad(options, refs, z, cols, start, masked, num_classes, y, lse, coef)
    view = g_ref.at[:, pl.ds(_index(start), block_cols)]
    plgpu.store(view, g.astype(g_ref.dtype), mask=cols < num_classes if masked else None)
    return carry

  _chunk_loop(num_classes, block_cols, write, 0, reverse=config["reverse"])


def _read_coefficients(options, refs):
  values = [r[...] for r in refs]
  s = values.pop(3) if options.smoothing else None
  return Coefficients(values[0], values[1], values[2], s, values[3])


def _params(config, n, c):
  config = {**DEFAULT_CONFIG, **dict(config or {})}
  if n % config["block_rows"]:
    config["block_rows"] = 1
  config["block_cols"] = min(config["block_cols"], pl.next_power_of_2(c))
  compiler = plgpu.CompilerParams(num_warps=config["num_warps"], num_stages=config["num_stages"])
  return config, compiler


def _option_inputs(options, weights, cap, c):
  """The option inputs and their block specs (whole arrays, every program)."""
  inputs, specs = [], []
  if options.smoothing and options.weighted:
    inputs.append(weights.astype(jnp.float32))
    specs.append(pl.BlockSpec((c,), lambda i: (0,)))
  if options.softcap:
    inputs.append(jnp.reshape(cap, (1,)).astype(jnp.float32))
    specs.append(pl.BlockSpec((1,), lambda i: (0,)))
  return inputs, specs


def _row_outputs(options, n):
  count = 2 if options.smoothing else 1
  return [jax.ShapeDtypeStruct((n,), jnp.float32)] * count


def by_platform(fn, *args, interpret=None, **keywords):
  """``fn(*args, **keywords, interpret=...)``: ``interpret`` None compiles the kernel for an
  NVIDIA GPU and runs Pallas's interpreter on every other platform, chosen when the program
  is lowered (so ``jax.export`` for ``"cuda"`` on a CPU gets the kernel)."""
  launch = functools.partial(functools.partial, fn, **keywords)
  if interpret is not None:
    return launch(interpret=interpret)(*args)
  return jax.lax.platform_dependent(
    *args, cuda=launch(interpret=False), default=launch(interpret=True)
  )


def forward(logits, options=PLAIN, weights=None, cap=None, *, config=None, interpret=None):
  """Per-row ``(lse, sum_c w_c z_c or None)`` in float32, reading the logits once."""
  return by_platform(
    _forward, logits, weights, cap, interpret=interpret, options=options, config=config
  )


def _forward(logits, weights, cap, *, options, config, interpret):
  n, c = logits.shape
  config, compiler = _params(config, n, c)
  rows = config["block_rows"]
  extra, extra_specs = _option_inputs(options, weights, cap, c)
  outs = pl.pallas_call(
    functools.partial(_forward_kernel, options=options, num_classes=c, config=config),
    out_shape=_row_outputs(options, n),
    grid=(n // rows,),
    in_specs=[pl.BlockSpec((rows, c), lambda i: (i, 0)), *extra_specs],
    out_specs=[pl.BlockSpec((rows,), lambda i: (i,))] * len(_row_outputs(options, n)),
    compiler_params=compiler,
    interpret=interpret,
    name="xentax_sparse_ce_forward",
  )(logits, *extra)
  return outs[0], (outs[1] if options.smoothing else None)


def _coefficient_inputs(coef):
  return [
    v.astype(jnp.float32) for v in (coef.a0, coef.a1, coef.b, coef.s, coef.live) if v is not None
  ]


def gradient(
  logits,
  labels,
  coef,
  options=PLAIN,
  weights=None,
  cap=None,
  *,
  config=None,
  interpret=False,
  grad_dtype=None,
):
  """Per-row ``(lse, sum_c w_c z_c or None)`` and ``G`` (in ``grad_dtype``, by default the
  logits'), two passes a row."""
  n, c = logits.shape
  config, compiler = _params(config, n, c)
  rows = config["block_rows"]
  row = pl.BlockSpec((rows,), lambda i: (i,))
  full = pl.BlockSpec((rows, c), lambda i: (i, 0))
  extra, extra_specs = _option_inputs(options, weights, cap, c)
  coefs = _coefficient_inputs(coef)
  stats = _row_outputs(options, n)
  outs = pl.pallas_call(
    functools.partial(_gradient_kernel, options=options, num_classes=c, config=config),
    out_shape=(*stats, jax.ShapeDtypeStruct((n, c), grad_dtype or logits.dtype)),
    grid=(n // rows,),
    in_specs=[full, *extra_specs, row, *[row] * len(coefs)],
    out_specs=(*[row] * len(stats), full),
    compiler_params=compiler,
    interpret=interpret,
    name="xentax_sparse_ce_gradient",
  )(logits, *extra, labels.astype(jnp.int32), *coefs)
  return outs[0], (outs[1] if options.smoothing else None), outs[-1]


def _split_gradient_kernel(*refs, options, segment):
  """One program per ``segment`` columns of a row: publishes ``(m_k, s_k)``, counts itself in
  with an atomic, waits for the row's other programs, and writes its gradient segment from the
  logits it holds. Relies on blocks starting in grid order (CUDA's practice, no promise)."""
  refs, (y_ref, *coef_refs, _count_in), outs = _split_refs(options, refs, 6 + options.smoothing)
  lse_ref, g_ref, m_ref, s_ref, count_ref = outs[:5]
  num_classes = refs.x.shape[1]
  splits = pl.cdiv(num_classes, segment)
  slots = pl.next_power_of_2(splits)  # partials per row, padded to a power of two
  pid = _index(pl.program_id(0))
  row, part = pid // splits, pid % splits
  masked = num_classes % segment != 0
  start = part * segment
  z, cols = _load(refs, start, segment, num_classes, masked)
  if options.smoothing:
    ws = _weighted_sum(z, _weights(refs, start, cols, num_classes, masked))
    outs[5][pl.ds(row * slots + part, 1)] = ws
  m = jnp.max(z, axis=1)
  shift = jnp.where(jnp.isfinite(m), m, 0.0)
  total = jnp.sum(jnp.exp(z - shift[:, None]), axis=1)
  if splits == 1:  # the whole row is here: no partials through memory
    lse = m + jnp.log(total)
  else:
    m_ref[pl.ds(row * slots + part, 1)] = m
    s_ref[pl.ds(row * slots + part, 1)] = total
    plgpu.debug_barrier()  # every thread's stores before the release
    arrived = plgpu.atomic_add(count_ref, row, jnp.int32(1)) + 1
    jax.lax.while_loop(
      lambda n: n < splits, lambda n: plgpu.atomic_add(count_ref, row, jnp.int32(0)), arrived
    )
    valid = jax.lax.broadcasted_iota(jnp.int32, (slots,), 0) < splits
    ms = plgpu.load(m_ref.at[pl.ds(row * slots, slots)], mask=valid, other=-jnp.inf, volatile=True)
    ss = plgpu.load(s_ref.at[pl.ds(row * slots, slots)], mask=valid, other=0.0, volatile=True)
    top = jnp.max(ms)
    top_shift = jnp.where(jnp.isfinite(top), top, 0.0)
    lse = top + jnp.log(jnp.sum(ss * jnp.exp(ms - top_shift)))
  lse = jnp.full(lse_ref.shape, lse)
  lse_ref[...] = lse
  coef = _read_coefficients(options, coef_refs)
  g = _grad(options, refs, z, cols, start, masked, num_classes, y_ref[...], lse, coef)
  view = g_ref.at[:, pl.ds(_index(start), segment)]
  plgpu.store(view, g.astype(g_ref.dtype), mask=cols < num_classes if masked else None)


def split_gradient(
  logits,
  labels,
  coef,
  options=PLAIN,
  weights=None,
  cap=None,
  *,
  segment=8192,
  num_warps=4,
  interpret=False,
  grad_dtype=None,
):
  """:func:`gradient` with each row split over ``ceil(C / segment)`` programs (a power of two):
  one read. The interpreter runs programs one at a time, so it takes only ``C <= segment``."""
  n, c = logits.shape
  segment = min(segment, pl.next_power_of_2(c))
  if segment != pl.next_power_of_2(segment):
    raise ValueError(f"split_gradient: segment must be a power of two, got {segment}.")
  splits = pl.cdiv(c, segment)
  if interpret and splits > 1:
    raise ValueError(
      f"split_gradient: the interpreter runs one program at a time, so C={c} over {splits}"
      f" segments of {segment} would wait forever; use segment >= C or segment=0 (two passes)."
    )
  slots = pl.next_power_of_2(splits)
  row = pl.BlockSpec((1,), lambda i: (i // splits,))
  full = pl.BlockSpec((1, c), lambda i: (i // splits, 0))
  partials = pl.BlockSpec((n * slots,), lambda i: (0,))
  count = pl.BlockSpec((n,), lambda i: (0,))
  extra, extra_specs = _option_inputs(options, weights, cap, c)
  extra_specs = [pl.BlockSpec(s.block_shape, lambda i: (0,)) for s in extra_specs]
  coefs = _coefficient_inputs(coef)
  partial = jax.ShapeDtypeStruct((n * slots,), jnp.float32)
  outs = pl.pallas_call(
    functools.partial(_split_gradient_kernel, options=options, segment=segment),
    out_shape=(
      jax.ShapeDtypeStruct((n,), jnp.float32),
      jax.ShapeDtypeStruct((n, c), grad_dtype or logits.dtype),
      partial,
      partial,
      jax.ShapeDtypeStruct((n,), jnp.int32),
      *[partial] * options.smoothing,
    ),
    grid=(n * splits,),
    in_specs=[full, *extra_specs, row, *[row] * len(coefs), count],
    out_specs=(row, full, partials, partials, count, *[partials] * options.smoothing),
    input_output_aliases={1 + len(extra) + 1 + len(coefs): 4},
    compiler_params=plgpu.CompilerParams(num_warps=num_warps, num_stages=1),
    interpret=interpret,
    name="xentax_sparse_ce_split_gradient",
  )(logits, *extra, labels.astype(jnp.int32), *coefs, jnp.zeros((n,), jnp.int32))
  ws = None
  if options.smoothing:
    ws = jnp.sum(outs[5].reshape(n, slots)[:, :splits], axis=1)
  return outs[0], ws, outs[1]


def row_gradient(
  logits, labels, coef, options, weights, cap, config, interpret=None, grad_dtype=None
):
  """:func:`split_gradient` where a row fits :data:`MAX_SPLITS` segments (compiled) or one
  (interpreted), else :func:`gradient`; ``interpret`` as in :func:`by_platform`."""
  config = {**DEFAULT_CONFIG, **dict(config or {})}
  return by_platform(
    _row_gradient,
    logits,
    labels,
    coef,
    weights,
    cap,
    interpret=interpret,
    options=options,
    config=config,
    grad_dtype=grad_dtype,
  )


def _row_gradient(logits, labels, coef, weights, cap, *, options, config, grad_dtype, interpret):
  splits = pl.cdiv(logits.shape[1], config["segment"]) if config["segment"] else 0
  if splits and splits <= (1 if interpret else MAX_SPLITS):
    return split_gradient(
      logits,
      labels,
      coef,
      options,
      weights,
      cap,
      segment=config["segment"],
      num_warps=config["num_warps"],
      interpret=interpret,
      grad_dtype=grad_dtype,
    )
  return gradient(
    logits,
    labels,
    coef,
    options,
    weights,
    cap,
    config=config,
    interpret=interpret,
    grad_dtype=grad_dtype,
  )
