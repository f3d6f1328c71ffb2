"""Input validation for every loss: arrays, integer labels and option domains.

Design rules:
  * A wrong type or shape raises at trace time; a bad value raises ``ValueError`` naming
    it when concrete, and under ``jit`` makes the loss and gradient NaN and records a
    ``checkify.debug_check`` that :func:`xentax.checked` turns into an error.
  * Lists are accepted wherever an array is (``np.asarray``).
  * Integer labels are checked in their own dtype before JAX casts them: a value that does
    not fit becomes an out-of-range sentinel, reported with its real value.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

# name -> (domain in words, predicate that is True inside the domain; False for NaN).
DOMAINS = {
  "label_smoothing": ("in [0, 1]", lambda v: (v >= 0) & (v <= 1)),
  "alpha": ("in [0, 1]", lambda v: (v >= 0) & (v <= 1)),
  "z_loss": ("finite and >= 0", lambda v: (v >= 0) & (v < np.inf)),
  "gamma": ("finite and >= 0", lambda v: (v >= 0) & (v < np.inf)),
  "class_weights": ("finite and >= 0", lambda v: (v >= 0) & (v < np.inf)),
  "pos_weight": ("finite and >= 0", lambda v: (v >= 0) & (v < np.inf)),
  "weights": ("finite and >= 0", lambda v: (v >= 0) & (v < np.inf)),
  "sample_weight": ("finite and >= 0", lambda v: (v >= 0) & (v < np.inf)),
  "softcap": ("finite and > 0", lambda v: (v > 0) & (v < np.inf)),
  "temperature": ("finite and > 0", lambda v: (v > 0) & (v < np.inf)),
  "beta": ("in [0, 1]", lambda v: (v >= 0) & (v <= 1)),
  # Poly-1: -log p + eps (1 - p) >= (1 + eps)(1 - p) >= 0 needs eps >= -1 (Leng et al.).
  "epsilon": ("finite and >= -1", lambda v: (v >= -1) & (v < np.inf)),
  "logit_scale": ("finite and > 0", lambda v: (v > 0) & (v < np.inf)),
  "logit_bias": ("finite", lambda v: (v > -np.inf) & (v < np.inf)),
}


def is_traced(x) -> bool:
  """True for a tracer (a value known only when the computation runs)."""
  return isinstance(x, jax.core.Tracer)


def to_array(fn_name: str, arg_name: str, x):
  """``x`` unchanged if it is an array, a list/tuple as a NumPy array, else as given."""
  if isinstance(x, list | tuple):
    try:
      x = np.asarray(x)
    except ValueError as e:
      raise TypeError(
        f"{fn_name}: {arg_name} is a list that is not a rectangular array of numbers ({e}); "
        "pass an array."
      ) from None
    if x.dtype.kind not in "biuf":
      raise TypeError(
        f"{fn_name}: {arg_name} is a list of {x.dtype} values; pass an array of numbers."
      )
  return x


def _dtype(fn_name: str, arg_name: str, x):
  """``x``'s dtype, or a ``TypeError`` naming the argument for a non-array."""
  try:
    return jnp.result_type(x)
  except TypeError:
    raise TypeError(
      f"{fn_name}: {arg_name} must be an array (or a list of numbers), got {type(x).__name__}."
    ) from None


def float_array(fn_name: str, arg_name: str, x) -> jax.Array:
  """A floating-point input (logits, probabilities, hidden states) as a JAX array."""
  x = to_array(fn_name, arg_name, x)
  dtype = _dtype(fn_name, arg_name, x)
  if not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(
      f"{fn_name}: {arg_name} must be a floating-point array, got dtype {dtype}. "
      f"Cast it with {arg_name}.astype(jnp.float32)."
    )
  return jnp.asarray(x)


def numeric_array(fn_name: str, arg_name: str, x) -> jax.Array:
  """Binary labels or dense targets: any real dtype (not bool), as a JAX array."""
  x = to_array(fn_name, arg_name, x)
  dtype = _dtype(fn_name, arg_name, x)
  if not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
    raise TypeError(
      f"{fn_name}: {arg_name} must be a real-valued array in [0, 1], got dtype {dtype}."
    )
  return jnp.asarray(x)


def integer_labels(
  fn_name: str, labels, ignore_index=None, arg_name: str = "labels"
) -> tuple[jax.Array, Any]:
  """Integer class indices as a JAX array, checked before any cast (``arg_name``: in errors).

  Returns:
    ``(labels, shown)``: the labels JAX will use (at least 32 bits wide, so that class
    indices and ranges built in their dtype cannot wrap), and the values to name in error
    messages (the original NumPy values when some did not fit JAX's integer dtype).
  """
  labels, shown = _integer_labels(fn_name, labels, ignore_index, arg_name)
  return (labels.astype(jnp.int32) if labels.dtype.itemsize < 4 else labels), shown


def _integer_labels(fn_name: str, labels, ignore_index, arg_name):
  labels = to_array(fn_name, arg_name, labels)
  dtype = _dtype(fn_name, arg_name, labels)
  if not jnp.issubdtype(dtype, jnp.integer):
    dense = ", or pass one-hot/soft targets to the categorical (dense) loss instead"
    raise TypeError(
      f"{fn_name}: {arg_name} must be integer class indices, got dtype {dtype}. Cast them "
      f"with {arg_name}.astype(jnp.int32){dense if arg_name == 'labels' else ''}."
    )
  if isinstance(labels, jax.Array):
    return labels, labels
  original = np.asarray(labels)
  target = np.dtype(jax.dtypes.canonicalize_dtype(original.dtype))
  if target == original.dtype:
    return jnp.asarray(original), original
  info = np.iinfo(target)
  fits = (original >= info.min) & (original <= info.max)
  if fits.all():
    return jnp.asarray(original.astype(target)), original
  # Every value that does not fit is out of range for any class count JAX can index.
  sentinel = info.min if info.min != ignore_index and info.min < 0 else info.max
  return jnp.asarray(np.where(fits, original, sentinel).astype(target)), original


def check_num_classes(fn_name: str, num_classes: int, what: str = "the class axis") -> None:
  """``ValueError`` for zero classes: a cross-entropy needs at least one."""
  if num_classes == 0:
    raise ValueError(f"{fn_name}: {what} has size 0; a cross-entropy needs at least one class.")


def axis_size(fn_name: str, arg_name: str, axis_name) -> int:
  """The size of a ``shard_map`` mesh axis, or a ``ValueError`` naming the argument."""
  from jax import lax

  try:
    return lax.axis_size(axis_name)
  except (NameError, AssertionError, KeyError, ValueError, TypeError) as e:
    raise ValueError(
      f"{fn_name}: {arg_name}={axis_name!r} is not a mesh axis of the enclosing "
      f"jax.shard_map ({type(e).__name__}: {e}); call this function inside shard_map over "
      "a mesh with that axis name."
    ) from None


def block_size(fn_name: str, value, vocab_size: int) -> int:
  """A positive Python or NumPy integer, at most ``vocab_size``, as a Python int."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(
      f"{fn_name}: block_size={value!r} must be an integer (Python or NumPy), or None."
    )
  value = int(value)
  if not 1 <= value <= vocab_size:
    raise ValueError(f"{fn_name}: block_size={value} must lie in [1, V={vocab_size}].")
  return value


def flag(fn_name: str, name: str, value) -> bool:
  """A static switch: a Python bool, or a ``TypeError`` naming it."""
  if not isinstance(value, bool):
    raise TypeError(f"{fn_name}: {name}={value!r} must be True or False (it is static).")
  return value


def positive_int(fn_name: str, name: str, value) -> int:
  """A static count (``k``, ``num_bins``): a positive Python or NumPy integer, as an int."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(
      f"{fn_name}: {name}={value!r} must be a Python or NumPy integer (it sets a shape), "
      f"got {type(value).__name__}."
    )
  if value < 1:
    raise ValueError(f"{fn_name}: {name}={value!r} must be a positive integer (>= 1).")
  return int(value)


def option(fn_name: str, name: str, value):
  """Check one numeric option against its domain (:data:`DOMAINS`).

  Returns:
    ``None`` when the option is concrete (it was checked here; a bad value raised
    ``ValueError``), else a boolean array of the option's shape, True where it is outside
    its domain, for the caller to turn into NaN; a ``checkify.debug_check`` is recorded.

  Raises:
    TypeError: a value that is not a real number (a string, a complex or boolean array).
    ValueError: a concrete value outside the domain, naming the argument and the value.
  """
  domain, inside = DOMAINS[name]
  value = to_array(fn_name, name, value)
  if isinstance(value, bool) or not _is_real(value):
    raise TypeError(
      f"{fn_name}: {name}={value!r} must be a real number (or array of them) {domain}."
    )
  if is_traced(value):
    bad = ~inside(value)
    if bad.size == 0:  # an empty batch's weights: nothing to check (argmax needs an entry)
      return bad
    flat = jnp.ravel(bad)
    checkify.debug_check(
      ~jnp.any(flat),
      f"{fn_name}: {name} must be {domain}; found {{value}}.",
      value=jnp.ravel(value)[jnp.argmax(flat)],
    )
    return bad
  array = np.asarray(value, dtype=np.float64)
  bad = ~inside(array)
  if bad.any():
    if array.ndim == 0:
      raise ValueError(f"{fn_name}: {name}={value!r} is invalid; it must be {domain}.")
    position = tuple(int(i) for i in np.argwhere(bad)[0])
    raise ValueError(
      f"{fn_name}: {name} must be {domain}; found {array[position]} at position {position}."
    )
  return None


def _is_real(value) -> bool:
  """True for a float or integer dtype (not bool, complex or a string)."""
  try:
    dtype = jnp.result_type(value)
  except TypeError:
    return False
  return bool(jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer))


# Options whose None means "off"; None for any other option is a TypeError.
OFF_WHEN_NONE = ("softcap", "alpha")


def options(fn_name: str, **values):
  """:func:`option` for each option given (None skipped where it means off).

  Returns:
    ``None`` when nothing is traced, else a scalar boolean: any traced option is bad.
    (Elementwise options such as ``weights`` use :func:`option` directly.)
  """
  bad = None
  for name, value in values.items():
    if value is None and name in OFF_WHEN_NONE:
      continue
    if value is None:
      domain = DOMAINS[name][0]
      raise TypeError(f"{fn_name}: {name}=None is not an option value; pass a number {domain}.")
    flag = option(fn_name, name, value)
    if flag is not None:
      flag = jnp.any(flag)
      bad = flag if bad is None else bad | flag
  return bad


def sample_weights(fn_name: str, sample_weight, example_shape, dtype):
  """Per-example weights (Keras's ``sample_weight``) broadcast to the example shape.

  Args:
    sample_weight: ``None``, a scalar, or an array broadcastable to ``example_shape``
      (the per-example shape: the loss's shape under ``reduction="none"``).
    example_shape: the per-example shape.
    dtype: the loss's compute dtype.

  Returns:
    ``None`` for ``None``, else the ``[*example_shape]`` weights. A traced weight outside
    its domain (negative or infinite) is replaced by NaN, so that example's loss and
    gradient are NaN; a traced NaN stays NaN.

  Raises:
    TypeError: a weight that is not real-valued.
    ValueError: a concrete weight that is negative, infinite or NaN, or a shape that does
      not broadcast to ``example_shape``.
  """
  if sample_weight is None:
    return None
  bad = option(fn_name, "sample_weight", sample_weight)
  weights = jnp.asarray(to_array(fn_name, "sample_weight", sample_weight), dtype=dtype)
  try:
    weights = jnp.broadcast_to(weights, example_shape)
    if bad is not None:
      bad = jnp.broadcast_to(bad, example_shape)
  except ValueError:
    raise ValueError(
      f"{fn_name}: sample_weight has shape {weights.shape}, which does not broadcast to the "
      f"per-example shape {tuple(example_shape)} (the loss's shape with reduction='none'); "
      "pass one weight per example."
    ) from None
  if bad is not None:
    weights = jnp.where(bad, jnp.array(jnp.nan, dtype), weights)
  return weights


def any_bad(bad, *flags):
  """``bad | flag | ...`` skipping ``None`` flags (options that were concrete)."""
  for flag in flags:
    if flag is not None:
      bad = flag if bad is None else bad | flag
  return bad


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


def finite_param(fn_name: str, arg_name: str, value, shape, dtype) -> jax.Array:
  """A float parameter (a ``log Q`` correction) broadcast to ``shape``: zeros for None; a
  concrete non-finite entry raises (a traced one is left to the caller's NaN)."""
  if value is None:
    return jnp.zeros(shape, dtype)
  value = float_array(fn_name, arg_name, value)
  value = broadcast_param(fn_name, arg_name, value, shape, dtype)
  check_values(fn_name, f"{arg_name} must be finite", value, ~jnp.isfinite(value))
  return value


def id_vector(fn_name: str, arg_name: str, value, count: int):
  """``[count]`` int32 ids (item ids for accidental hits), or None for None."""
  if value is None:
    return None
  ids, _ = integer_labels(fn_name, value, arg_name=arg_name)
  if ids.shape != (count,):
    raise ValueError(f"{fn_name}: {arg_name} has shape {ids.shape}; it must be ({count},).")
  return ids.astype(jnp.int32)


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


def check_values(fn_name: str, what: str, values, bad, hint: Callable | None = None) -> None:
  """Report entries of ``values`` flagged by ``bad``.

  Raises ``ValueError`` when ``bad`` is concrete (``hint(bad values)``, a string, ends its
  message), else adds a checkify check that :func:`xentax.checked` turns into an error (and
  that is free otherwise). An empty ``bad`` (an empty batch) has nothing to report.
  """
  if jnp.size(bad) == 0:
    return
  if is_concrete(values, bad):
    bad_np = np.asarray(bad)
    if bad_np.any():
      position = tuple(int(i) for i in np.argwhere(bad_np)[0])
      values_np = np.asarray(values)
      count = int(bad_np.sum())
      raise ValueError(
        f"{fn_name}: {what}; found {values_np[position]} at position {position} "
        f"({count} bad entr{'y' if count == 1 else 'ies'} in all)."
        + ("" if hint is None else hint(values_np[bad_np]))
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
