r"""Sampled softmax: the cross-entropy over each example's true class and ``S`` shared
sampled classes, each logit corrected by the log of its expected count."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.losses import _common, _frame, _reduce, _validate
from xentax.losses._sparse_terms import prepare_labels


@_frame.loss
def sampled_softmax_cross_entropy(
  hidden,
  weight,
  labels,
  sampled_classes,
  *,
  sampled_log_q,
  true_log_q,
  remove_accidental_hits: bool = True,
  bias=None,
  ignore_index: int | None = None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Sampled softmax cross-entropy (Jean et al. 2015), ``tf.nn.sampled_softmax_loss``'s
  semantics.

  With ``z_c = h_n . W[:, c] + b_c`` and the sampled classes ``c_1 .. c_S``:

  .. math::
    t_n = z_{y_n} - \log Q_n, \qquad
    s_{nj} = z_{c_j} - \log Q(c_j) \;\; (-\infty \text{ where } c_j = y_n
    \text{ and } \texttt{remove\_accidental\_hits}),

    \ell_n = \log\Big(e^{t_n} + \sum_j e^{s_{nj}}\Big) - t_n,

  the softmax cross-entropy over ``1 + S`` columns whose target is column 0. Repeated sampled
  classes stay separate columns, as in TensorFlow. Only those columns of ``weight`` are
  gathered: a step costs ``O(N (S + 1) D)``, against ``O(N V D)`` for the full softmax, whose
  gradient the sampled one estimates (consistently as ``S`` grows, when ``log Q`` is the
  sampler's).

  Gradient: with ``p = softmax([t_n, s_n])``, ``d l_n / d t_n = p_0 - 1`` and
  ``d l_n / d s_nj = p_j``; through ``z`` they reach ``h_n``, the gathered columns of
  ``weight`` and ``bias``, and with the opposite sign ``true_log_q`` and ``sampled_log_q``.

  Args:
    hidden: ``[..., D]`` hidden states.
    weight: ``[D, V]`` output weights (the ``x @ W`` layout; TensorFlow's ``weights`` is
      ``[V, D]``: pass its transpose).
    labels: integer true classes, ``hidden.shape[:-1]`` (the per-example shape).
    sampled_classes: ``[S]`` integer classes in ``[0, V)``, shared by every example
      (:mod:`xentax.sampling` draws them).
    sampled_log_q: ``[S]`` finite corrections subtracted from the sampled logits: the log
      expected counts of TensorFlow's samplers, or any log-probability of your sampler;
      None: no correction.
    true_log_q: finite corrections subtracted from the true logits, broadcastable to the
      per-example shape; None: no correction.
    remove_accidental_hits: mask each sampled column equal to its example's label
      (TensorFlow's default).
    bias: ``[V]`` output bias, or None.
    $options

  $contract

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> k = jax.random.split(jax.random.key(0), 3)
    >>> h, w = jax.random.normal(k[0], (4, 8)), jax.random.normal(k[1], (8, 1000))
    >>> y = jnp.array([1, 5, 7, 999])
    >>> c = xentax.sampling.log_uniform_candidates(k[2], y, 64, 1000)
    >>> loss = xentax.sampled_softmax_cross_entropy(
    ...   h, w, y, c.sampled_classes, sampled_log_q=c.sampled_log_q, true_log_q=c.true_log_q)
    >>> bool(jnp.isfinite(loss))
    True

  References:
    Jean et al., "On Using Very Large Target Vocabulary for Neural Machine Translation",
    2015; ``tf.nn.sampled_softmax_loss``.
  """
  name = "sampled_softmax_cross_entropy"
  _reduce.check_reduction(name, reduction)
  hidden = _validate.float_array(name, "hidden", hidden)
  weight = _validate.float_array(name, "weight", weight)
  labels, shown = _validate.integer_labels(name, labels, ignore_index)
  sampled, _ = _validate.integer_labels(name, sampled_classes, arg_name="sampled_classes")
  _check_shapes(name, hidden, weight, labels, sampled)
  vocab_size = weight.shape[1]
  dtype = _common.compute_dtype(jnp.result_type(hidden, weight))
  if bias is not None:
    bias = _validate.float_array(name, "bias", bias)
    if bias.shape != (vocab_size,):
      raise ValueError(f"{name}: bias has shape {bias.shape}; it must be ({vocab_size},).")
  out_of_range = (sampled < 0) | (sampled >= vocab_size)
  _validate.check_values(
    name, f"sampled_classes must lie in [0, {vocab_size})", sampled, out_of_range
  )
  sampled_log_q = _validate.finite_param(name, "sampled_log_q", sampled_log_q, sampled.shape, dtype)
  true_log_q = _validate.finite_param(name, "true_log_q", true_log_q, labels.shape, dtype)
  prepared = prepare_labels(
    name,
    labels,
    num_classes=vocab_size,
    class_weights=None,
    ignore_index=ignore_index,
    where=where,
    dtype=dtype,
    shown=shown,
  )
  weights = _validate.sample_weights(name, sample_weight, labels.shape, dtype)
  valid = prepared.valid.reshape(-1)
  # A bad sampled class or sampled correction spoils every kept example; a bad true
  # correction its own.
  shared_bad = jnp.any(out_of_range) | jnp.any(~jnp.isfinite(sampled_log_q))
  bad = prepared.bad.reshape(-1) | (valid & (shared_bad | ~jnp.isfinite(true_log_q.reshape(-1))))
  # Dropped rows become zeros, so inf/NaN there reaches neither the loss nor a gradient.
  h = hidden.reshape(-1, hidden.shape[-1])
  h = jnp.where(valid[:, None], h, jnp.zeros((), h.dtype))
  y = prepared.labels.reshape(-1)
  safe_sampled = jnp.where(out_of_range, 0, sampled)
  true_q = jnp.where(valid & ~bad, true_log_q.reshape(-1), 0.0)
  sampled_q = jnp.where(jnp.isfinite(sampled_log_q), sampled_log_q, 0.0)
  losses = _losses(h, weight, bias, y, safe_sampled, true_q, sampled_q, remove_accidental_hits)
  losses = jnp.where(valid, losses, 0.0) + _common.nan_where(bad, losses.dtype)
  return _reduce.reduce_losses(
    losses.reshape(labels.shape), valid=prepared.valid, sample_weight=weights, reduction=reduction
  )


def _losses(h, weight, bias, labels, sampled, true_log_q, sampled_log_q, remove_hits):
  """``[N]`` losses over the true and the sampled columns (the formula above)."""
  dtype = _common.compute_dtype(jnp.result_type(h, weight))
  w_true = jnp.take(weight, labels, axis=1)  # [D, N]
  true = jnp.einsum("nd,dn->n", h, w_true, preferred_element_type=dtype)
  w_sampled = jnp.take(weight, sampled, axis=1)  # [D, S]
  logits = jnp.dot(h, w_sampled, preferred_element_type=dtype)
  if bias is not None:
    true = true + bias[labels].astype(dtype)
    logits = logits + bias[sampled].astype(dtype)
  true = true - true_log_q
  logits = logits - sampled_log_q
  if remove_hits:
    logits = jnp.where(sampled[None, :] == labels[:, None], -jnp.inf, logits)
  # initial: no sampled class (S = 0) leaves the true column alone, a loss of 0.
  top = jax.lax.stop_gradient(jnp.maximum(true, jnp.max(logits, axis=1, initial=-jnp.inf)))
  total = jnp.exp(true - top) + jnp.sum(jnp.exp(logits - top[:, None]), axis=1)
  return top + jnp.log(total) - true


def _check_shapes(name, hidden, weight, labels, sampled):
  if weight.ndim != 2 or hidden.ndim < 1 or hidden.shape[-1] != weight.shape[0]:
    raise ValueError(
      f"{name}: hidden has shape {hidden.shape} and weight {weight.shape}; they must be "
      "[..., D] and [D, V] (TensorFlow's [V, D] weights transposed)."
    )
  if labels.shape != hidden.shape[:-1]:
    raise ValueError(
      f"{name}: labels have shape {labels.shape} but hidden {hidden.shape} needs labels of "
      f"shape {hidden.shape[:-1]}."
    )
  if sampled.ndim != 1:
    raise ValueError(
      f"{name}: sampled_classes has shape {sampled.shape}; it must be [S], one set of "
      "classes shared by every example."
    )
  _validate.check_num_classes(name, weight.shape[1], "weight's vocabulary axis (V)")
