"""Auto meshes: the fused cores as ``custom_partitioning`` ops that run each device's share.

On ``Auto`` mesh axes XLA chooses the shardings after the loss is traced, so the layout is
read when the partitioner reaches the op: the tokens are cut along the axes that shard
``hidden``'s rows, the vocabulary along those that shard ``weight``'s columns, and the core runs
on each device's share with the collectives of the explicit layout (:mod:`._fused_layout`).
Every array is named with a role, one factor per axis: ``"n..."`` (a token axis: ``"n0"``,
``"n1"`` for ``[B, T]``, so a sharded sequence axis is kept), ``"v"`` (vocabulary), any other
name (never cut), or ``None`` (replicated). An input that arrives
sharded along a factor that is never cut is gathered first, with a warning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Hashable
from typing import NamedTuple

import jax
from jax.experimental.custom_partitioning import SdyShardingRule, custom_partitioning
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from xentax.losses import _engine


class Shards(NamedTuple):
  """The mesh axes a device's share is cut along (None: not cut)."""

  tokens: tuple | None
  vocab: tuple | None


class Call(NamedTuple):
  """One partitioned call: ``local(static, shards, **inputs)`` returns a dict of ``outputs``.

  ``roles`` pairs each input and output name with its factors (hashable: a static argument).
  """

  fn_name: str
  local: Callable
  static: Hashable
  inputs: tuple[str, ...]
  outputs: tuple[str, ...]
  roles: tuple[tuple[str, tuple[str, ...] | None], ...]


def auto_mesh(*arrays) -> bool:
  """True outside ``shard_map`` when the context mesh, or an input's, has an ``Auto`` axis
  of more than one device: the layout is then chosen after tracing."""
  return any(kind == AxisType.Auto and size > 1 for kind, size in _engine.mesh_axes(*arrays))


def run(call: Call, arrays: dict) -> dict:
  """``call`` on ``arrays`` (its inputs by name; None entries are absent) as one op."""
  present = tuple(k for k in call.inputs if arrays.get(k) is not None)
  call = call._replace(inputs=present)
  args = tuple(arrays[k] for k in present)
  try:
    out = _batchable(call)(*args)
  except NotImplementedError as e:  # differentiated twice: one unpartitioned op
    if "custom_partitioning" not in str(e):
      raise
    warn_unpartitioned(call.fn_name, "a call differentiated twice")
    out = _whole(call, *args)
  return dict(zip(call.outputs, out, strict=True))


def _batchable(call: Call):
  """The op, vmapped as one unpartitioned op (``custom_partitioning`` has no batching rule;
  a ``vmap`` may reach the op after it is traced, around ``jit`` or ``checkpoint``)."""

  @jax.custom_batching.custom_vmap
  def op(*args):
    return _op(call, *args)

  @op.def_vmap
  def batched(axis_size, in_batched, *args):
    warn_unpartitioned(call.fn_name, "a vmapped call")
    in_axes = [0 if b else None for b in in_batched]
    out = jax.vmap(lambda *a: _whole(call, *a), in_axes=in_axes, axis_size=axis_size)(*args)
    return out, (True,) * len(out)

  return op


def _whole(call: Call, *arrays):
  """The unpartitioned op: one share holding everything."""
  out = call.local(call.static, Shards(None, None), **dict(zip(call.inputs, arrays, strict=True)))
  return tuple(out[k] for k in call.outputs)


_op = custom_partitioning(_whole, static_argnums=(0,))


def _axes(entry) -> tuple:
  if entry is None:
    return ()
  return tuple(entry) if isinstance(entry, tuple) else (entry,)


def _specs(arg_shapes) -> list[tuple]:
  """Each operand's spec, one entry of mesh axes per dimension."""
  out = []
  for shape in arg_shapes:
    spec = tuple(getattr(shape.sharding, "spec", ()))
    out.append(tuple(_axes(e) for e in spec) + ((),) * (len(shape.shape) - len(spec)))
  return out


def _cut(call: Call, mesh, arg_shapes) -> tuple[dict[str, tuple], set[str]]:
  """The mesh axes each token factor (``n...``) and the vocabulary (``v``) are cut along,
  from the first input sharded along it, and the factors warned about: axes that do not
  divide their dimension are not used, nor vocabulary axes that also cut the tokens."""
  roles = dict(call.roles)
  found: dict[str, tuple] = {}
  sizes: dict[str, int] = {}
  for name, shape, spec in zip(call.inputs, arg_shapes, _specs(arg_shapes), strict=True):
    factors = roles[name] or ("",) * len(spec)  # replicated: no factor is cut
    for factor, dim, axes in zip(factors, shape.shape, spec, strict=True):
      if _cuttable(factor) and not found.get(factor):
        found[factor], sizes[factor] = axes, dim
  cut: dict[str, tuple] = {}
  warned: set[str] = set()
  for factor in sorted(found, key=lambda f: f == "v"):  # the tokens first
    axes = found[factor]
    what = "vocabulary columns" if factor == "v" else "tokens"
    problem = None
    if set(axes) & set().union(*cut.values()):
      problem = f"the mesh axes {axes} cut both the tokens and the {what}"
    elif axes and sizes[factor] % math.prod(mesh.shape[a] for a in axes):
      count = math.prod(mesh.shape[a] for a in axes)
      problem = f"{sizes[factor]} {what} do not divide over {count} devices {axes}"
    if problem:
      _warn(call, problem)
      warned.add(factor)
      axes = ()
    cut[factor] = axes
  return cut, warned


def _cuttable(factor: str) -> bool:
  return factor == "v" or factor.startswith("n")


def _shards(cut: dict[str, tuple]) -> Shards:
  tokens = tuple(a for f, axes in cut.items() if f != "v" for a in axes)
  return Shards(tokens or None, cut.get("v") or None)


def _spec(factors, cut: dict[str, tuple]) -> P:
  if factors is None:
    return P()
  return P(*(cut.get(f) or None for f in factors))


def _warn(call: Call, what: str) -> None:
  vocab = any(factors and "v" in factors for _, factors in call.roles)
  scope = "the tokens and the vocabulary columns" if vocab else "the tokens"
  warnings.warn(
    f"{call.fn_name} on an Auto mesh: {what}, so they are gathered first (this loss "
    f"partitions {scope} only).",
    stacklevel=2,
  )


def _gathered(call: Call, arg_shapes, cut: dict[str, tuple], warned: set[str]) -> None:
  """One warning naming the inputs that arrive cut along axes the op does not cut them
  along (``warned``: factors :func:`_cut` has warned about)."""
  roles = dict(call.roles)
  found = []
  for name, spec in zip(call.inputs, _specs(arg_shapes), strict=True):
    factors = roles[name] or ("",) * len(spec)
    extra = sorted(
      set().union(
        *(
          set(a) - set(cut.get(f) or ())
          for f, a in zip(factors, spec, strict=True)
          if f not in warned
        )
      )
    )
    if extra:
      found.append(f"{name} over {extra}")
  if found:
    _warn(call, "inputs sharded along axes the loss does not cut (" + ", ".join(found) + ")")


def _partition(call: Call, mesh, arg_shapes, result_shape):
  del result_shape
  cut, warned = _cut(call, mesh, arg_shapes)
  _gathered(call, arg_shapes, cut, warned)
  shards = _shards(cut)
  roles = dict(call.roles)

  def lower(*arrays):
    out = call.local(call.static, shards, **dict(zip(call.inputs, arrays, strict=True)))
    return tuple(out[k] for k in call.outputs)

  args = tuple(NamedSharding(mesh, _spec(roles[k], cut)) for k in call.inputs)
  results = tuple(NamedSharding(mesh, _spec(roles[k], cut)) for k in call.outputs)
  return mesh, lower, results, args


def _infer(call: Call, mesh, arg_shapes, result_shape):
  del result_shape
  with warnings.catch_warnings():  # the partition callback warns
    warnings.simplefilter("ignore")
    cut, _ = _cut(call, mesh, arg_shapes)
  roles = dict(call.roles)
  return tuple(NamedSharding(mesh, _spec(roles[k], cut)) for k in call.outputs)


def _rule(call: Call, mesh, operand_types, result_types) -> SdyShardingRule:
  """Shardy's view: shared factors link the operands; a replicated array's are its own."""
  del mesh
  roles = dict(call.roles)

  def mapping(name, ir_type):
    factors = roles[name]
    if factors is None:
      return tuple(f"{name}_{i}" for i in range(len(ir_type.shape)))
    return factors

  return SdyShardingRule(
    tuple(map(mapping, call.inputs, operand_types)),
    tuple(map(mapping, call.outputs, result_types)),
  )


_op.def_partition(partition=_partition, infer_sharding_from_operands=_infer, sharding_rule=_rule)


def warn_unpartitioned(fn_name: str, what: str) -> None:
  """A ``UserWarning`` that ``what`` runs unpartitioned on an Auto mesh (XLA may gather)."""
  warnings.warn(
    f"{fn_name}: {what} is not partitioned on an Auto mesh; XLA partitions the unsharded "
    "program and may gather the hidden states or blocks of logits.",
    stacklevel=4,
  )
