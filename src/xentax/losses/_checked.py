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
  """Wrap a loss so that bad values raise an error, also under ``jit``, ``vmap`` and ``grad``.

  Without the wrapper, a jitted loss turns an out-of-range label (or an option outside its
  domain) into a NaN loss and gradient (it cannot raise). ``checked(fn)(*args, **kwargs)``
  runs ``fn`` with its value checks turned on and raises ``checkify.JaxRuntimeError``
  naming the function, the bad value and its flat position if any check failed.

  It composes with JAX transformations both ways:

  * ``checked(jax.jit(step))`` or ``checked(step)`` where ``step`` calls ``jax.grad`` or
    ``jax.vmap`` inside: the checks are functionalised around the whole computation and
    the error is raised on return, with its message.
  * ``jax.jit(checked(step))``, ``jax.vmap(checked(loss))``, ``jax.grad(checked(loss))``:
    called on traced arguments, the wrapper functionalises the checks inside the trace
    and raises from a host callback when the computation runs (under ``jit`` XLA
    re-raises it as ``jax.errors.JaxRuntimeError``, whose text contains the message).

  Args:
    fn: a xentax loss, or any function that calls xentax losses.

  Returns:
    A function with ``fn``'s signature and result.

  Raises:
    checkify.JaxRuntimeError: a failed value check, when the wrapper is called on
      concrete arguments; inside an outer ``jit``, ``jax.errors.JaxRuntimeError`` whose
      text contains the same message.

  Example:
    >>> import jax, jax.numpy as jnp, xentax
    >>> loss = xentax.checked(xentax.sparse_categorical_cross_entropy_with_logits)
    >>> float(loss(jnp.zeros((2, 3)), jnp.array([0, 2])))  # doctest: +ELLIPSIS
    1.0986...
    >>> float(jax.jit(loss)(jnp.zeros((2, 3)), jnp.array([0, 2])))  # doctest: +ELLIPSIS
    1.0986...
  """

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    arrays = {k: v for k, v in kwargs.items() if _is_array(v)}
    static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in arrays))
    if _any_traced(args, arrays):
      return _checked_in_trace(fn, static, args, arrays)
    err, out = _run_checked(fn, static, args, arrays)
    err.throw()
    return out

  return wrapper


def _is_array(value) -> bool:
  return isinstance(value, jax.Array | np.ndarray | list)


def _any_traced(*trees) -> bool:
  return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


def _call(fn, static):
  def call(args, arrays):
    return fn(*args, **arrays, **dict(static))

  return call


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run_checked(fn, static, args, arrays):
  return checkify.checkify(_call(fn, static), errors=checkify.user_checks)(args, arrays)


def _checked_in_trace(fn, static, args, arrays):
  """Inside a trace (jit, vmap, grad) no error can be raised at trace time: functionalise
  the checks here and raise from a host callback when the computation runs."""
  err, out = checkify.checkify(_call(fn, static), errors=checkify.user_checks)(args, arrays)
  jax.debug.callback(_throw, err)
  return out


def _throw(err) -> None:
  err.throw()
