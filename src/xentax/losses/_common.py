"""Numerics shared by the losses: compute dtype, NaN flags, ``0 log 0 = 0``, clamped logs.

Design notes:
  * Every loss computes in float32 at least (float64 stays float64). The compute dtype is
    taken from the main input only, so a NumPy float64 ``class_weights`` does not promote a
    float32 loss to float64 when x64 is enabled.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def compute_dtype(x) -> jnp.dtype:
  """float64 for float64 input, float32 for everything else (bf16, f16, f32, ints)."""
  dtype = jnp.result_type(x)
  if dtype == jnp.float64:
    return jnp.dtype(jnp.float64)
  return jnp.dtype(jnp.float32)


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


def is_symbolic_zero(t) -> bool:
  """A ``custom_jvp`` tangent that is known to be zero (or absent)."""
  return t is None or isinstance(t, jax.custom_derivatives.SymbolicZero)


def instantiate_tangent(primal, tangent):
  """``tangent`` as an array: zeros of the primal's shape for a symbolic zero."""
  if primal is None:
    return None
  return jnp.zeros_like(primal) if is_symbolic_zero(tangent) else tangent


def nonempty_features(hidden, weight):
  """``hidden [..., D]`` and ``weight [D, V]``, with ``D = 0`` padded to one zero feature.

  ``hidden @ weight`` is the same (zeros), and autodiff slices the padding off the
  gradients; the fused schedules need a feature to split (torch's adaptive softmax makes
  width-0 tail projections).
  """
  if hidden.shape[-1]:
    return hidden, weight
  pad = [(0, 0)] * (hidden.ndim - 1) + [(0, 1)]
  return jnp.pad(hidden, pad), jnp.pad(weight, ((0, 1), (0, 0)))


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


def upcast(x) -> jax.Array:
  """``x`` in its compute dtype; called inside a fusion, so bf16 logits are never copied."""
  return x.astype(compute_dtype(x))


@jax.custom_jvp
def take_target(x, labels) -> jax.Array:
  """``x[..., labels]`` along the last axis: ``labels`` has ``x``'s leading shape.

  Its tangent is ``sum_c [c = y] t_c``, whose transpose is the elementwise
  ``[c = y] g``: reverse mode fuses it into whatever consumes it, where a gather's
  transpose writes a ``[..., C]`` scatter of its own.
  """
  return jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0]


@take_target.defjvp
def _take_target_jvp(primals, tangents):
  x, labels = primals
  is_target = jnp.arange(x.shape[-1]) == labels[..., None]
  tangent = jnp.sum(jnp.where(is_target, tangents[0], jnp.zeros((), x.dtype)), axis=-1)
  return take_target(x, labels), tangent


# Inside `shard_map` an array's type names the mesh axes it varies over ("{V:x}"). A custom
# rule's loop carries and cotangents must carry the types JAX's own rules would give them.


def varying_axes(x) -> frozenset:
  """The ``shard_map`` axes ``x`` varies over (its type's ``{V:...}``); empty outside."""
  manual_axis_type = getattr(jax.typeof(x), "mat", None)
  return frozenset(getattr(manual_axis_type, "varying", None) or ())


def varying_like(tree, *refs):
  """``tree`` cast to vary over every axis ``refs`` vary over (a loop's initial carry)."""
  axes = frozenset().union(*(varying_axes(ref) for ref in jax.tree.leaves(refs)))

  def cast(x):
    missing = tuple(sorted(axes - varying_axes(x)))
    return jax.lax.pcast(x, missing, to="varying") if missing else x

  return jax.tree.map(cast, tree)


def psum_if_varying(x, axis_name):
  """``psum`` over ``axis_name`` if ``x`` varies over it, else ``x``: a replicated input's
  cotangent is summed over the shards exactly once, whether JAX's transpose did it or not."""
  if x is None:
    return None
  names = axis_name if isinstance(axis_name, tuple) else (axis_name,)
  varying = tuple(name for name in names if name in varying_axes(x))
  return jax.lax.psum(x, varying) if varying else x


def cotangent_like(d, primal):
  """``d`` summed over the axes it varies over and ``primal`` does not.

  A replicated input used with device-varying tokens is implicitly cast to vary; the
  transpose of that cast is this sum (a replicated weight's gradient over the token shards).
  """
  if d is None or primal is None:
    return d
  extra = tuple(sorted(varying_axes(d) - varying_axes(primal)))
  return jax.lax.psum(d, extra) if extra else d
