r"""Calibration of top-label confidence: binned accuracy vs confidence, ECE and MCE.

Design notes:
  * The standard top-label definition (Guo et al., 2017): an example's confidence is its
    largest softmax probability, it is correct when that class (the first, on ties) is the
    label, and ``ECE = sum_b (n_b / N) |acc_b - conf_b|``.
  * ``binning="width"``: ``num_bins`` equal intervals ``((b - 1) / B, b / B]`` of
    confidence. ``binning="mass"``: equal-count bins (Nixon et al., 2019; the kept examples
    sorted by confidence and cut into ``B`` runs of ``N / B`` rounded up or down, bin ``b``
    holding ranks ``[b N / B, (b + 1) N / B)``), which keeps every bin populated.
  * Binning is done with ``segment_sum`` over a per-example bin index, so it runs under
    ``jit`` with any ``where``/``ignore_index`` mask (dropped examples go to no bin).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from xentax.losses import contract
from xentax.metrics._classification import prepare

BINNINGS = ("width", "mass")


class CalibrationBins(NamedTuple):
  """Per-bin statistics, each ``[num_bins]``; empty bins have count 0 and 0 elsewhere."""

  count: jax.Array  # type: ignore[assignment]  # a field, shadowing tuple.count; kept examples in the bin
  accuracy: jax.Array  # fraction of them whose top class is the label
  confidence: jax.Array  # their mean top-class probability
  lower: jax.Array  # the bin's lower confidence edge (width) or smallest confidence (mass)
  upper: jax.Array  # the bin's upper confidence edge (width) or largest confidence (mass)


def _top_label(fn_name, logits, labels, axis, ignore_index, where, kind):
  x, inputs = prepare(
    fn_name, logits, labels, axis=axis, ignore_index=ignore_index, where=where, kind=kind
  )
  p = jnp.exp(x - contract.logsumexp(x)[..., None])
  confidence = jnp.max(p, axis=-1) + contract.nan_where(inputs.bad, p.dtype)
  correct = (jnp.argmax(p, axis=-1) == inputs.labels).astype(p.dtype)
  return jnp.ravel(confidence), jnp.ravel(correct), jnp.ravel(inputs.valid)


def _bin_index(confidence, valid, num_bins, binning):
  if binning == "width":
    index = jnp.ceil(confidence * num_bins).astype(jnp.int32) - 1
    return jnp.clip(index, 0, num_bins - 1)
  # Equal mass: rank among the kept examples (dropped ones sort last), cut into B runs.
  keyed = jnp.where(valid, confidence, jnp.inf)
  order = jnp.argsort(keyed, stable=True)
  rank = jnp.zeros_like(order).at[order].set(jnp.arange(order.size, dtype=order.dtype))
  kept = jnp.maximum(jnp.sum(valid), 1)
  return jnp.clip((rank * num_bins) // kept, 0, num_bins - 1).astype(jnp.int32)


def _check_bins(fn_name, num_bins, binning) -> int:
  num_bins = contract.positive_int(fn_name, "num_bins", num_bins)
  if binning not in BINNINGS:
    raise ValueError(f"{fn_name}: binning={binning!r} is not supported; choose one of {BINNINGS}.")
  return num_bins


def calibration_bins(
  logits,
  labels,
  *,
  kind: str = "logits",
  num_bins: int = 15,
  binning: str = "width",
  axis: int = -1,
  ignore_index: int | None = None,
  where=None,
) -> CalibrationBins:
  r"""Bin the kept examples by top-label confidence; accuracy and confidence per bin.

  Args:
    logits: ``[..., C, ...]`` logits, class axis at ``axis``.
    labels: integer class indices, the logits' shape without ``axis``.
    num_bins: ``B``.
    binning: ``"width"`` (equal intervals of ``[0, 1]``) or ``"mass"`` (equal counts).
    axis, ignore_index, where: as in the sparse losses.
    kind: ``"logits"`` (default), ``"probs"``, ``"binary_logits"`` or ``"binary_probs"``
      (:mod:`xentax.metrics`).

  Returns:
    :class:`CalibrationBins`, the statistics the ECE, the MCE and the reliability diagram
    are computed from.

  Raises:
    ValueError: ``num_bins < 1`` or an unknown ``binning`` (TypeError: ``num_bins`` not an
      integer); otherwise as the sparse losses (float labels, shapes, labels out of range).

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> bins = xentax.metrics.calibration_bins(jnp.zeros((4, 2)), jnp.array([0, 1, 0, 0]),
    ...                                        num_bins=2)
    >>> bins.count.tolist(), bins.accuracy.tolist()
    ([4.0, 0.0], [0.75, 0.0])
  """
  fn_name = "calibration_bins"
  num_bins = _check_bins(fn_name, num_bins, binning)
  return _bins(fn_name, logits, labels, num_bins, binning, axis, ignore_index, where, kind)


def _bins(fn_name, logits, labels, num_bins, binning, axis, ignore_index, where, kind):
  confidence, correct, valid = _top_label(fn_name, logits, labels, axis, ignore_index, where, kind)
  index = _bin_index(confidence, valid, num_bins, binning)
  weight = valid.astype(confidence.dtype)

  def per_bin(values):
    return jax.ops.segment_sum(jnp.where(valid, values, 0.0), index, num_segments=num_bins)

  count = per_bin(weight)
  nonempty = count > 0
  safe_count = jnp.where(nonempty, count, 1.0)
  accuracy = jnp.where(nonempty, per_bin(correct) / safe_count, 0.0)
  mean_conf = jnp.where(nonempty, per_bin(confidence) / safe_count, 0.0)
  if binning == "width":
    edges = jnp.arange(num_bins + 1, dtype=confidence.dtype) / num_bins
    lower, upper = edges[:-1], edges[1:]
  else:
    lower = jax.ops.segment_min(jnp.where(valid, confidence, jnp.inf), index, num_bins)
    upper = jax.ops.segment_max(jnp.where(valid, confidence, -jnp.inf), index, num_bins)
    lower, upper = jnp.where(nonempty, lower, 0.0), jnp.where(nonempty, upper, 0.0)
  return CalibrationBins(count, accuracy, mean_conf, lower, upper)


def expected_calibration_error(
  logits,
  labels,
  *,
  kind: str = "logits",
  num_bins: int = 15,
  binning: str = "width",
  axis: int = -1,
  ignore_index: int | None = None,
  where=None,
) -> jax.Array:
  r"""Expected calibration error of the top-label confidence.

  .. math::
    \mathrm{ECE} = \sum_{b=1}^{B} \frac{n_b}{N} \left| \mathrm{acc}_b - \mathrm{conf}_b \right|

  over the ``N`` kept examples; in ``[0, 1]``, 0 when nothing is kept.

  Args:
    logits: ``[..., C, ...]`` logits, class axis at ``axis``.
    labels: integer class indices, the logits' shape without ``axis``.
    num_bins: ``B`` (15 as in Guo et al.).
    binning: ``"width"`` or ``"mass"`` (see :func:`calibration_bins`).
    axis, ignore_index, where: as in the sparse losses.
    kind: ``"logits"`` (default), ``"probs"``, ``"binary_logits"`` or ``"binary_probs"``
      (:mod:`xentax.metrics`).

  Returns:
    A scalar, float32 (float64 for float64 logits).

  Raises:
    As :func:`calibration_bins`.

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> z = jnp.log(jnp.array([[0.9, 0.1], [0.9, 0.1]]))
    >>> round(float(xentax.metrics.expected_calibration_error(z, jnp.array([0, 1]))), 4)
    0.4

  References:
    Naeini et al., "Obtaining Well Calibrated Probabilities Using Bayesian Binning", 2015;
    Guo et al., "On Calibration of Modern Neural Networks", ICML 2017; Nixon et al.,
    "Measuring Calibration in Deep Learning", 2019 (equal-mass bins).
  """
  fn_name = "expected_calibration_error"
  num_bins = _check_bins(fn_name, num_bins, binning)
  bins = _bins(fn_name, logits, labels, num_bins, binning, axis, ignore_index, where, kind)
  total = jnp.sum(bins.count)
  gaps = bins.count * jnp.abs(bins.accuracy - bins.confidence)
  return jnp.where(total > 0, jnp.sum(gaps) / jnp.where(total > 0, total, 1.0), 0.0)


def maximum_calibration_error(
  logits,
  labels,
  *,
  kind: str = "logits",
  num_bins: int = 15,
  binning: str = "width",
  axis: int = -1,
  ignore_index: int | None = None,
  where=None,
) -> jax.Array:
  r"""Largest gap ``max_b |acc_b - conf_b|`` over the non-empty bins (0 if all are empty).

  Args:
    logits, labels, num_bins, binning, axis, ignore_index, where: as in
      :func:`expected_calibration_error`.
    kind: ``"logits"`` (default), ``"probs"``, ``"binary_logits"`` or ``"binary_probs"``
      (:mod:`xentax.metrics`).

  Returns:
    A scalar in ``[0, 1]``, float32 (float64 for float64 logits).

  Raises:
    As :func:`calibration_bins`.

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> z = jnp.log(jnp.array([[0.9, 0.1], [0.6, 0.4]]))
    >>> round(float(xentax.metrics.maximum_calibration_error(z, jnp.array([0, 1]))), 4)
    0.6

  References:
    Naeini et al., 2015; Guo et al., 2017.
  """
  fn_name = "maximum_calibration_error"
  num_bins = _check_bins(fn_name, num_bins, binning)
  bins = _bins(fn_name, logits, labels, num_bins, binning, axis, ignore_index, where, kind)
  gaps = jnp.where(bins.count > 0, jnp.abs(bins.accuracy - bins.confidence), 0.0)
  return jnp.max(gaps)
