"""Sharded inputs of the fused loss: each device runs the core on its own share.

On a mesh with ``Explicit`` axes an array's sharding is part of its type, so the layout is
known when the loss is traced. Tokens sharded over some axes and ``weight`` over others along
the vocabulary run the vocabulary-blocked core inside ``shard_map``: the row statistics are
all-reduced over the vocabulary axes (``[N]`` each), ``d hidden`` over them too, ``d weight``
and ``d bias`` over the token axes; nothing ``[N, V]``-, ``[N, block]``- or ``[D, V]``-sized
is gathered. A sharded feature axis ``D`` would need the logits all-reduced: a clear error.
On ``Auto`` axes the layout is chosen after tracing: :mod:`._fused_auto`.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import AxisType
from jax.sharding import PartitionSpec as P

from xentax.losses import _common, _validate


class Layout(NamedTuple):
  """Where the fused loss's inputs live on an explicit mesh."""

  mesh: jax.sharding.AbstractMesh
  tokens: P  # the labels' spec: hidden's leading axes
  vocab: str | tuple | None  # mesh axes of weight's vocabulary axis


def _spec(x) -> P:
  """``x``'s partition spec: ``P()`` (replicated) for a host array."""
  return jax.typeof(x).sharding.spec if isinstance(x, jax.Array) else P()


def _explicit_spec(x):
  """``(mesh, spec)`` of ``x`` when its sharding names an ``Explicit`` mesh axis, else None."""
  if not isinstance(x, jax.Array):
    return None  # a host array is not sharded
  sharding = getattr(jax.typeof(x), "sharding", None)
  mesh = getattr(sharding, "mesh", None)
  if mesh is None or not mesh.axis_names:
    return None
  explicit = {
    n for n, t in zip(mesh.axis_names, mesh.axis_types, strict=True) if t == AxisType.Explicit
  }
  spec = sharding.spec
  if not any(_names(entry) & explicit for entry in spec):
    return None
  return mesh, spec


def _names(entry) -> set:
  """The mesh axis names of one spec entry (None, a name, or a tuple of names)."""
  if entry is None:
    return set()
  return set(entry) if isinstance(entry, tuple) else {entry}


def _padded(spec, ndim: int) -> tuple:
  return tuple(spec) + (None,) * (ndim - len(spec))


def explicit_layout(fn_name, hidden, weight) -> Layout | None:
  """The layout of ``hidden [..., D]`` and ``weight [D, V]`` on an explicit mesh, or None
  when neither is sharded there; ``ValueError`` for a layout that would need a gather."""
  if any(getattr(x, "ndim", None) is None for x in (hidden, weight)):
    return None  # the loss names the types
  if hidden.ndim < 1 or weight.ndim != 2:
    return None  # the loss names the shapes
  found = [s for s in (_explicit_spec(hidden), _explicit_spec(weight)) if s is not None]
  if not found:
    return None
  mesh = found[0][0]
  hidden_spec = _padded(_spec(hidden), hidden.ndim)
  weight_spec = _padded(_spec(weight), 2)
  if hidden_spec[-1] is not None or weight_spec[0] is not None:
    raise ValueError(
      f"{fn_name}: the feature axis D is sharded (hidden {P(*hidden_spec)}, weight "
      f"{P(*weight_spec)}); the fused loss contracts over D, so every logit would be "
      "all-reduced. Shard the tokens and the vocabulary instead: hidden P(<tokens>, None), "
      "weight P(None, <vocab>) (jax.sharding.reshard)."
    )
  token_axes = set().union(*(_names(e) for e in hidden_spec[:-1]))
  vocab_axes = _names(weight_spec[1])
  if token_axes & vocab_axes:
    raise ValueError(
      f"{fn_name}: mesh axes {sorted(token_axes & vocab_axes)} shard both the tokens (hidden "
      f"{P(*hidden_spec)}) and the vocabulary (weight {P(*weight_spec)}); use separate axes."
    )
  return Layout(mesh, P(*hidden_spec[:-1]), weight_spec[1])


TOKENWISE = ("sample_weight", "where")  # laid out like the labels
VOCABWISE = ("bias",)  # laid out like weight's columns


def _token_axes(layout: Layout) -> tuple:
  return tuple(sorted(set().union(*(_names(e) for e in layout.tokens))))


def _tokenwise(fn_name, options: dict, labels, dtype) -> dict:
  """``where`` and ``sample_weight`` broadcast to the labels' shape (so they can be laid out
  like the labels), a clear error if they do not broadcast; each device's loss checks their
  values. The other options as given."""
  options = dict(options)
  if options.get("where") is not None:
    options["where"] = _validate.broadcast_mask(fn_name, options["where"], labels.shape)
  if options.get("sample_weight") is not None:
    weights = options["sample_weight"]
    options["sample_weight"] = _validate.broadcast_param(
      fn_name, "sample_weight", weights, labels.shape, dtype
    )
  return options


def _in_layout_mesh(fn):
  """``fn`` traced with the layout's mesh as the context mesh when the caller set none (the
  inputs' types name it; an eager call needs ``jax.set_mesh``, as JAX's explicit mode does)."""

  @functools.wraps(fn)
  def wrapped(fn_name, layout: Layout, *args, **kwargs):
    if not jax.sharding.get_abstract_mesh().empty:
      return fn(fn_name, layout, *args, **kwargs)
    with jax.sharding.use_abstract_mesh(layout.mesh):
      return fn(fn_name, layout, *args, **kwargs)

  return wrapped


@_in_layout_mesh
def run(fn_name, layout: Layout, core, hidden, weight, labels, options, *, per_token, return_lse):
  """``core(hidden, weight, labels, axis_name=, batch_axis_name=, **options)`` per device.

  Array options are resharded to their layout (:data:`TOKENWISE`, :data:`VOCABWISE`, the
  others replicated): a slice, or the gather of a vector. Python values stay static.
  """
  token_axes = _token_axes(layout) or None
  vocab = layout.vocab

  def spec(name):
    return layout.tokens if name in TOKENWISE else P(vocab) if name in VOCABWISE else P()

  options = _tokenwise(
    fn_name, options, labels, _common.compute_dtype(jnp.result_type(hidden, weight))
  )
  arrays = {k: v for k, v in options.items() if isinstance(v, jax.Array | np.ndarray)}
  static = {k: v for k, v in options.items() if k not in arrays}
  arrays = {k: jax.sharding.reshard(v, spec(k)) for k, v in arrays.items()}

  def per_device(hidden, weight, labels, arrays):
    return core(
      hidden, weight, labels, axis_name=vocab, batch_axis_name=token_axes, **arrays, **static
    )

  hidden_spec = P(*layout.tokens, None)
  loss_spec = layout.tokens if per_token else P()
  in_specs = (hidden_spec, P(None, vocab), layout.tokens, {k: spec(k) for k in arrays})
  sharded = jax.shard_map(
    per_device,
    mesh=layout.mesh,
    in_specs=in_specs,
    out_specs=(loss_spec, layout.tokens) if return_lse else loss_spec,
  )
  reshard = jax.sharding.reshard
  return sharded(
    reshard(hidden, hidden_spec),
    reshard(weight, P(None, vocab)),
    reshard(labels, layout.tokens),
    arrays,
  )


@_in_layout_mesh
def run_tokens(fn_name, layout: Layout, core, inputs, options: dict):
  """``core(*inputs, batch_axis_name=, **options)`` per device for a loss of two heads whose
  tokens are sharded: ``inputs`` are ``(h1, w1, h2, w2, labels)``, the weights replicated;
  ``options`` are token-wise (``where``, ``sample_weight``)."""
  token_axes = _token_axes(layout)
  hidden_spec = P(*layout.tokens, None)
  specs = (hidden_spec, P(), hidden_spec, P(), layout.tokens)
  reshard = jax.sharding.reshard
  inputs = tuple(reshard(jnp.asarray(x), spec) for x, spec in zip(inputs, specs, strict=True))
  options = _tokenwise(
    fn_name, options, inputs[4], _common.compute_dtype(jnp.result_type(*inputs[:4]))
  )
  arrays = {k: reshard(v, layout.tokens) for k, v in options.items() if v is not None}
  absent = {k: None for k in options if k not in arrays}
  sharded = jax.shard_map(
    lambda inputs, arrays: core(*inputs, batch_axis_name=token_axes, **arrays, **absent),
    mesh=layout.mesh,
    in_specs=(specs, {k: layout.tokens for k in arrays}),
    out_specs=P(),
  )
  return sharded(inputs, arrays)
