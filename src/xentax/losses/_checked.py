"""Run-time value checks for any xentax loss under ``jit``, through ``checkify``.

Design notes:
  Each loss records its value checks (labels in range, probabilities in [0, 1]) with
  ``checkify.debug_check``, which costs nothing unless the loss is transformed by
  ``checkify``. :func:`checked` applies that transformation inside ``jit`` and raises the
  first failed check as an error. Array keyword arguments are traced; every other keyword
  argument (``reduction``, ``axis``, ``ignore_index``, Python floats) is static.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import numpy as np
from jax.experimental import checkify


def checked(fn: Callable) -> Callable:
  """Wrap a loss so that bad values raise an error, also under ``jit``.

  Without the wrapper, a jitted loss turns an out-of-range label into a NaN loss (it cannot
  raise). ``checked(fn)(*args, **kwargs)`` compiles ``fn`` with its value checks turned on,
  runs it, and raises ``checkify.JaxRuntimeError`` naming the function, the bad value and
  its flat position if any check failed.

  Args:
    fn: a xentax loss, or any function that calls xentax losses.

  Returns:
    A function with ``fn``'s signature and result.

  Example:
    >>> import jax.numpy as jnp, xentax
    >>> loss = xentax.checked(xentax.sparse_categorical_cross_entropy_with_logits)
    >>> float(loss(jnp.zeros((2, 3)), jnp.array([0, 2])))  # doctest: +ELLIPSIS
    1.0986...
  """

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    arrays = {k: v for k, v in kwargs.items() if _is_array(v)}
    static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in arrays))
    err, out = _run_checked(fn, static, args, arrays)
    err.throw()
    return out

  return wrapper


def _is_array(value) -> bool:
  return isinstance(value, jax.Array | np.ndarray | list)


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run_checked(fn, static, args, arrays):
  def call(args, arrays):
    return fn(*args, **arrays, **dict(static))

  return checkify.checkify(call, errors=checkify.user_checks)(args, arrays)
