"""``logits_grad``: the closed-form gradient of any loss of the family, by name or function.

Design notes:
  * One closed-form function per loss (``<loss name>_grad``, same arguments as the loss);
    :func:`logits_grad` only looks the right one up, so a test or the gradient-check
    matrix can loop over the family without a branch per loss.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from xentax.gradcheck import _binary_grads, _divergence_grads, _nll_grads, _softmax_grads

LOSS_GRADS: dict[str, Callable[..., jax.Array]] = {
  "binary_cross_entropy": _binary_grads.binary_cross_entropy_grad,
  "binary_cross_entropy_with_logits": _binary_grads.binary_cross_entropy_with_logits_grad,
  "binary_focal_loss_with_logits": _binary_grads.binary_focal_loss_with_logits_grad,
  "categorical_cross_entropy": _softmax_grads.categorical_cross_entropy_grad,
  "categorical_cross_entropy_with_logits": (
    _softmax_grads.categorical_cross_entropy_with_logits_grad
  ),
  "categorical_focal_loss_with_logits": _softmax_grads.categorical_focal_loss_with_logits_grad,
  "sparse_categorical_cross_entropy": _softmax_grads.sparse_categorical_cross_entropy_grad,
  "sparse_categorical_cross_entropy_with_logits": (
    _softmax_grads.sparse_categorical_cross_entropy_with_logits_grad
  ),
  "sparse_categorical_focal_loss_with_logits": (
    _softmax_grads.sparse_categorical_focal_loss_with_logits_grad
  ),
  "kl_divergence_with_logits": _divergence_grads.kl_divergence_with_logits_grad,
  "jensen_shannon_divergence_with_logits": (
    _divergence_grads.jensen_shannon_divergence_with_logits_grad
  ),
  "distillation_loss": _divergence_grads.distillation_student_grad,
  "nll_loss": _nll_grads.nll_loss_grad,
  "poly1_cross_entropy_with_logits": _nll_grads.poly1_cross_entropy_with_logits_grad,
  "causal_lm_cross_entropy_with_logits": _nll_grads.causal_lm_cross_entropy_with_logits_grad,
}


def logits_grad(loss: str | Callable, scores, labels, **options) -> jax.Array:
  """Closed-form gradient of a xentax loss with respect to its logits (or probabilities).

  ``logits_grad(loss, scores, labels, **options)`` equals
  ``jax.grad(loss)(scores, labels, **options)`` for ``"sum"`` and ``"mean"`` reductions,
  and ``jax.grad(lambda s: loss(s, labels, **options).sum())(scores)`` for ``"none"`` (each
  per-example loss depends on its own row only, so that is the whole Jacobian's diagonal
  blocks). Each formula is derived in the docstring of the ``<loss>_grad`` function it
  dispatches to; with no options the cross-entropies all reduce to ``y_pred - y`` per
  example (``softmax(z) - y``, or ``sigmoid(z) - y`` for the binary ones).

  Args:
    loss: the loss's name, e.g. ``"sparse_categorical_cross_entropy_with_logits"``, or the
      function itself (``xentax.sparse_categorical_cross_entropy_with_logits``).
    scores: the loss's first argument: logits, or probabilities for the losses without
      ``_with_logits``.
    labels: the loss's second argument (integer labels, dense targets or binary labels).
    **options: the loss's keyword arguments (``class_weights``, ``label_smoothing``,
      ``z_loss``, ``softcap``, ``pos_weight``, ``weights``, ``gamma``, ``alpha``,
      ``ignore_index``, ``where``, ``sample_weight``, ``axis``, ``reduction``).

  Returns:
    An array of ``scores.shape``: float64 for float64 scores, float32 otherwise.

  Raises:
    ValueError: an unknown loss, or an option the loss does not take (``TypeError`` from
      the closed form names it).

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> logits, labels = jnp.array([[2.0, 0.5, -1.0]]), jnp.array([0])
    >>> closed = xentax.gradcheck.logits_grad("sparse_categorical_cross_entropy_with_logits",
    ...                                       logits, labels, label_smoothing=0.1)
    >>> auto = jax.grad(xentax.sparse_categorical_cross_entropy_with_logits)(
    ...     logits, labels, label_smoothing=0.1)
    >>> bool(jnp.allclose(closed, auto, atol=1e-6))
    True
  """
  name = loss if isinstance(loss, str) else getattr(loss, "__name__", repr(loss))
  if name not in LOSS_GRADS:
    raise ValueError(
      f"logits_grad: no closed-form gradient for loss {name!r}; choose one of "
      f"{sorted(LOSS_GRADS)} (for another loss, check it with "
      "xentax.gradcheck.check_finite_differences)."
    )
  return LOSS_GRADS[name](scores, labels, **options)
