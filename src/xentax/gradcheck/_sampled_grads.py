r"""Closed-form gradient of the sampled softmax cross-entropy.

Written independently of :mod:`xentax.losses`: the ``1 + S`` corrected logits
``a_n = [t_n, s_n1 .. s_nS]``, their softmax ``p_n`` (a masked accidental hit has ``p = 0``)
and the reduction's weight ``r_n = d L / d l_n`` give ``d L / d a_n = r_n (p_n - e_0)``, and
the chain rule through ``a = [h W[:, y], h W[:, c]] + b - log Q`` gives every input's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.gradcheck._grad_common import check_reduction, float_dtype, kept_mask, reduce_grad
from xentax.losses import contract


def sampled_softmax_cross_entropy_grad(
  hidden,
  weight,
  labels,
  sampled_classes,
  *,
  sampled_log_q,
  true_log_q,
  remove_accidental_hits: bool = True,
  bias=None,
  ignore_index=None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> dict:
  r"""Gradient of :func:`xentax.sampled_softmax_cross_entropy` with respect to every float input.

  .. math::
    G_n = r_n (p_n - e_0), \quad
    \frac{\partial L}{\partial h_n} = \sum_k G_{nk} W_{:, c_{nk}}, \quad
    \frac{\partial L}{\partial W_{:, c}} = \sum_{n, k: c_{nk} = c} G_{nk} h_n,

  with ``c_n = [y_n, c_1 .. c_S]``; ``d bias`` sums ``G`` the same way, and the corrections
  get ``-G``: ``d true_log_q_n = -G_n0``, ``d sampled_log_q_j = -sum_n G_nj``. ``r_n`` is the
  reduction's weight of example ``n`` (0 where dropped).

  Args:
    hidden: ``[N, D]`` hidden states.
    weight: ``[D, V]`` output weights.
    labels: ``[N]`` integer true classes.
    sampled_classes: ``[S]`` integer sampled classes.
    sampled_log_q: ``[S]`` corrections of the sampled logits.
    true_log_q: corrections of the true logits, broadcastable to ``[N]``.
    remove_accidental_hits: as the loss takes it.
    bias: ``[V]`` or None.
    ignore_index: as the loss takes it.
    where: as the loss takes it.
    sample_weight: as the loss takes it.
    reduction: as the loss takes it.

  Returns:
    A dict with ``d_hidden``, ``d_weight``, ``d_bias`` (None without a bias),
    ``d_sampled_log_q`` and ``d_true_log_q``. For ``reduction="none"``, the gradients of
    the sum of the per-example losses.

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> h, w = jax.random.normal(jax.random.key(0), (3, 2)), jnp.ones((2, 6))
    >>> y, c = jnp.array([0, 1, 5]), jnp.array([2, 5])
    >>> g = xentax.gradcheck.sampled_softmax_cross_entropy_grad(
    ...   h, w, y, c, sampled_log_q=jnp.zeros(2), true_log_q=0.0)
    >>> auto = jax.grad(lambda h: xentax.sampled_softmax_cross_entropy(
    ...   h, w, y, c, sampled_log_q=jnp.zeros(2), true_log_q=0.0))(h)
    >>> bool(jnp.allclose(g["d_hidden"], auto, atol=1e-6))
    True
  """
  fn_name = "sampled_softmax_cross_entropy_grad"
  check_reduction(fn_name, reduction)
  hidden = contract.float_array(fn_name, "hidden", hidden)
  weight = contract.float_array(fn_name, "weight", weight)
  if hidden.ndim != 2 or weight.ndim != 2 or hidden.shape[1] != weight.shape[0]:
    raise ValueError(
      f"{fn_name}: hidden has shape {hidden.shape} and weight {weight.shape}; they must be "
      "[N, D] and [D, V]."
    )
  dtype = float_dtype(jnp.result_type(hidden, weight))
  h, w = hidden.astype(dtype), weight.astype(dtype)
  labels = jnp.asarray(labels)
  sampled = jnp.asarray(sampled_classes)
  sampled_log_q = 0.0 if sampled_log_q is None else sampled_log_q  # None: no correction
  true_log_q = 0.0 if true_log_q is None else true_log_q
  kept = kept_mask(where, labels.shape)
  if ignore_index is not None:
    kept = kept & (labels != ignore_index)
  y = jnp.where(kept, labels, 0)
  columns = jnp.concatenate([y[:, None], jnp.broadcast_to(sampled, (len(y), len(sampled)))], 1)
  b = jnp.zeros(w.shape[1], dtype) if bias is None else jnp.asarray(bias, dtype)
  correction = jnp.concatenate(
    [
      jnp.broadcast_to(jnp.asarray(true_log_q, dtype), y.shape)[:, None],
      jnp.broadcast_to(jnp.asarray(sampled_log_q, dtype), columns[:, 1:].shape),
    ],
    axis=1,
  )
  logits = jnp.einsum("nd,dnk->nk", h, w[:, columns]) + b[columns] - correction
  if remove_accidental_hits:
    hits = jnp.concatenate([jnp.zeros_like(y, bool)[:, None], sampled[None] == y[:, None]], 1)
    logits = jnp.where(hits, -jnp.inf, logits)
  logits = jnp.where(kept[:, None], logits, 0.0)
  p = jax.nn.softmax(logits, axis=1)
  g = reduce_grad(
    p - jax.nn.one_hot(0, p.shape[1], dtype=dtype), kept, reduction, sample_weight=sample_weight
  )
  d_weight = jnp.zeros_like(w).at[:, columns].add(jnp.einsum("nd,nk->dnk", h, g))
  d_bias = None if bias is None else jnp.zeros_like(b).at[columns].add(g)
  return {
    "d_hidden": jnp.einsum("nk,dnk->nd", g, w[:, columns]),
    "d_weight": d_weight,
    "d_bias": d_bias,
    "d_sampled_log_q": -jnp.sum(g[:, 1:], axis=0),
    "d_true_log_q": -g[:, 0],
  }
