r"""Integer labels and the sparse cross-entropy's options, loss and logit-gradient terms.

Every integer-label cross-entropy from logits in xentax (the dense
:func:`xentax.sparse_categorical_cross_entropy_with_logits`, both schedules of
:func:`xentax.fused_linear_cross_entropy` and the vocabulary-parallel losses) builds on
this module, so an option means exactly the same thing in each of them.

Design notes:
  * :func:`prepare_labels` turns the labels, ``where``, ``ignore_index`` and
    ``class_weights`` into a validity mask, a "bad label" mask, labels that are safe to
    gather with, and the target weights ``w[y]``.
  * The loss is assembled from four per-example *terms* (log-normaliser ``lse``, target
    logit ``z_y``, weighted logit sum ``sum_c w_c z_c``, target weight ``w_y``). A dense loss
    computes them from the full logits; a blockwise or sharded loss accumulates them block by
    block or shard by shard. :meth:`SparseTerms.loss` turns them into the per-example loss.
  * The closed-form gradient with respect to the logits has the shape
    ``d l / d z_c = a p_c - b [c = y] - c w_c`` for three per-example coefficients;
    :meth:`SparseTerms.grad_coefficients` returns ``(a, b, c)`` so a backward pass can form
    ``d logits`` for any block of columns it holds.
  * The options are split in two: :class:`SparseOptions` is static and hashable (the number
    of classes and whether smoothing and z-loss are on: it sits in a ``custom_vjp``'s
    nondiff config), and :meth:`SparseOptions.terms` binds it to the traced values (labels,
    class weights, smoothing, z-loss weight), inside the function being differentiated, so
    ``jax.vjp`` of the loss with respect to the options sees them.
  * An option left at a Python ``0.0`` is static: its term is skipped entirely (no
    recompilation for a traced zero, no work for an absent option).
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

  Args:
    shown: the label values to name in an error (the original NumPy labels, see
      :func:`xentax.losses._validate.integer_labels`); ``labels`` when None.
    option_bad: a traced boolean flag (or None): an option is outside its domain, so
      every kept example is bad. ``class_weights`` is checked here and adds to it.
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
  _validate.check_values(fn_name, allowed, labels if shown is None else shown, bad)
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


class SparseOptions(NamedTuple):
  """The static part of a sparse cross-entropy's options (hashable).

  Attributes:
    num_classes: ``C``, the whole vocabulary (also when the logits are sharded).
    smoothing: label smoothing is on (its value is not a Python 0).
    z_loss: the z-loss is on (its weight is not a Python 0).
  """

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

  Made by :meth:`SparseOptions.terms`.

  Attributes:
    num_classes: ``C``.
    class_weights: ``[C]`` ``w``, or None for unweighted (``w = 1``).
    target_weight: ``[...]`` ``w_y``, or None for unweighted.
    label_smoothing: ``epsilon``; a Python 0.0 skips the smoothing term entirely.
    z_loss: ``lambda_z``; a Python 0.0 skips the z-loss term.
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
    r"""Per-example losses from the terms.

    Args:
      lse: ``[...]`` log-normaliser ``logsumexp(z)``.
      target_logit: ``[...]`` the logit of the target class ``z_y``.
      weighted_logit_sum: ``[...]`` ``sum_c w_c z_c``; needed only with smoothing.

    Returns:
      ``[...]`` per-example losses (not masked: the caller drops ignored examples).
    """
    loss = lse - target_logit
    if self.target_weight is not None:
      loss = self.target_weight * loss
    if self.smoothing:
      smooth = self.class_weight_sum(lse.dtype) * lse - weighted_logit_sum
      eps = jnp.asarray(self.label_smoothing, loss.dtype)
      # safe_mul, not a plain product: with eps == 0 a -inf logit must not turn 0 * inf into
      # NaN; unlike a `where` on eps it keeps the exact gradient d loss / d eps at eps == 0
      # where the sum is finite. (Where it is infinite, the dense losses' option tangents
      # leave out the infinite classes' terms instead of the whole row's.)
      loss = (1 - eps) * loss + _common.safe_mul(eps / self.num_classes, smooth)
    if not _common.is_static_zero(self.z_loss):
      loss = loss + jnp.asarray(self.z_loss, loss.dtype) * jnp.square(lse)
    return loss

  def grad_coefficients(self, cotangent, lse, lse_cotangent=None):
    r"""Coefficients ``(a, b, c)`` of ``g d l / d z_c = a p_c - b [c = y] - c w_c``.

    The gradient of :meth:`loss` with respect to the logits, scaled by the per-example
    ``cotangent`` ``g``:

    .. math::
      a = g \big((1 - \epsilon) w_y + \tfrac{\epsilon}{C} \textstyle\sum_c w_c
        + 2 \lambda_z \mathrm{lse}\big) + g_{\mathrm{lse}}, \quad
      b = g (1 - \epsilon) w_y, \quad c = g \epsilon / C,

    where ``g_lse`` is the cotangent of ``lse`` itself when it is an output too. Used by the
    blockwise backward passes, which never hold the full logits.

    Args:
      cotangent: ``[...]`` ``g``.
      lse: ``[...]`` log-normaliser.
      lse_cotangent: ``[...]`` or None.

    Returns:
      ``(a, b, c)``, each ``[...]`` (``c`` is 0 without smoothing).
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
