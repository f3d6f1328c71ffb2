r"""Closed-form gradients of the divergences (KL, generalised JSD) and the distillation loss.

Design notes:
  * Derived from the definitions with ``p = softmax(z / T)`` and ``d p_c / d z_j = p_c
    ([c = j] - p_j) / T``, independently of :mod:`xentax.losses`. They hold where the
    divergence is finite (the student gives mass wherever the teacher does).
  * Each returns ``d loss / d first argument`` in the argument's layout; the teacher side
    of the KL has its own function.
  * ``sample_weight`` ``s_n`` scales example ``n``'s gradient by ``s_n``; the mean divides
    by ``sum_K s_n`` over the kept examples ``K`` (``"sum_over_batch_size"``: by ``|K|``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.gradcheck._grad_common import check_reduction, float_dtype, kept_mask, reduce_grad


def _pair(student_logits, teacher_logits, axis, temperature):
  dtype = float_dtype(student_logits)
  s = jnp.moveaxis(jnp.asarray(student_logits), axis, -1).astype(dtype)
  t = jnp.moveaxis(jnp.asarray(teacher_logits), axis, -1).astype(dtype)
  temperature = jnp.asarray(temperature, dtype)
  log_q = jax.nn.log_softmax(s / temperature, axis=-1)  # student
  log_p = jax.nn.log_softmax(t / temperature, axis=-1)  # teacher
  return log_q, log_p, temperature


def _xlogy_sum(p, log_ratio):
  """``sum_c p_c log_ratio_c`` with ``0 * anything = 0``."""
  return jnp.sum(jnp.where(p > 0, p * jnp.where(p > 0, log_ratio, 0.0), 0.0), axis=-1)


def kl_divergence_with_logits_grad(
  student_logits,
  teacher_logits,
  *,
  temperature=1.0,
  axis: int = -1,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Gradient of :func:`xentax.kl_divergence_with_logits` w.r.t. the student logits.

  ``l = sum_c p_c (log p_c - log q_c)`` with ``q = softmax(z^s / T)``; only ``-sum_c p_c
  log q_c`` depends on ``z^s``, and ``d log q_c / d z_j = ([c = j] - q_j) / T``, so (with
  ``sum_c p_c = 1``):

  .. math::
    \frac{\partial \ell}{\partial z^s} = \frac{q - p}{T}

  Its arguments (``student_logits, teacher_logits, temperature, axis, where,
  sample_weight, reduction``) are as for :func:`xentax.kl_divergence_with_logits` (both logits
  of one shape).

  Returns:
    ``student_logits.shape``, float64 for float64 logits, float32 otherwise.

  Raises:
    ValueError: an unknown reduction (the inputs are not validated: pass what the loss
      accepts).

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> g = xentax.gradcheck.kl_divergence_with_logits_grad(  # q - p
    ...     jnp.zeros((1, 2)), jnp.log(jnp.array([[0.75, 0.25]])))
    >>> jnp.round(g, 6).tolist()
    [[-0.25, 0.25]]
  """
  check_reduction("kl_divergence_with_logits_grad", reduction)
  log_q, log_p, temperature = _pair(student_logits, teacher_logits, axis, temperature)
  g = (jnp.exp(log_q) - jnp.exp(log_p)) / temperature
  g = reduce_grad(g, kept_mask(where, g.shape[:-1]), reduction, sample_weight=sample_weight)
  return jnp.moveaxis(g, -1, axis)


def kl_divergence_with_logits_teacher_grad(
  student_logits,
  teacher_logits,
  *,
  temperature=1.0,
  axis: int = -1,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Gradient of :func:`xentax.kl_divergence_with_logits` w.r.t. the *teacher* logits.

  With ``r_c = log p_c - log q_c`` and ``l = sum_c p_c r_c``: ``d l / d z^t_j = sum_c (d p_c
  / d z_j) r_c + sum_c p_c d log p_c / d z_j``; the second sum is ``(p_j - p_j) / T = 0``,
  the first is ``p_j (r_j - l) / T``:

  .. math::
    \frac{\partial \ell}{\partial z^t} = \frac{p \odot (\log p - \log q - \ell)}{T}

  (0 for classes with ``p_j = 0``).

  Its arguments (``student_logits, teacher_logits, temperature, axis, where,
  sample_weight, reduction``) are as for :func:`xentax.kl_divergence_with_logits`.

  Returns:
    ``teacher_logits.shape``, float64 for float64 logits, float32 otherwise.

  Raises:
    ValueError: an unknown reduction (the inputs are not validated: pass what the loss
      accepts).

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> s, t = jnp.array([[2.0, 0.5, -1.0]]), jnp.array([[0.0, 1.0, 0.5]])
    >>> closed = xentax.gradcheck.kl_divergence_with_logits_teacher_grad(s, t)
    >>> auto = jax.grad(xentax.kl_divergence_with_logits, argnums=1)(s, t)
    >>> bool(jnp.allclose(closed, auto, atol=1e-6))
    True
  """
  check_reduction("kl_divergence_with_logits_teacher_grad", reduction)
  log_q, log_p, temperature = _pair(student_logits, teacher_logits, axis, temperature)
  p = jnp.exp(log_p)
  ratio = jnp.where(p > 0, log_p - jnp.where(p > 0, log_q, 0.0), 0.0)
  kl = _xlogy_sum(p, ratio)
  g = jnp.where(p > 0, p * (ratio - kl[..., None]), 0.0) / temperature
  g = reduce_grad(g, kept_mask(where, g.shape[:-1]), reduction, sample_weight=sample_weight)
  return jnp.moveaxis(g, -1, axis)


def jensen_shannon_divergence_with_logits_grad(
  student_logits,
  teacher_logits,
  *,
  beta=0.5,
  temperature=1.0,
  axis: int = -1,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Gradient of :func:`xentax.jensen_shannon_divergence_with_logits` w.r.t. the student.

  ``l = beta sum P log P + (1 - beta) sum Q log Q - sum M log M`` with ``M = beta P +
  (1 - beta) Q``. ``d l / d Q_c = (1 - beta)(log Q_c + 1) - (1 - beta)(log M_c + 1)
  = (1 - beta) r_c`` with ``r = log Q - log M``; through the softmax:

  .. math::
    \frac{\partial \ell}{\partial z^s} = \frac{1 - \beta}{T}\,
      Q \odot \Big(r - \sum_c Q_c r_c\Big)

  For a Python ``beta`` of 0 or 1 the loss is Liger's forward / reverse KL, and the
  gradient is :func:`kl_divergence_with_logits_grad` or, for ``KL(Q || P)``,
  ``Q (log Q - log P - KL(Q || P)) / T``.

  Its arguments (``student_logits, teacher_logits, beta, temperature, axis, where,
  sample_weight, reduction``) are as for :func:`xentax.jensen_shannon_divergence_with_logits`.

  Returns:
    ``student_logits.shape``, float64 for float64 logits, float32 otherwise.

  Raises:
    ValueError: an unknown reduction (the inputs are not validated: pass what the loss
      accepts).

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> s, t = jnp.array([[2.0, 0.5, -1.0]]), jnp.array([[0.0, 1.0, 0.5]])
    >>> closed = xentax.gradcheck.jensen_shannon_divergence_with_logits_grad(s, t, beta=0.3)
    >>> auto = jax.grad(xentax.jensen_shannon_divergence_with_logits)(s, t, beta=0.3)
    >>> bool(jnp.allclose(closed, auto, atol=1e-6))
    True
  """
  check_reduction("jensen_shannon_divergence_with_logits_grad", reduction)
  log_q, log_p, temperature = _pair(student_logits, teacher_logits, axis, temperature)
  q, p = jnp.exp(log_q), jnp.exp(log_p)
  if isinstance(beta, int | float) and beta == 0:
    g = (q - p) / temperature
  else:
    if isinstance(beta, int | float) and beta == 1:
      coef, log_m = 1.0, log_p
    else:
      beta = jnp.asarray(beta, q.dtype)
      coef, log_m = 1 - beta, jnp.log(beta * p + (1 - beta) * q)
    r = jnp.where(q > 0, log_q - jnp.where(q > 0, log_m, 0.0), 0.0)
    g = coef * jnp.where(q > 0, q * (r - _xlogy_sum(q, r)[..., None]), 0.0) / temperature
  g = reduce_grad(g, kept_mask(where, g.shape[:-1]), reduction, sample_weight=sample_weight)
  return jnp.moveaxis(g, -1, axis)


def distillation_loss_grad(
  student_logits,
  teacher_logits,
  labels,
  *,
  temperature=1.0,
  alpha=0.5,
  axis: int = -1,
  ignore_index: int | None = None,
  where=None,
  sample_weight=None,
  reduction: str = "mean",
) -> jax.Array:
  r"""Gradient of :func:`xentax.distillation_loss` w.r.t. the student logits.

  ``l = alpha T^2 KL(p_T || q_T) + (1 - alpha) CE(z^s, y)``; the KL's gradient is
  ``(q_T - p_T) / T`` and the cross-entropy's ``softmax(z^s) - onehot(y)``:

  .. math::
    \frac{\partial \ell}{\partial z^s} = \alpha T (q_T - p_T)
      + (1 - \alpha)(\mathrm{softmax}(z^s) - \mathrm{onehot}(y))

  Its arguments (``student_logits, teacher_logits, labels, temperature, alpha, axis,
  ignore_index, where, sample_weight, reduction``) are as for :func:`xentax.distillation_loss`
  (``labels`` of the per-example shape, the logits' without ``axis``).

  Returns:
    ``student_logits.shape``, float64 for float64 logits, float32 otherwise.

  Raises:
    ValueError: an unknown reduction (the inputs are not validated: pass what the loss
      accepts).

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> s, t, y = jnp.array([[2.0, 0.5, -1.0]]), jnp.array([[0.0, 1.0, 0.5]]), jnp.array([0])
    >>> closed = xentax.gradcheck.distillation_loss_grad(s, t, y, temperature=2.0)
    >>> auto = jax.grad(xentax.distillation_loss)(s, t, y, temperature=2.0)
    >>> bool(jnp.allclose(closed, auto, atol=1e-6))
    True
  """
  check_reduction("distillation_loss_grad", reduction)
  log_q, log_p, temperature = _pair(student_logits, teacher_logits, axis, temperature)
  labels = jnp.asarray(labels)
  kept = kept_mask(where, labels.shape)
  if ignore_index is not None:
    kept = kept & (labels != ignore_index)
  s = jnp.moveaxis(jnp.asarray(student_logits), axis, -1).astype(log_q.dtype)
  onehot = jax.nn.one_hot(jnp.where(kept, labels, 0), s.shape[-1], dtype=s.dtype)
  alpha = jnp.asarray(alpha, s.dtype)
  g = alpha * temperature * (jnp.exp(log_q) - jnp.exp(log_p))
  g = g + (1 - alpha) * (jax.nn.softmax(s, axis=-1) - onehot)
  g = reduce_grad(g, kept, reduction, sample_weight=sample_weight)
  return jnp.moveaxis(g, -1, axis)


def distillation_student_grad(student_logits, labels, *, teacher_logits, **options):
  """:func:`distillation_loss_grad` with the teacher's logits as a keyword: the
  ``(scores, labels, **options)`` order of :func:`xentax.gradcheck.logits_grad`."""
  return distillation_loss_grad(student_logits, teacher_logits, labels, **options)
