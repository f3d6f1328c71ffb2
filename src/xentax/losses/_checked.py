"""Run-time value checks for any xentax loss under ``jit``, through ``checkify``.

Losses record their checks with ``checkify.debug_check`` (free unless transformed by
``checkify``); array keyword arguments are traced, every other keyword argument static.
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable

import jax
import numpy as np
from jax.experimental import checkify


def checked(fn: Callable) -> Callable:
  """Wrap a loss so that bad values raise an error, also under ``jit``, ``vmap`` and ``grad``.

  Unwrapped, a jitted loss turns a bad label or option into a NaN loss and gradient.
  ``checked(fn)`` runs ``fn`` with its value checks on and raises an error naming the
  function, the bad value and its flat position: on return for ``checked(jax.jit(step))``,
  from a host callback at run time for ``jax.jit(checked(step))`` (or ``vmap``, ``grad``).

  Args:
    fn: a xentax loss, or any function that calls xentax losses.

  Returns:
    A function with ``fn``'s signature and result.

  Raises:
    checkify.JaxRuntimeError: a failed value check (inside an outer ``jit``,
      ``jax.errors.JaxRuntimeError`` with the same message).

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> loss = xentax.checked(xentax.sparse_categorical_cross_entropy_with_logits)
    >>> float(loss(jnp.zeros((2, 3)), jnp.array([0, 2])))  # doctest: +ELLIPSIS
    1.0986...
    >>> float(jax.jit(loss)(jnp.zeros((2, 3)), jnp.array([0, 2])))  # doctest: +ELLIPSIS
    1.0986...
  """

  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    args = tuple(_as_array(a) for a in args)
    kwargs = {k: _as_array(v) for k, v in kwargs.items()}
    arrays = {k: v for k, v in kwargs.items() if _is_array(v)}
    static = tuple(sorted((k, v) for k, v in kwargs.items() if k not in arrays))
    if _any_traced(args, arrays):
      return _checked_in_trace(fn, static, args, arrays)
    err, out = _run_checked(fn, static, args, arrays)
    err.throw()
    return out

  return wrapper


def _as_array(value):
  """A nested list of Python numbers as a NumPy array (traced whole, not number by number)."""
  if isinstance(value, list):
    leaves = jax.tree.leaves(value)
    if leaves and all(isinstance(leaf, numbers.Number) for leaf in leaves):
      return np.asarray(value)
  return value


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
  """Inside a trace: functionalise the checks and raise from a host callback at run time."""
  err, out = checkify.checkify(_call(fn, static), errors=checkify.user_checks)(args, arrays)
  jax.debug.callback(_throw, err)
  return out


def _throw(err) -> None:
  err.throw()
