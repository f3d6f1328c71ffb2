r"""Fused linear distillation: Hinton's loss on two linear heads without ``[N, V]`` logits.

* A ``lax.scan`` over token chunks forms the loss and every gradient in the forward rule.
* The teacher's gradients (two more matmuls a chunk) only where the teacher is perturbed.
* Padding and dropped rows get weight 0 and zeroed hidden states, so inf/NaN cannot leak.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import (
  _common,
  _frame,
  _fused_auto,
  _fused_layout,
  _reduce,
  _rows,
  _validate,
)
from xentax.losses._sparse_terms import prepare_labels

_AUTO_CHUNK_ELEMENTS = 1 << 22  # about 16 MB of float32 logits per chunk and side


class _Config(NamedTuple):
  """Static settings of one fused call (hashable: a ``custom_vjp`` nondiff argument)."""

  chunk_size: int
  num_chunks: int
  teacher_grad: bool  # filled in by the forward rule
  partitioned: bool = False  # on an Auto mesh: each device's tokens (:mod:`._fused_auto`)


@_frame.loss
def fused_linear_distillation(
  student_hidden,
  student_weight,
  teacher_hidden,
  teacher_weight,
  labels,
  *,
  temperature=1.0,
  alpha=0.5,
  chunk_size: int | None = None,
  ignore_index: int | None = None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
  teacher_gradient: bool = False,
) -> jax.Array:
  r""":func:`xentax.distillation_loss` of two linear heads, never holding ``[N, V]`` logits.

  Equals ``distillation_loss(student_hidden @ student_weight, teacher_hidden @
  teacher_weight, labels, ...)`` in value and in gradients with respect to all four float
  inputs, holding at most one ``[chunk_size, V]`` slice of each side's logits at a time.

  .. math::
    \ell_n = \alpha T^2\, \mathrm{KL}\!\left(\mathrm{softmax}(z^t_n / T) \,\|\,
      \mathrm{softmax}(z^s_n / T)\right) + (1 - \alpha)(\mathrm{lse}(z^s_n) - z^s_{n,y_n}),
    \quad z^s = h^s W^s,\; z^t = h^t W^t

  Gradient: with ``G^s = alpha T (p^s_T - p^t_T) + (1 - alpha)(softmax(z^s) - onehot(y))``
  and ``G^t = alpha T p^t_T (log p^t_T - log p^s_T - KL)`` per token (times its reduction
  factor, ``s_n`` divided by the mean's denominator), ``d h^s = G^s W^{sT}``,
  ``d W^s = h^{sT} G^s`` and, with ``teacher_gradient=True``, likewise for the teacher.
  ``temperature`` and ``alpha`` may
  be traced but not differentiated (use :func:`xentax.distillation_loss` to learn them);
  ``sample_weight``'s gradient is exact.

  The gradients are formed in the forward pass; peak memory O(chunk_size V + N D + D V),
  growing linearly with ``chunk_size``, while a larger chunk means fewer, wider matmuls.

  Args:
    student_hidden: ``[..., Ds]`` student activations.
    student_weight: ``[Ds, V]`` student output projection (flax ``Dense`` kernel layout).
    teacher_hidden: ``[..., Dt]`` teacher activations (same leading shape).
    teacher_weight: ``[Dt, V]`` teacher output projection.
    labels: ``[...]`` integer targets in ``[0, V)`` for the hard term, the per-example
      shape: ``student_hidden.shape`` without its last axis.
    temperature: ``T``, finite and > 0, of the soft term.
    alpha: weight of the soft term in ``[0, 1]``; ``1 - alpha`` weights the hard
      cross-entropy.
    chunk_size: tokens per chunk, a positive int; None picks at most 2^22 logits per
      chunk and side.
    $ignore_index
    where: boolean mask broadcastable to the per-example shape; False tokens are dropped:
      left out of every sum and denominator, zero gradient whatever their inputs hold.
    $sample_weight
    reduction: ``"sum"``, ``"mean"`` (``sum s_n l_n / sum s_n`` over the kept tokens,
      their count when unweighted; 0 with zero gradient when none is kept) or
      ``"sum_over_batch_size"`` (``sum s_n l_n`` / the number of kept tokens, Keras's
      default); no ``"none"``: use :func:`xentax.distillation_loss` for per-token values.
    $teacher_gradient

  Returns:
    The scalar loss, float32 (float64 for float64 inputs).

  Raises:
    $raises
    ValueError: also a ``chunk_size`` below 1 or ``reduction="none"``.
    TypeError: also a ``chunk_size`` that is not an integer, forward-mode differentiation
      (a ``custom_vjp`` has no JVP) or a gradient with respect to ``temperature`` or
      ``alpha``.

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> k = jax.random.split(jax.random.key(0), 4)
    >>> hs, ht = jax.random.normal(k[0], (8, 4)), jax.random.normal(k[1], (8, 6))
    >>> ws, wt = jax.random.normal(k[2], (4, 50)), jax.random.normal(k[3], (6, 50))
    >>> y = jnp.arange(8)
    >>> fused = xentax.fused_linear_distillation(hs, ws, ht, wt, y, temperature=2.0,
    ...                                          chunk_size=3)
    >>> dense = xentax.distillation_loss(hs @ ws, ht @ wt, y, temperature=2.0)
    >>> bool(jnp.allclose(fused, dense, rtol=1e-5))
    True

  References:
    Hinton et al., 2015; Liger-Kernel's ``LigerFusedLinearDistillationBase`` and
    ``LigerFusedLinearJSD``; Wijmans et al., "Cut Your Losses", 2024.
  """
  fn_name = "fused_linear_distillation"
  core = functools.partial(
    _distill,
    fn_name,
    temperature=temperature,
    alpha=alpha,
    chunk_size=chunk_size,
    ignore_index=ignore_index,
    reduction=reduction,
    teacher_gradient=teacher_gradient,
  )
  inputs = (student_hidden, student_weight, teacher_hidden, teacher_weight, labels)
  layouts = [
    _fused_layout.explicit_layout(fn_name, student_hidden, student_weight),
    _fused_layout.explicit_layout(fn_name, teacher_hidden, teacher_weight),
  ]
  if all(layout is None for layout in layouts):
    partitioned = _fused_auto.auto_mesh(*inputs[:4])
    return core(*inputs, where=where, sample_weight=sample_weight, partitioned=partitioned)
  if any(layout is not None and layout.vocab is not None for layout in layouts):
    raise ValueError(
      f"{fn_name}: a weight is sharded over the vocabulary; this loss partitions the tokens "
      "only (each chunk's softmax spans the whole vocabulary). Replicate the weights "
      "(P()), or use fused_linear_cross_entropy, which partitions both."
    )
  layout = next(layout for layout in layouts if layout is not None)
  options = {"where": where, "sample_weight": sample_weight}
  return _fused_layout.run_tokens(fn_name, layout, core, inputs, options)


def _distill(
  fn_name,
  student_hidden,
  student_weight,
  teacher_hidden,
  teacher_weight,
  labels,
  *,
  temperature,
  alpha,
  chunk_size,
  ignore_index,
  where,
  sample_weight,
  reduction,
  teacher_gradient,
  batch_axis_name=None,
  partitioned=False,
):
  """:func:`fused_linear_distillation`, each device's tokens when ``batch_axis_name`` names
  the ``shard_map`` axes they are sharded over (the mean's denominator and the total summed),
  or, ``partitioned``, along the axes XLA shards them over on an Auto mesh."""
  _reduce.check_reduction(fn_name, reduction)
  if reduction == "none":
    raise ValueError(
      f"{fn_name}: reduction='none' is not supported (the gradients are formed in the "
      "forward pass for a scalar loss); use 'mean' or 'sum', or xentax.distillation_loss "
      "on explicit logits for per-token values."
    )
  labels, shown = _validate.integer_labels(fn_name, labels, ignore_index)
  option_bad = _validate.options(fn_name, temperature=temperature, alpha=alpha)
  hs, ws, ht, wt = _check_heads(
    fn_name, student_hidden, student_weight, teacher_hidden, teacher_weight, labels
  )
  if not _validate.flag(fn_name, "teacher_gradient", teacher_gradient):
    # A constant teacher: the forward rule then forms no teacher gradient at all.
    ht, wt = jax.lax.stop_gradient(ht), jax.lax.stop_gradient(wt)
  vocab_size = ws.shape[1]
  num_tokens = int(labels.size)
  if chunk_size is None:
    chunk_size = max(1, min(num_tokens, _AUTO_CHUNK_ELEMENTS // max(vocab_size, 1)))
  chunk_size = _validate.positive_int(fn_name, "chunk_size", chunk_size)

  dtype = _common.compute_dtype(jnp.result_type(hs, ws, ht, wt))
  prepared = prepare_labels(
    fn_name,
    labels,
    num_classes=vocab_size,
    class_weights=None,
    ignore_index=ignore_index,
    where=where,
    dtype=dtype,
    shown=shown,
    option_bad=option_bad,
  )
  valid = prepared.valid.reshape(-1)
  weights = _validate.sample_weights(fn_name, sample_weight, labels.shape, dtype)
  coef = _token_coefficients(
    valid, weights, prepared.bad.reshape(-1), reduction, dtype, batch_axis_name
  )
  chunk_size = min(chunk_size, max(num_tokens, 1))
  num_chunks = max(1, -(-num_tokens // chunk_size))
  config = _Config(chunk_size, num_chunks, teacher_grad=True, partitioned=partitioned)
  # A partitioned call pads each device's share instead, so the tokens still divide.
  length = num_tokens if partitioned else num_chunks * chunk_size
  total = _fused_distill(
    config,
    _padded_rows(hs, valid, length),
    ws,
    _padded_rows(ht, valid, length),
    wt,
    _pad(prepared.labels.reshape(-1), length),
    _pad(coef, length),
    jnp.asarray(temperature, dtype),
    jnp.asarray(alpha, dtype),
  )
  return total if batch_axis_name is None else jax.lax.psum(total, batch_axis_name)


def _check_heads(fn_name, student_hidden, student_weight, teacher_hidden, teacher_weight, labels):
  """The two heads checked against each other and the labels; returned as arrays."""
  for name, x in (
    ("student_hidden", student_hidden),
    ("student_weight", student_weight),
    ("teacher_hidden", teacher_hidden),
    ("teacher_weight", teacher_weight),
  ):
    _validate.float_array(fn_name, name, x)
  hs, ws = jnp.asarray(student_hidden), jnp.asarray(student_weight)
  ht, wt = jnp.asarray(teacher_hidden), jnp.asarray(teacher_weight)
  _check_head(fn_name, "student", hs, ws)
  _check_head(fn_name, "teacher", ht, wt)
  if ws.shape[1] != wt.shape[1]:
    raise ValueError(
      f"{fn_name}: student_weight has {ws.shape[1]} classes but teacher_weight "
      f"{wt.shape[1]}; both heads must cover the same vocabulary."
    )
  batch_shape = hs.shape[:-1]
  if ht.shape[:-1] != batch_shape or labels.shape != batch_shape:
    raise ValueError(
      f"{fn_name}: student_hidden {hs.shape}, teacher_hidden {ht.shape} and labels "
      f"{labels.shape} must share the leading shape {batch_shape}."
    )
  return (*_common.nonempty_features(hs, ws), *_common.nonempty_features(ht, wt))


def _token_coefficients(valid, weights, bad, reduction, dtype, axis_name=None):
  """Each token's weight in the reduction: ``s_n``, ``s_n / sum_K s`` or ``s_n / |K|``; 0 for
  dropped tokens (even where ``s_n`` is NaN), NaN for a bad label or option. The sums run
  over every token shard of ``axis_name``."""
  coef = valid.astype(dtype)
  if weights is not None:
    coef = jnp.where(valid, weights.reshape(-1), 0.0)
  if reduction != "sum":
    count = jnp.sum(coef) if reduction == "mean" else jnp.sum(valid.astype(dtype))
    if axis_name is not None:
      count = jax.lax.psum(count, axis_name)
    coef = jnp.where(count != 0, coef / jnp.where(count != 0, count, 1.0), 0.0)
  return coef + _common.nan_where(bad, dtype)


def _check_head(fn_name, side, h, w):
  """``ValueError`` unless ``h`` is ``[..., D]`` and ``w`` is ``[D, V]``."""
  if w.ndim != 2 or h.ndim < 1 or h.shape[-1] != w.shape[0]:
    raise ValueError(
      f"{fn_name}: {side}_hidden has shape {h.shape} and {side}_weight {w.shape}; they must "
      "be [..., D] and [D, V] (flax Dense kernel layout; pass embedding.T for a tied head)."
    )


def _pad(x, length):
  """``x`` padded with zeros along its first axis to ``length``."""
  return jnp.pad(x, [(0, length - x.shape[0])] + [(0, 0)] * (x.ndim - 1))


def _padded_rows(h, valid, length):
  """``[N, D]`` rows, dropped tokens zeroed (so inf/NaN there cannot leak), padded."""
  h = h.reshape(-1, h.shape[-1])
  return _pad(jnp.where(valid[:, None], h, jnp.zeros((), h.dtype)), length)


def _chunk_terms(hs, ws, ht, wt, labels, coef, temperature, alpha, teacher_grad):
  """Weighted loss and logit gradients of one chunk of tokens (``[chunk, V]`` each side)."""
  dtype = coef.dtype
  zs = jnp.dot(hs, ws, preferred_element_type=dtype).astype(dtype)
  zt = jnp.dot(ht, wt, preferred_element_type=dtype).astype(dtype)
  log_ps = zs / temperature - _rows.logsumexp(zs / temperature)[:, None]
  log_pt = zt / temperature - _rows.logsumexp(zt / temperature)[:, None]
  pt = jnp.exp(log_pt)
  has_mass = pt > 0
  # 0 log 0 = 0: select the log-ratio first so -inf logits never meet a zero weight.
  ratio = jnp.where(has_mass, log_pt - jnp.where(has_mass, log_ps, 0.0), 0.0)
  kl = jnp.sum(jnp.where(has_mass, pt * ratio, 0.0), axis=1)
  lse = _rows.logsumexp(zs)
  target = jnp.take_along_axis(zs, labels[:, None], axis=1)[:, 0]
  ce = lse - target
  losses = alpha * jnp.square(temperature) * kl + (1 - alpha) * ce
  live = coef != 0  # padding and dropped rows: exactly 0, whatever their logits
  total = jnp.sum(jnp.where(live, coef * losses, 0.0))

  onehot = jnp.arange(zs.shape[1]) == labels[:, None]
  g_s = alpha * temperature * (jnp.exp(log_ps) - pt) + (1 - alpha) * (
    jnp.exp(zs - lse[:, None]) - onehot
  )
  g_s = jnp.where(live[:, None], coef[:, None] * g_s, 0.0)
  g_t = None
  if teacher_grad:
    g_t = alpha * temperature * jnp.where(has_mass, pt * (ratio - kl[:, None]), 0.0)
    g_t = jnp.where(live[:, None], coef[:, None] * g_t, 0.0)
  return total, losses, g_s, g_t


def _forward(config: _Config, hs, ws, ht, wt, labels, coef, temperature, alpha):
  """One scan over token chunks: the loss and (if asked) all four gradients."""
  dtype = coef.dtype
  n, chunk = config.num_chunks, config.chunk_size
  xs = (
    hs.reshape(n, chunk, hs.shape[-1]),
    ht.reshape(n, chunk, ht.shape[-1]),
    labels.reshape(n, chunk),
    coef.reshape(n, chunk),
  )

  def body(carry, x):
    total, d_ws, d_wt = carry
    hs_c, ht_c, labels_c, coef_c = x
    loss, token_losses, g_s, g_t = _chunk_terms(
      hs_c, ws, ht_c, wt, labels_c, coef_c, temperature, alpha, config.teacher_grad
    )
    d_hs = jnp.dot(g_s.astype(ws.dtype), ws.T, preferred_element_type=dtype)
    d_ws = d_ws + jnp.dot(hs_c.T, g_s.astype(hs_c.dtype), preferred_element_type=dtype)
    d_ht = None
    if config.teacher_grad:
      d_ht = jnp.dot(g_t.astype(wt.dtype), wt.T, preferred_element_type=dtype)
      d_wt = d_wt + jnp.dot(ht_c.T, g_t.astype(ht_c.dtype), preferred_element_type=dtype)
    return (total + loss, d_ws, d_wt), (d_hs, d_ht, token_losses)

  init = (
    jnp.zeros((), dtype),
    jnp.zeros(ws.shape, dtype),
    jnp.zeros(wt.shape, dtype) if config.teacher_grad else None,
  )
  init = _common.varying_like(init, xs, ws, wt, temperature, alpha)
  (total, d_ws, d_wt), (d_hs, d_ht, token_losses) = lax.scan(body, init, xs)
  d_hs = d_hs.reshape(hs.shape)
  d_ht = None if d_ht is None else d_ht.reshape(ht.shape)
  # d total / d coef_n is token n's loss, also where coef_n = 0: sample_weight's cotangent.
  return total, (d_hs, d_ws, d_ht, d_wt, token_losses.reshape(coef.shape))


_NAME = "fused_linear_distillation"
_INPUTS: tuple[str, ...] = ("student_hidden", "student_weight", "teacher_hidden")
_INPUTS += ("teacher_weight", "labels")
_INPUTS += ("coef", "temperature", "alpha")
_OUTPUTS = ("total", *(f"d_{k}" for k in _INPUTS[:4]), "token_losses")
_ROLES = (
  *((k, ("n", "d")) for k in ("student_hidden", "d_student_hidden")),
  *((k, ("n", "e")) for k in ("teacher_hidden", "d_teacher_hidden")),
  *((k, ("n",)) for k in ("labels", "coef", "token_losses")),
  *((k, None) for k in ("student_weight", "teacher_weight", "temperature", "alpha", "total")),
  *((k, None) for k in ("d_student_weight", "d_teacher_weight")),
)


def _forward_share(config: _Config, shards: _fused_auto.Shards, **inputs):
  """:func:`_forward` on one device's tokens, padded to whole chunks; sums all-reduced."""
  num_tokens = inputs["labels"].shape[0]
  chunk_size = min(config.chunk_size, max(num_tokens, 1))
  num_chunks = max(1, -(-num_tokens // chunk_size))
  hs, ws, ht, wt, labels, coef, temperature, alpha = (inputs[k] for k in _INPUTS)
  hs, ht, labels, coef = (_pad(x, num_chunks * chunk_size) for x in (hs, ht, labels, coef))
  local = config._replace(chunk_size=chunk_size, num_chunks=num_chunks, partitioned=False)
  total, grads = _forward(local, hs, ws, ht, wt, labels, coef, temperature, alpha)
  d_hs, d_ws, d_ht, d_wt, token_losses = grads
  if shards.tokens is not None:
    total, d_ws, d_wt = (
      None if x is None else lax.psum(x, shards.tokens) for x in (total, d_ws, d_wt)
    )
  rows = (d_hs, d_ht, token_losses)
  d_hs, d_ht, token_losses = (None if x is None else x[:num_tokens] for x in rows)
  out = dict(zip(_OUTPUTS, (total, d_hs, d_ws, d_ht, d_wt, token_losses), strict=True))
  return {k: v for k, v in out.items() if v is not None}


def _forward_any(config: _Config, *inputs):
  """:func:`_forward`, as partitioned ops when ``config.partitioned``."""
  if not config.partitioned:
    return _forward(config, *inputs)
  teacher = ("d_teacher_hidden", "d_teacher_weight")
  outputs = tuple(k for k in _OUTPUTS if config.teacher_grad or k not in teacher)
  call = _fused_auto.Call(_NAME, _forward_share, config, _INPUTS, outputs, _ROLES)
  out = _fused_auto.run(call, dict(zip(_INPUTS, inputs, strict=True)))
  return out["total"], tuple(out.get(k) for k in _OUTPUTS[1:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _fused_distill(config, hs, ws, ht, wt, labels, coef, temperature, alpha):
  """The reduced loss; the forward rule saves every gradient and the ``[N]`` losses."""
  no_teacher_grad = config._replace(teacher_grad=False)
  total, _ = _forward_any(no_teacher_grad, hs, ws, ht, wt, labels, coef, temperature, alpha)
  return total


def _fused_distill_fwd(config, hs, ws, ht, wt, labels, coef, temperature, alpha):
  for name, x in (("temperature", temperature), ("alpha", alpha)):
    if x.perturbed:
      raise TypeError(
        f"fused_linear_distillation: differentiating with respect to {name} is not "
        "supported (its gradient is not formed by the fused backward pass). Pass it as a "
        "constant (jax.lax.stop_gradient), or use xentax.distillation_loss on explicit "
        f"logits, which is differentiable in {name}."
      )
  teacher_grad = ht.perturbed or wt.perturbed
  values = [x.value for x in (hs, ws, ht, wt, labels, coef, temperature, alpha)]
  total, grads = _forward_any(config._replace(teacher_grad=teacher_grad), *values)
  return total, (grads, values)


def _fused_distill_bwd(config, residuals, g):
  (d_hs, d_ws, d_ht, d_wt, token_losses), values = residuals
  hs, ws, ht, wt, labels, coef, temperature, alpha = values
  if isinstance(g, jax.custom_derivatives.SymbolicZero):
    g = jnp.zeros((), coef.dtype)

  def scaled(grad, like):
    if grad is None:
      return jnp.zeros_like(like)
    return (g * grad).astype(like.dtype)

  grads = (
    scaled(d_hs, hs),
    scaled(d_ws, ws),
    scaled(d_ht, ht),
    scaled(d_wt, wt),
    None,
    g * token_losses,
    jnp.zeros_like(temperature),
    jnp.zeros_like(alpha),
  )
  return tuple(map(_common.cotangent_like, grads, values))


_fused_distill.defvjp(_fused_distill_fwd, _fused_distill_bwd, symbolic_zeros=True)
