"""Dense targets (one-hot or soft distributions): the entry frame and the coefficients ``q``.

Design rules:
  * Nothing selects on ``[..., C]`` arrays (a select inside a fused row reduction splits the
    loop on XLA:CPU): dropped rows are masked per example, bad targets NaN by arithmetic.
  * ``q`` is never written to memory: each pass recomputes it from :class:`Targets`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import _common, _reduce, _rows, _validate


def _any(flags):
  return None if flags is None else jnp.any(flags)


class Targets(NamedTuple):
  """The targets of a dense loss from logits and the options that turn them into ``q``."""

  t: jax.Array  # [..., C], as given (class axis last, compute dtype)
  label_smoothing: jax.Array | None  # scalar, None when off
  class_weights: jax.Array | None  # [C]
  nan: jax.Array | None  # scalar: NaN when a traced option is outside its domain, else 0


def coefficients(
  targets: Targets, num_classes: int | None = None, *, check_range: bool = True
) -> jax.Array:
  """``q = ((1 - e) t + e / C) w``, NaN in every row where a target lies outside [0, 1].

  ``num_classes``: ``C`` for rows in pieces; ``check_range=False``: no per-entry check (the
  caller uses :func:`range_nan`).
  """
  t = targets.t
  num_classes = t.shape[-1] if num_classes is None else num_classes
  q = t
  if check_range:
    # t - t^2 < 0 exactly outside [0, 1]: `r - r` is 0 or NaN, with no compare or constant
    # (a broadcast XLA would write out).
    root = lax.stop_gradient(jnp.sqrt(t - t * t))
    q = t + (root - root)
  if targets.label_smoothing is not None:
    eps = targets.label_smoothing
    q = (1 - eps) * q + eps / num_classes
  if targets.class_weights is not None:
    q = q * targets.class_weights
  if targets.nan is not None:
    q = q + targets.nan
  return q


class LogitsInputs(NamedTuple):
  """A dense loss's inputs after the entry frame (:func:`prepare_logits`)."""

  logits: jax.Array  # [..., C], class axis last, compute dtype, before any softcap
  targets: Targets
  valid: jax.Array | None  # [...], None when every example is kept
  sample_weight: jax.Array | None  # [...]

  def option(self, value):
    """A float option as an array of the compute dtype; None and a static 0 give None."""
    skip = value is None or _common.is_static_zero(value)
    return None if skip else jnp.asarray(value, self.logits.dtype)

  def reduce(self, losses, reduction: str) -> jax.Array:
    """Close the entry frame: the per-example ``losses`` masked, weighted and reduced."""
    valid = jnp.ones(losses.shape, bool) if self.valid is None else self.valid
    return _reduce.reduce_losses(
      losses, valid=valid, sample_weight=self.sample_weight, reduction=reduction
    )


def prepare_logits(
  fn_name,
  logits,
  targets,
  *,
  axis,
  class_weights,
  label_smoothing,
  where,
  sample_weight,
  reduction,
  softcap=None,
  name="logits",
  **options,
) -> LogitsInputs:
  """Validate a dense loss's inputs and move the class axis last, guard-free.

  ``options``: further scalar options to check (``z_loss``, ``gamma``...); ``name``: the
  first input's name in errors.
  """
  _reduce.check_reduction(fn_name, reduction)
  logits = _validate.float_array(fn_name, name, logits)
  targets = _validate.numeric_array(fn_name, "targets", targets)
  _validate.check_same_shape(fn_name, name, logits, "targets", targets)
  axis = _validate.normalize_axis(fn_name, axis, logits.ndim)
  _validate.check_num_classes(fn_name, logits.shape[axis])
  option_bad = _validate.options(
    fn_name, label_smoothing=label_smoothing, softcap=softcap, **options
  )
  dtype = _common.compute_dtype(logits)
  example_shape = logits.shape[:axis] + logits.shape[axis + 1 :]
  valid = None if where is None else _validate.broadcast_mask(fn_name, where, example_shape)
  bad = (targets < 0) | (targets > 1)
  if valid is not None:
    bad = bad & jnp.expand_dims(valid, axis)
  _validate.check_values(fn_name, "targets must lie in [0, 1]", targets, bad)
  sample_weight = _validate.sample_weights(fn_name, sample_weight, example_shape, dtype)

  x = jnp.moveaxis(logits, axis, -1).astype(dtype)
  t = jnp.moveaxis(targets, axis, -1).astype(dtype)
  num_classes = x.shape[-1]
  eps = None
  if not _common.is_static_zero(label_smoothing):
    eps = jnp.asarray(label_smoothing, dtype)
  if class_weights is not None:
    class_weights = _validate.to_array(fn_name, "class_weights", class_weights)
    class_weights = _validate.class_weight_vector(fn_name, class_weights, num_classes, dtype)
    option_bad = _validate.any_bad(
      option_bad, _any(_validate.option(fn_name, "class_weights", class_weights))
    )
  # A traced option outside its domain: every row NaN, loss and gradient.
  nan = None if option_bad is None else _common.nan_where(option_bad, dtype)
  return LogitsInputs(x, Targets(t, eps, class_weights, nan), valid, sample_weight)


def range_nan(pieces: int, t) -> jax.Array:
  """``[...]``: 0, or NaN for a row holding a target outside [0, 1] (or, on short rows, a NaN).

  ``sqrt(min(low, 1 - high))`` from two plain row reductions, no select. XLA:CPU's fused
  ``min``/``max`` drop a NaN on long rows: a NaN target reaches the loss through ``q``.
  """
  tp = _rows.split_rows(t, pieces)
  low = _rows.row_reduce(tp, pieces, jnp.min)
  high = _rows.row_reduce(tp, pieces, jnp.max)
  # No gradient: at one-hot targets the sqrt's derivative is infinite.
  root = lax.stop_gradient(jnp.sqrt(jnp.minimum(low, 1 - high)))
  return root - root
