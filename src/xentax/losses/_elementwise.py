"""The elementwise (binary) losses' frame: checked inputs, a fast and an exact sum, reduction.

Design rules:
  * Options stay in their own broadcastable shapes: XLA:CPU fuses a small operand's
    broadcast into the fused sum, but not a full-size array built outside it; full-size
    masks are built inside the exact formula's ``lax.cond`` branch.
  * A reduced loss sums the fast (arithmetic-only) formula and recomputes the sum with the
    exact (guarded) one only when it is not finite; ``"none"`` and every gradient use the
    exact formula's closed forms (:func:`._engine.closed_form`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import _common, _engine, _reduce, _validate


class Prepared(NamedTuple):
  """A binary loss's checked inputs, none broadcast to the scores' shape."""

  scores: jax.Array  # compute dtype, as given (dropped entries not replaced)
  labels: jax.Array  # compute dtype, as given
  valid: jax.Array | None  # bool, broadcastable to the scores' shape; None: all kept
  params: dict  # name -> the elementwise option, compute dtype (or None)
  param_bad: tuple  # bool flags, broadcastable: a traced elementwise option is bad
  scalar_bad: jax.Array | None  # scalar bool: a traced scalar option is bad
  any_bad: jax.Array | None  # scalar bool: any traced option (sample weights too) is bad
  sample_weight: jax.Array | None  # broadcastable; NaN where a traced weight is bad


def prepare(
  fn_name, scores, labels, *, where, reduction, params=None, scalars=None, sample_weight=None
) -> Prepared:
  """Checks the reduction, shapes, label range, option domains and sample weights: a
  concrete bad value raises ``ValueError``, a traced one comes back as a flag (NaN later)."""
  _reduce.check_reduction(fn_name, reduction)
  scores = _validate.float_array(fn_name, "logits/probs", scores)
  labels = _validate.numeric_array(fn_name, "labels", labels)
  _validate.check_same_shape(fn_name, "logits/probs", scores, "labels", labels)
  dtype = _common.compute_dtype(scores)
  valid = None
  if where is not None:
    _validate.broadcast_mask(fn_name, where, scores.shape)  # type and shape checks
    valid = jnp.asarray(where)
  bad = (labels < 0) | (labels > 1)
  _validate.check_values(fn_name, "labels must lie in [0, 1]", labels, _and(bad, valid))
  small, any_bad = {}, None
  param_bad: tuple = ()
  for name, value in (params or {}).items():
    if value is not None:
      value = _validate.to_array(fn_name, name, value)
      flag = _validate.option(fn_name, name, value)
      _validate.broadcast_param(fn_name, name, value, scores.shape, dtype)  # shape check
      value = jnp.asarray(value, dtype)
      if flag is not None:
        any_bad = _validate.any_bad(any_bad, jnp.any(flag))
        param_bad = (*param_bad, flag)
    small[name] = value
  scalar_bad = _validate.options(fn_name, **(scalars or {}))
  any_bad = _validate.any_bad(any_bad, scalar_bad)
  if sample_weight is not None:
    shape = jnp.shape(_validate.to_array(fn_name, "sample_weight", sample_weight))
    if not _broadcasts(shape, scores.shape):
      shape = scores.shape  # sample_weights raises its error naming the shapes
    sample_weight = _validate.sample_weights(fn_name, sample_weight, shape, dtype)
    if _validate.is_traced(sample_weight):
      any_bad = _validate.any_bad(any_bad, jnp.any(jnp.isnan(sample_weight)))
  return Prepared(
    scores.astype(dtype),
    labels.astype(dtype),
    valid,
    small,
    param_bad,
    scalar_bad,
    any_bad,
    sample_weight,
  )


def _broadcasts(shape, target) -> bool:
  try:
    return jnp.broadcast_shapes(shape, target) == tuple(target)
  except ValueError:
    return False


def _and(bad, valid):
  return bad if valid is None else bad & valid


def exact_inputs(prepared: Prepared, x, y, *, fill, extra_bad=None):
  """The exact formula's inputs: dropped entries replaced, bad kept entries NaN."""
  valid = prepared.valid
  bad = (y < 0) | (y > 1)
  bad = _validate.any_bad(bad, extra_bad, *prepared.param_bad, prepared.scalar_bad)
  if valid is not None:
    bad = bad & valid
    x = jnp.where(valid, x, jnp.full_like(x, fill))
    y = jnp.where(valid, y, jnp.zeros_like(y))
  return x + _common.nan_where(bad, x.dtype), y


def contributions(prepared: Prepared, losses, sample_weight) -> jax.Array:
  """``s_n l_n`` on kept entries, 0 elsewhere: ``reduce_losses(..., reduction="none")``."""
  if prepared.valid is None:
    valid = jnp.ones(losses.shape, bool)
  else:
    valid = jnp.broadcast_to(prepared.valid, losses.shape)
  if sample_weight is not None:
    sample_weight = jnp.broadcast_to(sample_weight, losses.shape)
  return _reduce.reduce_losses(losses, valid=valid, sample_weight=sample_weight, reduction="none")


def fast_contributions(prepared: Prepared, losses, sample_weight) -> jax.Array:
  """The same products as :func:`contributions` with the mask folded into a multiply."""
  if sample_weight is not None:
    losses = losses * sample_weight
  if prepared.valid is not None:
    # Behind a barrier: a broadcast shared with the denominator's sum is materialised.
    losses = losses * lax.optimization_barrier(prepared.valid.astype(losses.dtype))
  return losses


def out_of_unit(v, k) -> jax.Array:
  """0 for ``v`` in [0, 1], NaN outside (or for NaN): arithmetic, so it fuses."""
  # y (1 - y) >= 0 exactly on [0, 1]; stop_gradient: sqrt'(0) is infinite (higher orders).
  return lax.stop_gradient(jnp.sqrt(jnp.minimum(v * (k.one - v), k.zero)))


class Opaque(NamedTuple):
  """The fast formulas' scalars behind an optimisation barrier: on XLA:CPU a broadcast
  constant shared by the fused sum and the gradient's loop is materialised full-size."""

  zero: jax.Array | float
  one: jax.Array | float
  eps: jax.Array | None
  gamma: jax.Array | None
  alpha: jax.Array | None


def opaque(dtype, eps=None, gamma=None, alpha=None) -> Opaque:
  return Opaque(
    *lax.optimization_barrier((jnp.zeros((), dtype), jnp.ones((), dtype), eps, gamma, alpha))
  )


def reduce_entries(
  prepared: Prepared,
  fns: tuple[Callable, Callable, Callable],
  args,
  reduction: str,
  *,
  fast_sign: int = 1,
  fast_ok: Callable | None = None,
):
  """The reduced loss: the fast sum, or the exact one where the fast one is not finite.

  ``fns = (fast, exact, grad_x)``: per-entry ``s_n l_n`` (``fast``'s times ``fast_sign``)
  and its derivative in ``args[0]``; ``fast_ok(*args)``, a scalar, must also hold for the
  fast sum to be used. ``exact`` takes ``prepared`` as a keyword (defaulting to the whole
  batch's): the guarded sum passes a block of rows of it. Denominators as
  :func:`._reduce.reduce_losses`'s.
  """
  fast, exact, grad_x = fns
  if reduction == "none":
    per_entry = lambda *args: exact(*args)  # noqa: E731  (its signature: no ``prepared``)
    return _engine.closed_form(per_entry, per_entry, grad_x)(*args)
  any_bad = prepared.any_bad

  def exact_total(*args):
    return jnp.sum(exact(*args))

  def total(*args):
    if prepared.scores.size == 0 or _engine.formulation() == "plain":
      # Empty: `fast_ok`'s min and max have no identity. "plain": the exact sum alone.
      return exact_total(*args)
    # The options go in behind a barrier: their broadcasts then belong to this sum alone.
    fast_total = jnp.sum(fast(*args[:2], *lax.optimization_barrier(args[2:])))
    if fast_sign != 1:
      fast_total = fast_sign * fast_total
    if any_bad is not None:
      fast_total = fast_total + _common.nan_where(lax.stop_gradient(any_bad), fast_total.dtype)
    use_fast = jnp.isfinite(fast_total)
    if fast_ok is not None:
      use_fast = use_fast & lax.stop_gradient(fast_ok(*args))
    guarded = lambda: _exact_total_by_rows(exact, args, prepared)  # noqa: E731
    return _engine.fast_or_guarded(fast_total, guarded, use_fast)

  summed = _engine.closed_form(total, exact_total, grad_x)(*args)
  if reduction == "sum":
    return summed
  denom = _denominator(prepared, reduction, summed.dtype)
  return _reduce.mean_of(summed, denom)


def _exact_total_by_rows(exact: Callable, args, prepared: Prepared) -> jax.Array:
  """``sum(exact(*args, prepared=prepared))`` by blocks of rows of ``args[0]``, so that the
  guard's temporaries are blocks: every argument, and the mask and bad-option flags of
  ``prepared``, with the scores' rows is sliced with them; the others are passed whole."""
  scores = args[0]
  if scores.ndim == 0:
    return jnp.sum(exact(*args, prepared=prepared))
  count = scores.shape[0]
  tree = (args, prepared.valid, prepared.param_bad)
  leaves, treedef = jax.tree.flatten(tree, is_leaf=lambda a: a is None)
  sliced = [a is not None and jnp.ndim(a) == scores.ndim and a.shape[0] == count for a in leaves]

  def row_sums(*rows):
    rows = iter(rows)
    block = [next(rows) if s else a for a, s in zip(leaves, sliced, strict=True)]
    block_args, valid, param_bad = jax.tree.unflatten(treedef, block)
    out = exact(*block_args, prepared=prepared._replace(valid=valid, param_bad=param_bad))
    return jnp.sum(out.reshape(out.shape[0], -1), axis=-1)

  rows = [a for a, s in zip(leaves, sliced, strict=True) if s]
  return jnp.sum(_engine.by_row_blocks(row_sums, (count,), *rows))


def _denominator(prepared: Prepared, reduction: str, dtype) -> jax.Array:
  """``sum_K s_n`` (``"mean"`` with sample weights) or the kept count ``|K|``, summed over
  the un-broadcast arrays times how often each entry repeats in the scores' shape."""
  s, valid = prepared.sample_weight, prepared.valid
  if reduction == "sum_over_batch_size":
    s = None
  if s is None and valid is None:
    return jnp.asarray(prepared.scores.size, dtype)
  if s is None:
    small = valid.astype(dtype)  # type: ignore[union-attr]  # valid is set: both None returned
  elif valid is None:
    small = s
  else:
    # A product, not a select, so the sum fuses; a NaN weight on a dropped entry is zeroed.
    small = valid.astype(dtype) * jnp.where(jnp.isnan(s), jnp.zeros_like(s), s)
  repeats = prepared.scores.size // max(small.size, 1)
  return jnp.sum(small) * jnp.asarray(repeats, dtype)


def smooth(y, eps, one=1):
  """Keras's binary label smoothing ``y (1 - e) + e / 2`` (``eps`` None: unchanged)."""
  return y if eps is None else y * (one - eps) + eps / 2


def scalar(value, dtype):
  """A float option as an array, or None where it is a static zero (its term is skipped)."""
  return None if _common.is_static_zero(value) else jnp.asarray(value, dtype)
