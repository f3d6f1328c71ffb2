r"""Integer labels and the sparse cross-entropy's options, loss and logit-gradient terms.

Design rules:
  * Every integer-label cross-entropy from logits (dense, fused, vocabulary-parallel) builds
    its loss from the same per-example terms ``lse``, ``z_y``, ``sum_c w_c z_c``, ``w_y``.
  * :class:`SparseOptions` is static and hashable (a ``custom_vjp``'s nondiff config);
    :meth:`SparseOptions.terms` binds the traced values inside the differentiated function.
  * An option left at a Python ``0.0`` is static: its term is skipped entirely.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xentax.losses import _common, _validate


class Labels(NamedTuple):
  labels: jax.Array  # [...], in range (0 where invalid or bad)
  valid: jax.Array  # [...], bool: not masked by `where`, not ignore_index
  bad: jax.Array  # [...], bool: valid but label out of range
  class_weights: jax.Array | None  # [C]
  target_weight: jax.Array | None  # [...], w[y]


def prepare_labels(
  fn_name,
  labels,
  *,
  num_classes,
  class_weights,
  ignore_index,
  where,
  dtype,
  shown=None,
  option_bad=None,
) -> Labels:
  """Validity mask, range check, safe labels and target weights for integer labels.

  ``shown``: the label values an error names (``labels`` when None); ``option_bad``: a traced
  flag that makes every kept example bad (bad class weights add to it).
  """
  if ignore_index is not None and not isinstance(ignore_index, int | np.integer):
    raise TypeError(f"{fn_name}: ignore_index={ignore_index!r} must be an integer or None.")
  valid = _validate.broadcast_mask(fn_name, where, labels.shape)
  if ignore_index is not None:
    valid = valid & (labels != ignore_index)
  in_range = (labels >= 0) & (labels < num_classes)
  bad = valid & ~in_range
  allowed = f"labels must lie in [0, {num_classes})"
  if ignore_index is not None:
    allowed += f" or equal ignore_index={ignore_index}"
  values = labels if shown is None else shown
  hint = _padding_hint if ignore_index is None else None
  _validate.check_values(fn_name, allowed, values, bad, hint)
  safe_labels = jnp.where(valid & in_range, labels, jnp.zeros_like(labels))

  target_weight = None
  if class_weights is not None:
    class_weights = _validate.to_array(fn_name, "class_weights", class_weights)
    class_weights = _validate.class_weight_vector(fn_name, class_weights, num_classes, dtype)
    weights_bad = _validate.option(fn_name, "class_weights", class_weights)
    option_bad = _validate.any_bad(option_bad, None if weights_bad is None else weights_bad.any())
    target_weight = class_weights[safe_labels]
  if option_bad is not None:
    bad = bad | (valid & option_bad)
  return Labels(safe_labels, valid, bad, class_weights, target_weight)


def _padding_hint(bad_labels) -> str:
  """For bad labels holding torch's padding label -100 while ``ignore_index`` is unset."""
  if not np.any(bad_labels == -100):
    return ""
  return " torch's ignore_index defaults to -100; here it is None: pass ignore_index=-100."


class SparseOptions(NamedTuple):
  """The static, hashable options: ``C`` (the whole vocabulary, also when sharded) and
  whether smoothing and the z-loss are on (not a Python 0)."""

  num_classes: int
  smoothing: bool = False
  z_loss: bool = False

  @classmethod
  def of(cls, num_classes: int, *, label_smoothing, z_loss) -> SparseOptions:
    """The static options for the user's ``label_smoothing`` and ``z_loss`` values."""
    return cls(
      num_classes,
      smoothing=not _common.is_static_zero(label_smoothing),
      z_loss=not _common.is_static_zero(z_loss),
    )

  def terms(self, labels, class_weights, label_smoothing, z_loss) -> SparseTerms:
    """Bind the options to their values: ``labels [...]`` (in range), ``class_weights [C]``
    or None, and the smoothing and z-loss values (ignored where the flag is off)."""
    return SparseTerms(
      num_classes=self.num_classes,
      class_weights=class_weights,
      target_weight=None if class_weights is None else class_weights[labels],
      label_smoothing=label_smoothing if self.smoothing else 0.0,
      z_loss=z_loss if self.z_loss else 0.0,
    )


class SparseTerms(NamedTuple):
  r"""A sparse cross-entropy's options, bound to their values (torch's conventions).

  .. math::
    \ell = (1 - \epsilon)\, w_y (\mathrm{lse} - z_y)
      + \frac{\epsilon}{C} \sum_c w_c (\mathrm{lse} - z_c) + \lambda_z\, \mathrm{lse}^2

  ``class_weights`` ``[C]`` and ``target_weight`` ``[...]`` are None when unweighted.
  """

  num_classes: int
  class_weights: jax.Array | None
  target_weight: jax.Array | None
  label_smoothing: jax.Array | float
  z_loss: jax.Array | float

  @property
  def smoothing(self) -> bool:
    """Label smoothing is on: the loss needs the weighted logit sum."""
    return not _common.is_static_zero(self.label_smoothing)

  def class_weight_sum(self, dtype) -> jax.Array:
    """``sum_c w_c`` (``C`` when unweighted)."""
    return _common.class_weight_sum(self.class_weights, self.num_classes, dtype)

  def weights(self, dtype) -> jax.Array:
    """``[C]`` the class weights (ones when unweighted)."""
    if self.class_weights is None:
      return jnp.ones((self.num_classes,), dtype)
    return self.class_weights

  def loss(self, lse, target_logit, weighted_logit_sum=None) -> jax.Array:
    """Unmasked per-example losses from ``lse``, ``z_y`` and (with smoothing) ``sum_c w_c z_c``."""
    loss = lse - target_logit
    if self.target_weight is not None:
      # safe_mul: a class weight of 0 on an infinite loss adds 0 (0 * inf = 0).
      loss = _common.safe_mul(self.target_weight, loss)
    if self.smoothing:
      smooth = self.class_weight_sum(lse.dtype) * lse - weighted_logit_sum
      eps = jnp.asarray(self.label_smoothing, loss.dtype)
      # safe_mul: 0 * inf = 0 at eps == 0, yet d / d eps stays exact where the sum is finite.
      loss = (1 - eps) * loss + _common.safe_mul(eps / self.num_classes, smooth)
    if not _common.is_static_zero(self.z_loss):
      loss = loss + jnp.asarray(self.z_loss, loss.dtype) * jnp.square(lse)
    return loss

  def grad_coefficients(self, cotangent, lse, lse_cotangent=None):
    r"""Coefficients ``(a, b, c)`` of ``g d l / d z_c = a p_c - b [c = y] - c w_c``.

    .. math::
      a = g \big((1 - \epsilon) w_y + \tfrac{\epsilon}{C} \textstyle\sum_c w_c
        + 2 \lambda_z \mathrm{lse}\big) + g_{\mathrm{lse}}, \quad
      b = g (1 - \epsilon) w_y, \quad c = g \epsilon / C,

    ``g`` the per-example ``cotangent``, ``g_lse`` the ``lse_cotangent`` (or None).
    """
    target_weight = jnp.ones_like(lse) if self.target_weight is None else self.target_weight
    eps = self.label_smoothing if self.smoothing else jnp.zeros((), lse.dtype)
    coef_p = (1 - eps) * target_weight
    if self.smoothing:
      coef_p = coef_p + eps / self.num_classes * self.class_weight_sum(lse.dtype)
    if not _common.is_static_zero(self.z_loss):
      coef_p = coef_p + 2 * self.z_loss * lse
    coef_p = cotangent * coef_p
    if lse_cotangent is not None:
      coef_p = coef_p + lse_cotangent
    return coef_p, cotangent * (1 - eps) * target_weight, cotangent * eps / self.num_classes
