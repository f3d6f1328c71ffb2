"""Shared machinery for every xentax loss: dtypes, validation, masking and reduction.

Design notes:
  * Every loss computes in float32 at least (float64 stays float64). The compute dtype is
    taken from the main input only, so a NumPy float64 ``class_weights`` does not promote a
    float32 loss to float64 when x64 is enabled.
  * Types, option domains and integer labels are validated in :mod:`._validate`.
  * Bad *values* (labels out of range, probabilities outside [0, 1]) are found in one place,
    :func:`check_values`: on concrete inputs it raises ``ValueError`` naming the value and
    its position; on traced inputs it adds a ``checkify.debug_check`` (a no-op unless the
    loss runs under :func:`xentax.checked`), and the caller turns the offending examples
    into NaN so a wrong value never looks plausible.
  * Masking (``where``, ``ignore_index``) and reduction live in :func:`reduce_losses`, so
    every loss has the same "mean over what is left, 0 if nothing is left" rule. An empty
    batch (a zero-size example axis) takes the same path: 0 for every scalar reduction,
    an empty array for ``"none"``, zero gradients; the value checks have nothing to report
    there and record no check.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.experimental import checkify

REDUCTIONS = ("none", "sum", "mean", "sum_over_batch_size")


def compute_dtype(x) -> jnp.dtype:
  """float64 for float64 input, float32 for everything else (bf16, f16, f32, ints)."""
  dtype = jnp.result_type(x)
  if dtype == jnp.float64:
    return jnp.dtype(jnp.float64)
  return jnp.dtype(jnp.float32)


def check_reduction(fn_name: str, reduction: str) -> None:
  """``ValueError`` unless ``reduction`` is one of :data:`REDUCTIONS`."""
  if reduction not in REDUCTIONS:
    raise ValueError(
      f"{fn_name}: reduction={reduction!r} is not supported; choose one of {REDUCTIONS}."
    )


def check_same_shape(fn_name: str, name_a: str, a, name_b: str, b) -> None:
  """``ValueError`` naming both arguments unless ``a`` and ``b`` have the same shape."""
  if jnp.shape(a) != jnp.shape(b):
    raise ValueError(
      f"{fn_name}: {name_a} has shape {jnp.shape(a)} but {name_b} has shape "
      f"{jnp.shape(b)}; they must be equal."
    )


def normalize_axis(fn_name: str, axis: int, ndim: int) -> int:
  """``axis`` in ``[0, ndim)``; ``ValueError`` for a scalar input or an axis out of range."""
  if ndim == 0:
    raise ValueError(f"{fn_name}: logits/probs must have a class axis, got a scalar.")
  if not -ndim <= axis < ndim:
    raise ValueError(f"{fn_name}: axis={axis} is out of range for an array with {ndim} dims.")
  return axis % ndim


def check_example_shape(fn_name: str, scores_shape, axis: int, labels) -> tuple[int, ...]:
  """Sparse losses: labels have the scores' shape with the class axis removed."""
  expected = tuple(scores_shape[:axis]) + tuple(scores_shape[axis + 1 :])
  if jnp.shape(labels) != expected:
    raise ValueError(
      f"{fn_name}: labels have shape {jnp.shape(labels)} but scores of shape "
      f"{tuple(scores_shape)} with axis={axis} need labels of shape {expected} "
      "(the scores' shape without the class axis)."
    )
  return expected


def broadcast_mask(fn_name: str, where, shape) -> jax.Array:
  """Return ``where`` as a boolean mask of ``shape`` (all True when ``where`` is None)."""
  if where is None:
    return jnp.ones(shape, dtype=bool)
  where = jnp.asarray(where)
  if where.dtype != jnp.bool_:
    raise TypeError(f"{fn_name}: where must be a boolean mask, got dtype {where.dtype}.")
  try:
    return jnp.broadcast_to(where, shape)
  except ValueError:
    raise ValueError(
      f"{fn_name}: where has shape {where.shape}, which does not broadcast to the "
      f"per-example shape {tuple(shape)}."
    ) from None


def broadcast_param(fn_name: str, arg_name: str, value, shape, dtype) -> jax.Array:
  """``value`` in ``dtype`` broadcast to ``shape``, or a ``ValueError`` naming ``arg_name``."""
  value = jnp.asarray(value, dtype=dtype)
  try:
    return jnp.broadcast_to(value, shape)
  except ValueError:
    raise ValueError(
      f"{fn_name}: {arg_name} has shape {value.shape}, which does not broadcast to {tuple(shape)}."
    ) from None


def class_weight_vector(fn_name: str, class_weights, num_classes: int, dtype) -> jax.Array:
  """``class_weights`` as a ``[num_classes]`` array of ``dtype``, else ``ValueError``."""
  class_weights = jnp.asarray(class_weights, dtype=dtype)
  if class_weights.shape != (num_classes,):
    raise ValueError(
      f"{fn_name}: class_weights has shape {class_weights.shape}; it must be "
      f"({num_classes},), one weight per class."
    )
  return class_weights


def is_concrete(*xs) -> bool:
  """True when no argument is a tracer (values can be checked eagerly)."""
  return not any(isinstance(x, jax.core.Tracer) for x in xs)


def check_values(fn_name: str, what: str, values, bad) -> None:
  """Report entries of ``values`` flagged by ``bad``.

  Raises ``ValueError`` when ``bad`` is concrete, else adds a checkify check that
  :func:`xentax.checked` turns into an error (and that is free otherwise). An empty
  ``bad`` (an empty batch) has nothing to report: no check is recorded.
  """
  if jnp.size(bad) == 0:
    return
  if is_concrete(values, bad):
    bad_np = np.asarray(bad)
    if bad_np.any():
      position = tuple(int(i) for i in np.argwhere(bad_np)[0])
      value = np.asarray(values)[position]
      count = int(bad_np.sum())
      raise ValueError(
        f"{fn_name}: {what}; found {value} at position {position} "
        f"({count} bad entr{'y' if count == 1 else 'ies'} in all)."
      )
    return
  flat_bad = jnp.ravel(bad)
  index = jnp.argmax(flat_bad)
  checkify.debug_check(
    jnp.logical_not(jnp.any(flat_bad)),
    f"{fn_name}: {what}; found {{value}} at flat position {{index}}.",
    value=jnp.ravel(values)[index],
    index=index,
  )


def check_probabilities(fn_name: str, p, valid, axis: int) -> jax.Array:
  """Find (and report, as :func:`check_values` does) kept probabilities outside [0, 1].

  A NaN probability is not flagged here (the comparisons are False): it stays NaN.

  Args:
    p: ``[..., C]`` probabilities, class axis last.
    valid: ``[...]`` the kept examples; dropped rows are not checked.
    axis: the class axis of the caller's input, so an error names the position there.

  Returns:
    ``[..., C]`` boolean, True where a kept probability is outside [0, 1].
  """
  bad = ((p < 0) | (p > 1)) & valid[..., None]
  what = "probs must lie in [0, 1]"
  check_values(fn_name, what, jnp.moveaxis(p, -1, axis), jnp.moveaxis(bad, -1, axis))
  return bad


def nan_where(bad, dtype) -> jax.Array:
  """NaN where ``bad``, else 0: added to an input so bad examples give NaN loss and grad."""
  return jnp.where(bad, jnp.array(jnp.nan, dtype), jnp.array(0, dtype))


def is_static_zero(x) -> bool:
  """True for a Python 0 (an option left at its default): its term is skipped entirely.

  A traced or array zero is not static, so changing it does not recompile.
  """
  return isinstance(x, int | float) and x == 0


def class_weight_sum(class_weights, num_classes: int, dtype) -> jax.Array:
  """``sum_c w_c``: ``C`` when unweighted."""
  if class_weights is None:
    return jnp.asarray(num_classes, dtype)
  return jnp.sum(class_weights)


def safe_mul(coef, x) -> jax.Array:
  """``coef * x`` with ``0 * inf = 0`` (the ``0 * log 0 = 0`` convention).

  Only the infinite entries under a zero coefficient are replaced, so the gradient with
  respect to ``coef`` stays exact wherever ``x`` is finite.
  """
  return coef * jnp.where((coef == 0) & jnp.isinf(x), jnp.zeros_like(x), x)


def logsumexp(x, axis: int = -1) -> jax.Array:
  """log(sum(exp(x))) along ``axis``; ``-inf`` (with zero gradient) for an all ``-inf`` row."""
  return lse_keeping_exp(jnp.moveaxis(x, axis, -1))[0]


# XLA:CPU reduces a row longer than this to a per-row result several times slower per
# element than a shorter one; longer rows are reduced in pieces of at most this length.
CPU_ROW_PIECE = 32768


def row_pieces(num_classes: int) -> int:
  """How many equal pieces to reduce a row of ``num_classes`` in (1: in one go).

  More than one only on the CPU backend, for rows longer than :data:`CPU_ROW_PIECE` whose
  length has a divisor that brings a piece under it.
  """
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
  pieces of :func:`split_rows` when ``P > 1``.

  The pieces' partial results are combined after an optimization barrier, so that XLA
  cannot merge the two reductions back into one long-row reduction.
  """
  if pieces == 1:
    return reduce(values, axis=-1)
  return reduce(lax.optimization_barrier(reduce(values, axis=-1)), axis=-1)


def row_max(z, pieces: int) -> jax.Array:
  """``[...]``: each row's max, for rows ``z`` (or their pieces, :func:`split_rows`)."""
  return lax.stop_gradient(row_reduce(z, pieces, jnp.max))


def fast_lse(z, m, pieces: int) -> jax.Array:
  """``m + log(sum(exp(z - m)))`` per row of ``z`` (or of its pieces), ``m`` the row max.

  Guard-free: not finite only for a NaN or infinite max, where the caller takes its
  guarded formula.
  """
  return m + jnp.log(row_reduce(jnp.exp(z - m[row_axes(pieces)]), pieces))


# Logits with at most this many entries are exponentiated once under differentiation and
# the exponentials kept for the backward pass, instead of being recomputed there: keeping
# them is faster while the working set (logits, exponentials, ``d logits``, and dense
# targets) stays in cache, and the ``exp`` pass is then most of the cost. The dense loss
# holds more of these arrays, so its limit is lower (see
# ``experiments/benchmarks/pass_costs.py``). Larger logits recompute, and reverse mode then
# saves no [..., C] residual.
SPARSE_KEEP_EXP_MAX_ENTRIES = 2**22
DENSE_KEEP_EXP_MAX_ENTRIES = 2**21


def keeps_exp(x, t_x, max_entries: int) -> bool:
  """Whether a loss's jvp rule keeps the exponentials of logits ``x`` (see above): a logit
  tangent, logits in their compute dtype (bf16 logits would gain a float32 ``[..., C]``
  residual) and at most ``max_entries`` entries."""
  return not is_symbolic_zero(t_x) and x.dtype == compute_dtype(x) and x.size <= max_entries


def lse_keeping_exp(x):
  """``(lse, exp(x - m), sum exp(x - m))`` per row of ``x [..., C]``, ``m`` the row max
  (zero where not finite): the log-sum-exp of :func:`logsumexp`, with its exponentials."""
  # Subtract the max so exp cannot overflow; stop_gradient since the result does not
  # depend on it and its gradient would only add cancelling terms.
  m = lax.stop_gradient(jnp.max(x, axis=-1))
  m = jnp.where(jnp.isfinite(m), m, jnp.zeros_like(m))
  exp_shifted = jnp.exp(x - m[..., None])
  exp_sum = jnp.sum(exp_shifted, axis=-1)
  # Guard log(0): its gradient 1/0 would otherwise turn into NaN for all -inf rows. Test
  # `s == 0`, not `s > 0`: a NaN logit makes `s` NaN, which must stay NaN, not become -inf.
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


def is_symbolic_zero(t) -> bool:
  """A ``custom_jvp`` tangent that is known to be zero (or absent)."""
  return t is None or isinstance(t, jax.custom_derivatives.SymbolicZero)


def instantiate_tangent(primal, tangent):
  """``tangent`` as an array: zeros of the primal's shape for a symbolic zero."""
  if primal is None:
    return None
  return jnp.zeros_like(primal) if is_symbolic_zero(tangent) else tangent


def clamped_log(p) -> jax.Array:
  """``max(log(p), -100)`` as torch's binary_cross_entropy does, with a finite gradient."""
  # `~(p <= 0)` rather than `p > 0` so a NaN input stays NaN instead of becoming -100.
  positive = ~(p <= 0)
  # Double where: log is never evaluated at 0, so its gradient cannot be inf * 0.
  log_p = jnp.log(jnp.where(positive, p, jnp.ones_like(p)))
  return jnp.where(positive, jnp.maximum(log_p, -100.0), jnp.full_like(p, -100.0))


def clamped_log1m(p) -> jax.Array:
  """``max(log(1 - p), -100)`` computed with log1p for accuracy at small p."""
  below_one = ~(p >= 1)
  log_1mp = jnp.log1p(-jnp.where(below_one, p, jnp.zeros_like(p)))
  return jnp.where(below_one, jnp.maximum(log_1mp, -100.0), jnp.full_like(p, -100.0))


def reduce_losses(
  losses, *, valid, denominator=None, sample_weight=None, reduction: str, axis_name=None
) -> jax.Array:
  """Weight, zero the invalid entries and reduce.

  With per-example losses ``l_n``, sample weights ``s_n`` (1 when ``None``), the
  ``"mean"`` denominator weights ``d_n`` (``w[y_n]`` for class-weighted sparse losses, else
  1) and ``K`` the kept examples:

  * ``"none"``: ``s_n l_n`` (0 where dropped);
  * ``"sum"``: ``sum_K s_n l_n``;
  * ``"mean"``: ``sum_K s_n l_n / sum_K s_n d_n``, the weighted mean (torch's convention
    for class weights; Keras's ``"mean_with_sample_weight"``);
  * ``"sum_over_batch_size"``: ``sum_K s_n l_n / |K|``, Keras's default reduction (and
    torch's ``(loss(reduction="none") * w).mean()``): weights do not enter the denominator.

  A zero weight drops its example's value even where ``l_n`` is infinite (``0 * inf = 0``).

  Args:
    losses: per-example losses, already multiplied by any class weights.
    valid: boolean mask of the same shape; False entries leave numerator and denominator.
    denominator: per-example contribution to the ``"mean"`` denominator (the target
      class weight ``w[y_n]``); ``None`` counts valid examples.
    sample_weight: ``None`` or per-example weights of the losses' shape, already checked
      by :func:`xentax.losses._validate.sample_weights`.
    reduction: one of :data:`REDUCTIONS`.
    axis_name: inside ``shard_map``, the mesh axis (or axes) the examples are sharded
      over; sums and the mean's denominator are then global (one all-reduce).

  Returns:
    The reduced loss. A mean with nothing left (or zero total weight) is 0 with zero
    gradient, never NaN.
  """
  zero = jnp.zeros_like(losses)
  if sample_weight is not None:
    losses = safe_mul(sample_weight, losses)
  losses = jnp.where(valid, losses, zero)
  if reduction == "none":
    return losses
  total = jnp.sum(losses)
  if reduction == "sum":
    return total if axis_name is None else lax.psum(total, axis_name)
  if reduction == "sum_over_batch_size" or (denominator is None and sample_weight is None):
    denom = jnp.sum(valid, dtype=losses.dtype)
  else:
    if denominator is None:
      denominator = sample_weight
    elif sample_weight is not None:
      denominator = sample_weight * denominator
    denom = jnp.sum(jnp.where(valid, denominator, zero))
  if axis_name is not None:
    total, denom = lax.psum(jnp.stack([total, denom]), axis_name)
  return mean_of(total, denom)


def mean_of(total, denom) -> jax.Array:
  """``total / denom``, and 0 with zero gradient where ``denom`` is 0 (nothing kept)."""
  nonzero = denom != 0
  return jnp.where(nonzero, total / jnp.where(nonzero, denom, jnp.ones_like(denom)), 0.0)
