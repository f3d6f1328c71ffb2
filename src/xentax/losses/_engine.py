"""The loss engine: fast/guarded dispatch and closed-form derivative rules, written once.

Design rules:
  * The common case runs a guard-free formula (plain arithmetic fuses into one loop on
    XLA:CPU, where a select splits it); only a non-finite result runs the guarded formula,
    under a ``lax.cond``, a block of rows at a time.
  * :data:`FORMULATIONS` chooses per backend: ``"fused"`` (fast, guarded fallback; tuned
    and measured on XLA:CPU) or ``"plain"`` (the guarded formula alone, elsewhere until
    measured).
  * Derivatives are closed forms in ``custom_jvp`` rules, so the ``lax.cond`` is never
    differentiated; an option's tangent is :func:`held_jvp` of the guarded formula.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import _common

# A guarded formula that runs reads its rows in blocks of at most this many bytes (of its
# widest row input), so its temporaries are a few blocks, not ``[..., C]`` arrays.
GUARDED_BLOCK_BYTES = 2**21

# The formulation each backend runs; the environment variable XENTAX_FORMULATION overrides
# it (read when a loss is traced), so that one run can compare both on a new backend
# (experiments/benchmarks/run_gpu.sh). The CPU's is measured
# (experiments/benchmarks/engine-speed-*.json); a backend not listed runs "plain".
FORMULATIONS = {"cpu": "fused"}


def formulation() -> str:
  """``"fused"`` (fast formula, guarded fallback) or ``"plain"`` (guarded formula alone)."""
  chosen = os.environ.get("XENTAX_FORMULATION") or FORMULATIONS.get(jax.default_backend())
  if chosen not in (None, "fused", "plain"):
    raise ValueError(f"XENTAX_FORMULATION must be 'fused' or 'plain', got {chosen!r}")
  return chosen or "plain"


# implementation="auto": the platforms where a loss's kernel was measured faster than its XLA
# formulation, for the configuration measured (plain options: ``where``, ``ignore_index``,
# ``sample_weight``); the record: experiments/benchmarks/gpu-h200-pallas.md.
KERNELS = {("sparse_categorical_cross_entropy_with_logits", "cuda"): "pallas"}


def _platform() -> str:
  """``"cuda"`` on an NVIDIA GPU, else the backend's name."""
  device = jax.devices()[0]
  return "cuda" if "NVIDIA" in getattr(device, "device_kind", "") else jax.default_backend()


def mesh_axes(*arrays) -> list[tuple[object, int]]:
  """``(axis type, size)`` of every axis of the context mesh and of the inputs' meshes;
  empty inside ``shard_map``, where each device holds its own share."""
  context = jax.sharding.get_abstract_mesh()
  if jax.sharding.AxisType.Manual in context.axis_types:
    return []
  meshes = [context] + [
    getattr(getattr(jax.typeof(x), "sharding", None), "mesh", None)
    for x in arrays
    if isinstance(x, jax.Array)
  ]
  return [
    axis
    for mesh in meshes
    if mesh is not None and mesh.axis_names
    for axis in zip(mesh.axis_types, mesh.axis_sizes, strict=True)
  ]


def implementation(fn_name: str, requested: str, x, *others, measured: bool = True) -> str:
  """``"xla"`` or ``"pallas"`` for a loss's ``implementation=`` argument.

  ``x`` holds the rows (class or feature axis last), ``others`` the other float inputs.
  ``"auto"`` reads :data:`KERNELS` where ``measured`` (the call's options are the measured
  ones) and the inputs are not on a mesh, else XLA. The kernels compute in float32, so
  float64 inputs are refused; an input with no rows takes XLA (no kernel launch).
  """
  if requested not in ("auto", "xla", "pallas"):
    raise ValueError(
      f"{fn_name}: implementation must be 'auto', 'xla' or 'pallas', got {requested!r}."
    )
  float64 = jnp.result_type(x, *others) == jnp.float64
  if requested == "auto":
    # On a mesh a kernel call's operands would be gathered whole.
    if not measured or float64 or any(size > 1 for _, size in mesh_axes(x, *others)):
      return "xla"
    requested = KERNELS.get((fn_name, _platform()), "xla")
  if requested == "pallas" and float64:
    raise ValueError(
      f"{fn_name}: the Pallas kernels compute in float32; float64 inputs need "
      "implementation='xla' (or 'auto')."
    )
  return "xla" if math.prod(jnp.shape(x)[:-1]) == 0 else requested


def fast_or_guarded(fast, guarded: Callable, ok, *rows):
  """``fast`` where the scalar ``ok`` holds, else ``guarded(*rows)``, for the whole batch.

  ``fast`` is the fast result, or a function of no arguments computing it inside the
  taken branch (then reverse mode transposes only that branch: a zero cotangent through
  the other would meet its ``0 * inf``). ``rows`` are the arrays (or pytrees, or None)
  that ``guarded`` reads per example: their leading axes are the batch shape of the
  result's leaves, and ``guarded`` maps each row to its own outputs. XLA reserves the
  buffers of both branches of a ``lax.cond`` whether or not it is taken, so ``guarded``
  runs over blocks of rows (:func:`by_row_blocks`): the untaken guard costs a few blocks
  of memory, not its ``[..., C]`` temporaries. ``guarded`` may close over anything that
  is not per example (options, class weights). Without ``rows``, ``guarded()`` runs on
  the whole batch at once. Under the ``"plain"`` formulation only ``guarded`` runs.
  """
  if formulation() == "plain":
    return guarded(*rows)
  fast_branch = fast if callable(fast) else lambda: fast
  if not rows:
    return lax.cond(ok, fast_branch, guarded)
  batch_shape = jax.tree.leaves(jax.eval_shape(fast_branch))[0].shape
  return lax.cond(ok, fast_branch, lambda: by_row_blocks(guarded, batch_shape, *rows))


def by_row_blocks(fn: Callable, batch_shape, *rows):
  """``fn(*rows)`` computed a block of rows at a time (same result, bounded temporaries).

  Every leaf of ``rows`` has ``batch_shape`` as its leading axes; so has every leaf of the
  result. Blocks hold at most :data:`GUARDED_BLOCK_BYTES` of the widest row leaf; the last
  block overlaps its predecessor instead of padding (a padded copy would be full size).
  """
  ndim = len(batch_shape)
  count = math.prod(batch_shape)
  flat = jax.tree.map(lambda a: a.reshape(count, *a.shape[ndim:]), rows)
  leaves = jax.tree.leaves(flat)
  row_bytes = max((a.size // max(count, 1) * a.dtype.itemsize for a in leaves), default=0)
  block = max(1, GUARDED_BLOCK_BYTES // max(row_bytes, 1))
  if block >= count:
    return fn(*rows)
  first = jax.tree.map(lambda a: a[:block], flat)
  shapes = jax.eval_shape(fn, *first)
  out = jax.tree.map(lambda s: jnp.zeros((count, *s.shape[1:]), s.dtype), shapes)

  def step(i, out):
    start = jnp.minimum(i * block, count - block)
    part = jax.tree.map(lambda a: lax.dynamic_slice_in_dim(a, start, block), flat)
    done = fn(*part)
    return jax.tree.map(lambda o, d: lax.dynamic_update_slice_in_dim(o, d, start, 0), out, done)

  out = lax.fori_loop(0, -(-count // block), step, out)
  return jax.tree.map(lambda o: o.reshape(*batch_shape, *o.shape[1:]), out)


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
