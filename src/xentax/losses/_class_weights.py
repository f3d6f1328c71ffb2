r"""Class weights from label counts: inverse frequency and effective number of samples."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.losses import _validate


def _counts(fn_name, labels, num_classes, ignore_index, where):
  """``[C]`` float32 count of each class among the kept labels; checks the label range."""
  _validate.integer_labels(fn_name, labels)
  if not isinstance(num_classes, int) or num_classes < 1:
    raise ValueError(f"{fn_name}: num_classes={num_classes!r} must be a positive int.")
  labels = jnp.asarray(labels)
  valid = _validate.broadcast_mask(fn_name, where, labels.shape)
  if ignore_index is not None:
    valid = valid & (labels != ignore_index)
  bad = valid & ((labels < 0) | (labels >= num_classes))
  _validate.check_values(fn_name, f"labels must lie in [0, {num_classes})", labels, bad)
  safe = jnp.where(valid & ~bad, labels, num_classes)  # out-of-range rows go to a spare bin
  counts = jnp.zeros((num_classes + 1,), jnp.float32).at[jnp.ravel(safe)].add(1.0)
  return counts[:num_classes]


def _normalise(raw, counts):
  """``raw`` with absent classes 0, scaled to sum to the number of classes present (or 0)."""
  present = counts > 0
  raw = jnp.where(present, raw, 0.0)
  total = jnp.sum(raw)
  return jnp.where(total > 0, raw * jnp.sum(present) / jnp.where(total > 0, total, 1.0), 0.0)


def inverse_frequency_class_weights(
  labels, num_classes: int, *, ignore_index: int | None = None, where=None
) -> jax.Array:
  r"""Class weights proportional to ``1 / n_c``, the count of each class in ``labels``.

  .. math::
    w_c = \frac{K}{n_c \sum_{k: n_k > 0} 1 / n_k} \text{ for } n_c > 0, \quad w_c = 0
    \text{ otherwise},

  with ``K`` the number of classes present, so the weights sum to ``K`` and each present
  class contributes equally to a class-weighted sum of losses (scikit-learn's
  ``"balanced"`` up to a factor).

  Args:
    labels: integer labels, any shape.
    num_classes: ``C``.
    ignore_index: label value not counted.
    where: boolean mask of the labels' shape; False entries are not counted.

  Returns:
    ``[C]`` float32 weights (all 0 when no label is counted).

  Raises:
    TypeError: float labels.
    ValueError: ``num_classes`` not a positive int, or a counted label outside ``[0, C)``
      (concrete labels; under ``jit`` it is not counted).

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> xentax.inverse_frequency_class_weights(jnp.array([0, 0, 0, 1]), 2).tolist()
    [0.5, 1.5]
  """
  counts = _counts("inverse_frequency_class_weights", labels, num_classes, ignore_index, where)
  return _normalise(1.0 / jnp.where(counts > 0, counts, 1.0), counts)


def effective_number_class_weights(
  labels,
  num_classes: int,
  *,
  beta=0.999,
  ignore_index: int | None = None,
  where=None,
) -> jax.Array:
  r"""Class-balanced weights by the effective number of samples (Cui et al., 2019).

  .. math::
    E_c = \frac{1 - \beta^{n_c}}{1 - \beta}, \quad w_c \propto \frac{1}{E_c}
      = \frac{1 - \beta}{1 - \beta^{n_c}},

  normalised to sum to the number of classes present (absent classes get 0). ``beta -> 1``
  approaches :func:`inverse_frequency_class_weights`; ``beta = 0`` gives equal weights. A
  traced ``beta`` is differentiable.

  Args:
    labels: integer labels, any shape.
    num_classes: ``C``.
    beta: in ``[0, 1)``; Cui et al. use 0.9 to 0.9999.
    ignore_index: label value not counted.
    where: boolean mask of the labels' shape; False entries are not counted.

  Returns:
    ``[C]`` float32 weights (all 0 when no label is counted).

  Raises:
    TypeError: as :func:`inverse_frequency_class_weights`.
    ValueError: as :func:`inverse_frequency_class_weights`, or a Python ``beta`` outside
      ``[0, 1)``.

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> w = xentax.effective_number_class_weights(jnp.array([0, 0, 0, 1]), 2, beta=0.5)
    >>> [round(v, 4) for v in w.tolist()]
    [0.7273, 1.2727]

  References:
    Cui et al., "Class-Balanced Loss Based on Effective Number of Samples", CVPR 2019.
  """
  fn_name = "effective_number_class_weights"
  if isinstance(beta, int | float) and not 0 <= beta < 1:
    raise ValueError(f"{fn_name}: beta={beta!r} must lie in [0, 1).")
  counts = _counts(fn_name, labels, num_classes, ignore_index, where)
  beta = jnp.asarray(beta, jnp.float32)
  # (1 - beta^n) / (1 - beta) computed as -expm1(n log beta) / (1 - beta) for beta near 1.
  log_beta = jnp.log(jnp.where(beta > 0, beta, 1.0))
  one_minus_beta_n = jnp.where(beta > 0, -jnp.expm1(counts * log_beta), 1.0)
  effective = one_minus_beta_n / (1 - beta)
  return _normalise(1.0 / jnp.where(counts > 0, effective, 1.0), counts)
