"""Masking and reduction for the closed-form gradients, shared by every loss's formula.

Design notes:
  * A loss ``L = R(l_1, ..., l_N)`` reduces per-example losses ``l_n`` that each depend on
    their own scores only, so its gradient is the per-example gradient ``g_n = d l_n /
    d s_n`` times ``d R / d l_n``: ``1`` for ``"sum"``, ``1 / D`` for ``"mean"`` (``D``
    the kept count, or ``sum w[y_n]`` over kept examples for the weighted sparse losses;
    it does not depend on the scores), and ``0`` for dropped examples.
  * For ``"none"`` the Jacobian is block diagonal with blocks ``g_n``; the closed form
    returns those rows, the gradient of ``sum(l_n)`` (what
    ``jax.grad(lambda s: loss(s, reduction="none").sum())`` returns).
  * Written independently of :mod:`xentax.losses` so it can check it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

REDUCTIONS = ("none", "sum", "mean", "sum_over_batch_size")


def check_reduction(fn_name: str, reduction: str) -> None:
  if reduction not in REDUCTIONS:
    raise ValueError(
      f"{fn_name}: reduction={reduction!r} is not supported; choose one of {REDUCTIONS}."
    )


def float_dtype(x) -> jnp.dtype:
  """float64 stays float64; every other input is differentiated in float32, as the losses do."""
  return jnp.dtype(jnp.float64) if jnp.result_type(x) == jnp.float64 else jnp.dtype(jnp.float32)


def kept_mask(where, shape) -> jax.Array:
  return jnp.ones(shape, bool) if where is None else jnp.broadcast_to(jnp.asarray(where), shape)


def reduce_grad(g, kept, reduction: str, denominator=None, sample_weight=None) -> jax.Array:
  """Scale per-example gradients ``g`` (``kept.shape`` plus trailing axes) by ``dR / dl_n``.

  With sample weights ``s_n`` the loss is ``R = sum_K s_n l_n / D``, so ``dR / dl_n =
  s_n / D``: ``D = 1`` for ``"none"`` and ``"sum"``, ``sum_K s_n d_n`` for ``"mean"`` and
  the kept count ``|K|`` for ``"sum_over_batch_size"``.

  Args:
    g: per-example gradients; ``g.shape[:kept.ndim] == kept.shape``.
    kept: boolean mask of the examples that enter the loss.
    reduction: one of :data:`REDUCTIONS`.
    denominator: per-example contribution ``d_n`` to the mean's denominator (``None``: 1).
    sample_weight: per-example weights ``s_n`` of ``kept``'s shape (``None``: 1).
  """
  extra = (None,) * (g.ndim - kept.ndim)
  g = jnp.where(kept[(...,) + extra], g, jnp.zeros_like(g))
  if sample_weight is not None:
    sample_weight = jnp.broadcast_to(jnp.asarray(sample_weight, g.dtype), kept.shape)
    g = g * sample_weight[(...,) + extra]
  if reduction in ("none", "sum"):
    return g
  weights = jnp.ones(kept.shape, g.dtype) if denominator is None else denominator
  if reduction == "sum_over_batch_size":
    weights = jnp.ones(kept.shape, g.dtype)
  elif sample_weight is not None:
    weights = weights * sample_weight
  total = jnp.sum(jnp.where(kept, weights, jnp.zeros_like(weights)))
  return jnp.where(total != 0, g / jnp.where(total != 0, total, 1), jnp.zeros_like(g))


def check_inputs(
  fn_name: str,
  kind: str,
  scores,
  labels,
  *,
  axis: int = -1,
  ignore_index=None,
  where=None,
  probabilities: bool = False,
  class_weights=None,
  **options,
):
  """Validate a closed form's inputs exactly as the loss it differentiates does.

  The closed forms share no *formula* with :mod:`xentax.losses`, but they accept the same
  inputs, so they use the same validation layer: a label out of range, a target outside
  [0, 1], an option outside its domain or shapes that do not fit raise the same
  ``ValueError``/``TypeError`` naming the argument (instead of a finite gradient for an
  input the loss rejects, or an internal shape error).

  Args:
    kind: ``"sparse"`` (integer labels), ``"dense"`` (targets of the scores' shape) or
      ``"binary"`` (elementwise labels in [0, 1]).
    probabilities: the scores are probabilities, checked to lie in [0, 1].
    **options: float options (``label_smoothing``, ``gamma``, ...), checked against their
      domain; ``weights`` and ``pos_weight`` must also broadcast to the scores' shape,
      ``sample_weight`` to the per-example shape.

  Returns:
    ``(scores, labels)`` as JAX arrays.
  """
  from xentax.losses import contract

  scores = contract.float_array(fn_name, "logits/probs", scores)
  if kind == "sparse":
    labels, shown = contract.integer_labels(fn_name, labels, ignore_index)
    axis = contract.normalize_axis(fn_name, axis, scores.ndim)
    contract.check_example_shape(fn_name, scores.shape, axis, labels)
    num_classes = scores.shape[axis]
    kept = contract.broadcast_mask(fn_name, where, labels.shape)
    if ignore_index is not None:
      kept = kept & (labels != ignore_index)
    bad = kept & ~((labels >= 0) & (labels < num_classes))
    allowed = f"labels must lie in [0, {num_classes})"
    if ignore_index is not None:
      allowed += f" or equal ignore_index={ignore_index}"
    contract.check_values(fn_name, allowed, shown, bad)
  else:
    name = "targets" if kind == "dense" else "labels"
    labels = contract.numeric_array(fn_name, name, labels)
    contract.check_same_shape(fn_name, "logits/probs", scores, name, labels)
    axis = contract.normalize_axis(fn_name, axis, scores.ndim) if kind == "dense" else -1
    contract.check_values(
      fn_name, f"{name} must lie in [0, 1]", labels, (labels < 0) | (labels > 1)
    )
    num_classes = scores.shape[axis] if scores.ndim else 1
  contract.check_num_classes(fn_name, num_classes)
  if probabilities:
    contract.check_values(fn_name, "probs must lie in [0, 1]", scores, (scores < 0) | (scores > 1))
  if class_weights is not None:
    class_weights = contract.to_array(fn_name, "class_weights", class_weights)
    contract.class_weight_vector(fn_name, class_weights, num_classes, jnp.float64)
    contract.option(fn_name, "class_weights", class_weights)
  for name, value in options.items():
    if value is None:
      continue
    if name in ("weights", "pos_weight"):
      value = contract.to_array(fn_name, name, value)
      contract.broadcast_param(fn_name, name, value, scores.shape, scores.dtype)
    if name == "sample_weight":
      example_shape = scores.shape if kind == "binary" else jnp.shape(labels)
      if kind == "dense":
        example_shape = scores.shape[:axis] + scores.shape[axis + 1 :]
      contract.sample_weights(fn_name, value, example_shape, jnp.float64)
      continue
    contract.option(fn_name, name, value)
  return scores, labels
