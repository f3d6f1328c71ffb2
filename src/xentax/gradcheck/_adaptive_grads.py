r"""Closed-form gradient of the adaptive softmax cross-entropy.

Written independently of :mod:`xentax.losses`. Example ``n`` has a head target ``t_n`` (its
label, or its cluster's token) and, in cluster ``i``, a target ``y_n - c_{i-1}`` within it;
with ``r_n = d L / d l_n`` the logit gradients are ``G = r_n (softmax(u_n) - e_{t_n})`` for the
head logits ``u = h W + b`` and ``G_i = r_n [n in i] (softmax(z_n) - e)`` for cluster ``i``'s
``z = h P_i O_i``, and the chain rule gives the rest.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.gradcheck._grad_common import check_reduction, float_dtype, kept_mask, reduce_grad
from xentax.losses import contract


def adaptive_softmax_cross_entropy_grad(
  hidden,
  head_weight,
  tail_weights,
  labels,
  *,
  cutoffs,
  head_bias=None,
  ignore_index=None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> dict:
  r"""Gradient of :func:`xentax.adaptive_softmax_cross_entropy` with respect to every weight.

  .. math::
    \frac{\partial L}{\partial h} = G W^T + \sum_i G_i O_i^T P_i^T, \quad
    \frac{\partial L}{\partial W} = h^T G, \quad
    \frac{\partial L}{\partial O_i} = (h P_i)^T G_i, \quad
    \frac{\partial L}{\partial P_i} = h^T G_i O_i^T,

  and ``d b = sum_n G_n`` (``G``, ``G_i`` as in the module notes).

  Args:
    hidden: ``[N, D]`` hidden states.
    head_weight: ``[D, c_0 + K]``.
    tail_weights: ``K`` pairs ``(P_i [D, d_i], O_i [d_i, n_i])``.
    labels: ``[N]`` integer classes.
    cutoffs: the loss's cutoffs.
    head_bias: ``[c_0 + K]`` or None.
    ignore_index: as the loss takes it.
    where: as the loss takes it.
    sample_weight: as the loss takes it.
    reduction: as the loss takes it.

  Returns:
    A dict with ``d_hidden``, ``d_head_weight``, ``d_tail_weights`` (a list of
    ``(d P_i, d O_i)``) and ``d_head_bias`` (None without a bias).

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> h = jax.random.normal(jax.random.key(0), (3, 4))
    >>> head, tails = jnp.ones((4, 3)), [(jnp.ones((4, 2)), jnp.eye(2, 3))]
    >>> g = xentax.gradcheck.adaptive_softmax_cross_entropy_grad(
    ...   h, head, tails, jnp.array([0, 2, 4]), cutoffs=[2])
    >>> auto = jax.grad(lambda h: xentax.adaptive_softmax_cross_entropy(
    ...   h, head, tails, jnp.array([0, 2, 4]), cutoffs=[2]))(h)
    >>> bool(jnp.allclose(g["d_hidden"], auto, atol=1e-6))
    True
  """
  fn_name = "adaptive_softmax_cross_entropy_grad"
  check_reduction(fn_name, reduction)
  hidden = contract.float_array(fn_name, "hidden", hidden)
  dtype = float_dtype(jnp.result_type(hidden, head_weight))
  h = hidden.astype(dtype)
  w = jnp.asarray(head_weight, dtype)
  tails = [(jnp.asarray(p, dtype), jnp.asarray(o, dtype)) for p, o in tail_weights]
  labels = jnp.asarray(labels)
  bounds = (*[int(c) for c in cutoffs], int(cutoffs[-1]) + tails[-1][1].shape[1])
  kept = kept_mask(where, labels.shape)
  if ignore_index is not None:
    kept = kept & (labels != ignore_index)
  y = jnp.where(kept, labels, 0)
  u = h @ w + (0 if head_bias is None else jnp.asarray(head_bias, dtype))
  target = y
  cluster_grads = []
  for i, (p, o) in enumerate(tails):
    inside = (y >= bounds[i]) & (y < bounds[i + 1])
    target = jnp.where(inside, bounds[0] + i, target)
    z = h @ p @ o
    onehot = jax.nn.one_hot(jnp.where(inside, y - bounds[i], -1), o.shape[1], dtype=dtype)
    g_i = jnp.where(inside[:, None], jax.nn.softmax(z, axis=1) - onehot, 0.0)
    cluster_grads.append(reduce_grad(g_i, kept, reduction, sample_weight=sample_weight))
  g = jax.nn.softmax(u, axis=1) - jax.nn.one_hot(target, u.shape[1], dtype=dtype)
  g = reduce_grad(g, kept, reduction, sample_weight=sample_weight)
  d_hidden = g @ w.T + sum(
    g_i @ o.T @ p.T for g_i, (p, o) in zip(cluster_grads, tails, strict=True)
  )
  return {
    "d_hidden": d_hidden,
    "d_head_weight": h.T @ g,
    "d_tail_weights": [
      (h.T @ (g_i @ o.T), (h @ p).T @ g_i) for g_i, (p, o) in zip(cluster_grads, tails, strict=True)
    ],
    "d_head_bias": None if head_bias is None else jnp.sum(g, axis=0),
  }
