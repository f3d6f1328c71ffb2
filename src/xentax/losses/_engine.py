"""The loss engine: fast/guarded dispatch and closed-form derivative rules, written once.

Design notes:
  * A loss's common case runs a guard-free formula (plain arithmetic fuses into one loop on
    XLA:CPU, where a select splits it); only when its result is not finite does
    :func:`fast_or_guarded` run the fully guarded formula, under a ``lax.cond``.
  * Derivatives are closed forms in ``custom_jvp`` rules: the value is never differentiated,
    so the ``lax.cond`` leaves no residuals. The main input's tangent is the loss's own
    closed form; the tangents of the options (rarely differentiated: a class weight or a
    smoothing being learned) are :func:`held_jvp` of the guarded formula with everything
    else held fixed.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import _common


def fast_or_guarded(fast, guarded: Callable, ok) -> jax.Array:
  """``fast`` where the scalar ``ok`` holds, else ``guarded()`` (for the whole batch)."""
  return lax.cond(ok, lambda: fast, guarded)


def all_finite(losses, kept=None) -> jax.Array:
  """Whether every kept entry of ``losses`` is finite: dropped rows may hold anything."""
  finite = jnp.isfinite(losses)
  return jnp.all(finite if kept is None else finite | ~kept)


def _moves(primal, tangent) -> bool:
  """A primal that exists and whose tangent (some leaf of it) is not a symbolic zero."""
  if primal is None:
    return False
  leaves = jax.tree.leaves(tangent, is_leaf=_common.is_symbolic_zero)
  return any(not _common.is_symbolic_zero(t) for t in leaves)


def any_moves(primals, tangents) -> bool:
  """Whether :func:`held_jvp` would move any of ``primals`` (statically known)."""
  return any(_moves(p, t) for p, t in zip(primals, tangents, strict=True))


def held_jvp(fn: Callable, primals, tangents, held=()):
  """The tangent of ``fn(*primals)`` along the arguments that move, the others held fixed.

  An argument moves when it is not None and its tangent is not a symbolic zero (for a
  pytree argument: some leaf's); symbolic leaves of a moving argument become zeros. A
  held argument gets no instantiated zero tangent, which would cost a pass of its own. The
  indices in ``held`` never move (an argument whose tangent the caller forms itself).
  Returns None when nothing moves.
  """
  pairs = enumerate(zip(primals, tangents, strict=True))
  moving = [i for i, (p, t) in pairs if i not in held and _moves(p, t)]
  if not moving:
    return None

  def moved(*values):
    args = list(primals)
    for i, value in zip(moving, values, strict=True):
      args[i] = value
    return fn(*args)

  instantiated = [
    jax.tree.map(
      _common.instantiate_tangent, primals[i], tangents[i], is_leaf=_common.is_symbolic_zero
    )
    for i in moving
  ]
  return jax.jvp(moved, [primals[i] for i in moving], instantiated)[1]


def plus(total, tangent):
  """``total + tangent``, where a None ``tangent`` (nothing moved) adds nothing."""
  return total if tangent is None else total + tangent


def closed_form(value: Callable, exact: Callable, grad_x: Callable) -> Callable:
  """``value(*args)`` with the closed-form tangent in ``args[0]`` and ``exact``'s in the rest.

  ``value`` and ``exact`` compute the same array (``value`` fast, ``exact`` with every
  guard); ``grad_x(*args)`` is the elementwise ``d out / d args[0]`` for an elementwise
  ``out``, or for the entries summed into a scalar ``out``. ``value`` itself is never
  differentiated.
  """
  fn = jax.custom_jvp(value)

  def jvp(primals, tangents):
    out = value(*primals)
    tangent = jnp.zeros_like(out)
    if not _common.is_symbolic_zero(tangents[0]):
      dx = grad_x(*primals) * tangents[0]
      tangent = tangent + (jnp.sum(dx) if out.ndim == 0 else dx)
    return out, plus(tangent, held_jvp(exact, primals, tangents, held=(0,)))

  fn.defjvp(jvp, symbolic_zeros=True)
  return fn
