"""Sparse softmax cross-entropy ``lse(z) - z_y`` as Pallas (Triton) kernels for NVIDIA GPUs.

* ``forward``: an online log-sum-exp over column chunks, one read; the target is a gather.
* ``split_gradient`` (default): a row split over programs that combine partial lse's through
  an atomic count; ``gradient`` (``segment=0``): two passes per row, the second backwards.
* Differentiated scalar reductions run a gradient kernel alone and keep its output as the
  residual; ``"none"`` keeps ``lse`` and runs it in the backward pass.
* A dropped row has weight 0: loss 0 and a zero gradient row whatever its logits hold.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as plgpu

from xentax.losses import _sparse_terms, _validate

DEFAULT_CONFIG = {
  "block_rows": 1,
  "block_cols": 4096,
  "num_warps": 4,
  "num_stages": 1,
  "lanes": False,  # per-lane running max and sum (one reduction per row, not per chunk)
  "reverse": True,  # the gradient pass walks the row backwards (latest chunks still in L2)
  "evict": True,  # first-pass loads ask L2 to keep the lines, second-pass ones to drop them
  "segment": 8192,  # > 0: the gradient by split_gradient, a program per this many columns
}
# Segments a row may be split over: a row's programs wait on each other, so must be resident.
MAX_SPLITS = 32
# Per-lane running max floor: a -inf logit gives exp(-inf) = 0, not the NaN of -inf - (-inf).
_FLOOR = float(jnp.finfo(jnp.float32).min)


def _index(i):
  """An index in JAX's default integer type, as the other dimensions' static slices get."""
  return jnp.asarray(i, jax.dtypes.canonicalize_dtype(jnp.int64))


def _chunk(x_ref, start, block_cols, num_classes, masked, eviction_policy=None):
  """Loads ``x[:, start:start + block_cols]`` as float32; columns past ``C`` read as -inf."""
  start = _index(start)
  view = x_ref.at[:, pl.ds(start, block_cols)]
  cols = start + jax.lax.broadcasted_iota(jnp.int32, (1, block_cols), 1)
  mask = cols < num_classes if masked else None
  other = -jnp.inf if masked else None
  x = plgpu.load(view, mask=mask, other=other, eviction_policy=eviction_policy)
  return x.astype(jnp.float32), cols


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


def _row_lse(x_ref, *, rows, block_cols, num_classes, lanes, eviction_policy):
  """Each row's ``lse``, online: per chunk ``s' = s e^(m - m') + sum_c e^(x_c - m')``; per
  lane (``lanes``) ``s' = s e^(-d) + 1`` if ``d = x - m > 0`` else ``s + e^d``, combined last."""

  def load(start, masked):
    x, _ = _chunk(x_ref, start, block_cols, num_classes, masked, eviction_policy)
    return x

  if lanes:

    def step(start, carry, masked):
      m, s = carry
      x = load(start, masked)
      d = x - m
      e = jnp.exp(-jnp.abs(d))
      return jnp.maximum(m, x), jnp.where(d > 0, s * e + 1.0, s + e)

    shape = (rows, block_cols)
    m, s = _chunk_loop(
      num_classes, block_cols, step, (jnp.full(shape, _FLOOR), jnp.zeros(shape, jnp.float32))
    )
    top = jnp.max(m, axis=1)
    return top + jnp.log(jnp.sum(s * jnp.exp(m - top[:, None]), axis=1))

  def step(start, carry, masked):
    m, s = carry
    x = load(start, masked)
    m_new = jnp.maximum(m, jnp.max(x, axis=1))
    shift = jnp.where(m_new == -jnp.inf, 0.0, m_new)  # all -inf so far: keep exp finite
    return m_new, s * jnp.exp(m - shift) + jnp.sum(jnp.exp(x - shift[:, None]), axis=1)

  init = (jnp.full((rows,), -jnp.inf, jnp.float32), jnp.zeros((rows,), jnp.float32))
  m, s = _chunk_loop(num_classes, block_cols, step, init)
  return m + jnp.log(s)


def _forward_kernel(x_ref, lse_ref, *, num_classes, config):
  lse_ref[...] = _row_lse(
    x_ref,
    rows=lse_ref.shape[0],
    block_cols=config["block_cols"],
    num_classes=num_classes,
    lanes=config["lanes"],
    eviction_policy=None,
  )


def _gradient_kernel(x_ref, y_ref, scale_ref, lse_ref, g_ref, *, num_classes, config):
  block_cols = config["block_cols"]
  y = y_ref[...]
  scale = scale_ref[...]
  lse = _row_lse(
    x_ref,
    rows=y.shape[0],
    block_cols=block_cols,
    num_classes=num_classes,
    lanes=config["lanes"],
    eviction_policy="evict_last" if config["evict"] else None,
  )
  lse_ref[...] = lse

  def write(start, carry, masked):
    start = _index(start)
    x, cols = _chunk(
      x_ref, start, block_cols, num_classes, masked, "evict_first" if config["evict"] else None
    )
    g = (jnp.exp(x - lse[:, None]) - jnp.where(cols == y[:, None], 1.0, 0.0)) * scale[:, None]
    g = jnp.where(scale[:, None] == 0, 0.0, g)  # a dropped row: 0 even where its logits are not
    view = g_ref.at[:, pl.ds(start, block_cols)]
    plgpu.store(view, g.astype(g_ref.dtype), mask=cols < num_classes if masked else None)
    return carry

  _chunk_loop(num_classes, block_cols, write, 0, reverse=config["reverse"])


def _params(config, n, c):
  config = {**DEFAULT_CONFIG, **dict(config or {})}
  if n % config["block_rows"]:
    config["block_rows"] = 1
  config["block_cols"] = min(config["block_cols"], pl.next_power_of_2(c))
  compiler = plgpu.CompilerParams(num_warps=config["num_warps"], num_stages=config["num_stages"])
  return config, compiler


def _target(logits, labels):
  return jnp.take_along_axis(logits, labels[:, None], axis=1)[:, 0].astype(jnp.float32)


def forward(logits, labels, *, config=None, interpret=False):
  """Per-row ``(loss, lse)`` in float32, reading the logits once (the target is a gather)."""
  n, c = logits.shape
  config, compiler = _params(config, n, c)
  rows = config["block_rows"]
  lse = pl.pallas_call(
    functools.partial(_forward_kernel, num_classes=c, config=config),
    out_shape=jax.ShapeDtypeStruct((n,), jnp.float32),
    grid=(n // rows,),
    in_specs=[pl.BlockSpec((rows, c), lambda i: (i, 0))],
    out_specs=pl.BlockSpec((rows,), lambda i: (i,)),
    compiler_params=compiler,
    interpret=interpret,
    name="xentax_sparse_ce_forward",
  )(logits)
  return lse - _target(logits, labels), lse


def gradient(logits, labels, scale, *, config=None, interpret=False):
  """Per-row loss (float32) and ``scale[:, None] * (softmax - onehot)`` in the logits' dtype."""
  n, c = logits.shape
  config, compiler = _params(config, n, c)
  rows = config["block_rows"]
  row = pl.BlockSpec((rows,), lambda i: (i,))
  full = pl.BlockSpec((rows, c), lambda i: (i, 0))
  lse, grad = pl.pallas_call(
    functools.partial(_gradient_kernel, num_classes=c, config=config),
    out_shape=(
      jax.ShapeDtypeStruct((n,), jnp.float32),
      jax.ShapeDtypeStruct((n, c), logits.dtype),
    ),
    grid=(n // rows,),
    in_specs=[full, row, row],
    out_specs=(row, full),
    compiler_params=compiler,
    interpret=interpret,
    name="xentax_sparse_ce_gradient",
  )(logits, labels, scale.astype(jnp.float32))
  return lse - _target(logits, labels), grad


def _split_gradient_kernel(
  x_ref, y_ref, scale_ref, count_in_ref, lse_ref, g_ref, m_ref, s_ref, count_ref, *, segment
):
  """One program per ``segment`` columns of a row: publishes ``(m_k, s_k)``, counts itself in
  with an atomic, waits for the row's other programs, and writes its gradient segment from the
  exponentials it holds. Relies on blocks starting in grid order (CUDA's practice, no promise).
  """
  del count_in_ref  # aliased to count_ref
  num_classes = x_ref.shape[1]
  splits = pl.cdiv(num_classes, segment)
  slots = pl.next_power_of_2(splits)  # partials per row, padded to a power of two
  pid = _index(pl.program_id(0))
  row, part = pid // splits, pid % splits
  masked = num_classes % segment != 0
  x, cols = _chunk(x_ref, part * segment, segment, num_classes, masked)
  m = jnp.max(x, axis=1)
  shift = jnp.where(m == -jnp.inf, 0.0, m)
  e = jnp.exp(x - shift[:, None])
  total = jnp.sum(e, axis=1)
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
    top_shift = jnp.where(top == -jnp.inf, 0.0, top)
    lse = top + jnp.log(jnp.sum(ss * jnp.exp(ms - top_shift)))
  lse_ref[...] = jnp.full(lse_ref.shape, lse)
  p = e * jnp.exp(shift - lse)[:, None]
  scale = scale_ref[...][:, None]
  g = jnp.where(scale == 0, 0.0, (p - jnp.where(cols == y_ref[...][:, None], 1.0, 0.0)) * scale)
  view = g_ref.at[:, pl.ds(part * segment, segment)]
  plgpu.store(view, g.astype(g_ref.dtype), mask=cols < num_classes if masked else None)


def split_gradient(logits, labels, scale, *, segment=8192, num_warps=4, interpret=False):
  """``gradient`` with each row split over ``ceil(C / segment)`` programs (a power of two):
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
  lse, grad, _, _, _ = pl.pallas_call(
    functools.partial(_split_gradient_kernel, segment=segment),
    out_shape=(
      jax.ShapeDtypeStruct((n,), jnp.float32),
      jax.ShapeDtypeStruct((n, c), logits.dtype),
      jax.ShapeDtypeStruct((n * slots,), jnp.float32),
      jax.ShapeDtypeStruct((n * slots,), jnp.float32),
      jax.ShapeDtypeStruct((n,), jnp.int32),
    ),
    grid=(n * splits,),
    in_specs=[full, row, row, count],
    out_specs=(row, full, partials, partials, count),
    input_output_aliases={3: 4},
    compiler_params=plgpu.CompilerParams(num_warps=num_warps, num_stages=1),
    interpret=interpret,
    name="xentax_sparse_ce_split_gradient",
  )(logits, labels, scale.astype(jnp.float32), jnp.zeros((n,), jnp.int32))
  return lse - _target(logits, labels), grad


def _row_weights(fn_name, labels, num_classes, where, ignore_index):
  """Safe labels and row weights: 1 kept, 0 dropped, NaN for a (traced) bad label."""
  labels, shown = _validate.integer_labels(fn_name, labels, ignore_index)
  prepared = _sparse_terms.prepare_labels(
    fn_name,
    labels,
    num_classes=num_classes,
    class_weights=None,
    ignore_index=ignore_index,
    where=where,
    dtype=jnp.float32,
    shown=shown,
  )
  weights = jnp.where(prepared.bad, jnp.nan, prepared.valid.astype(jnp.float32))
  return prepared.labels.astype(jnp.int32), weights


def _gradient(logits, labels, scale, config, interpret):
  config = dict(config)
  if config["segment"] and pl.cdiv(logits.shape[1], config["segment"]) <= MAX_SPLITS:
    return split_gradient(
      logits,
      labels,
      scale,
      segment=config["segment"],
      num_warps=config["num_warps"],
      interpret=interpret,
    )
  return gradient(logits, labels, scale, config=config, interpret=interpret)


def _weighted(loss, weights):
  """``w l``, with a dropped row (``w = 0``) exactly 0 whatever its loss."""
  return jnp.where(weights == 0, 0.0, weights * loss)


def _denominator(weights, reduction):
  """The kept rows' count under ``"mean"`` (at least 1: an all-dropped batch gives 0)."""
  return jnp.maximum(jnp.sum(weights), 1.0) if reduction == "mean" else jnp.float32(1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _reduced(logits, labels, weights, reduction, config, interpret):
  loss, _ = forward(logits, labels, config=config, interpret=interpret)
  return jnp.sum(_weighted(loss, weights)) / _denominator(weights, reduction)


def _reduced_fwd(logits, labels, weights, reduction, config, interpret):
  denom = _denominator(weights, reduction)
  loss, grad = _gradient(logits, labels, weights / denom, config, interpret)
  value = jnp.sum(_weighted(loss, weights)) / denom
  return value, (grad, labels, weights)


def _reduced_bwd(reduction, config, interpret, res, g):
  grad, labels, weights = res
  return (g.astype(grad.dtype) * grad, None, jnp.zeros_like(weights))


_reduced.defvjp(_reduced_fwd, _reduced_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _rows(logits, labels, weights, config, interpret):
  loss, _ = forward(logits, labels, config=config, interpret=interpret)
  return _weighted(loss, weights)


def _rows_fwd(logits, labels, weights, config, interpret):
  return _rows(logits, labels, weights, config, interpret), (logits, labels, weights)


def _rows_bwd(config, interpret, res, g):
  logits, labels, weights = res
  _, grad = _gradient(logits, labels, g * weights, config, interpret)
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

  ``reduction``: ``"mean"`` over kept rows (0 when none is kept), ``"sum"`` or ``"none"``;
  labels, ``where`` and ``ignore_index`` as in the library's losses. ``config``: keys of
  ``DEFAULT_CONFIG``; ``interpret=True`` runs Pallas's interpreter (any backend).
  """
  if logits.ndim != 2:
    raise ValueError(f"sparse_cross_entropy: logits must be [N, C], got shape {logits.shape}.")
  if jnp.shape(labels) != logits.shape[:1]:
    raise ValueError(
      f"sparse_cross_entropy: labels must be [N] = {logits.shape[:1]}, got {jnp.shape(labels)}."
    )
  if reduction not in ("mean", "sum", "none"):
    raise ValueError(f"sparse_cross_entropy: reduction must be mean, sum or none; {reduction!r}.")
  if logits.shape[1] == 0:
    raise ValueError("sparse_cross_entropy: logits have 0 classes; a softmax needs C >= 1.")
  safe, weights = _row_weights("sparse_cross_entropy", labels, logits.shape[1], where, ignore_index)
  if logits.shape[0] == 0:  # no rows: 0 (an empty array for "none"), gradient of zeros
    rows = jnp.sum(logits.astype(jnp.float32), axis=1)
    return rows if reduction == "none" else jnp.sum(rows)
  config = tuple(sorted({**DEFAULT_CONFIG, **(config or {})}.items()))  # hashable: static
  if reduction == "none":
    return _rows(logits, safe, weights, config, interpret)
  return _reduced(logits, safe, weights, reduction, config, interpret)
