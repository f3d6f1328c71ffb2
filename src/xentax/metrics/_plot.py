r"""The reliability diagram, drawn on a bare ``matplotlib.figure.Figure`` (no pyplot)."""

from __future__ import annotations

import numpy as np

from xentax.metrics._calibration import _check_bins, calibration_bins, expected_calibration_error


def reliability_diagram(
  logits,
  labels,
  *,
  kind: str = "logits",
  num_bins: int = 15,
  binning: str = "width",
  axis: int = -1,
  ignore_index: int | None = None,
  where=None,
  title: str | None = None,
):
  r"""A reliability diagram: per-bin accuracy against confidence, with the ECE in the legend.

  Bars show each bin's accuracy over its confidence range; the diagonal is perfect
  calibration and the shaded gap is ``acc_b - conf_b``. Below, a histogram of the number
  of examples per bin. Built on :class:`matplotlib.figure.Figure` directly, so it neither
  needs nor changes a pyplot backend: save it with ``fig.savefig(path)``.

  Args:
    logits, labels, num_bins, binning, axis, ignore_index, where: as in
      :func:`xentax.metrics.expected_calibration_error`.
    title: the figure's title (default: the binning and the ECE).
    kind: ``"logits"`` (default), ``"probs"``, ``"binary_logits"`` or ``"binary_probs"``
      (:mod:`xentax.metrics`).

  Returns:
    A :class:`matplotlib.figure.Figure` with two axes (diagram, counts).

  Raises:
    ImportError: matplotlib is not installed. TypeError / ValueError: as
      :func:`xentax.metrics.expected_calibration_error`.

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> fig = xentax.metrics.reliability_diagram(jnp.zeros((4, 2)), jnp.array([0, 1, 0, 0]))
    >>> len(fig.axes)
    2

  References:
    DeGroot and Fienberg, 1983; Niculescu-Mizil and Caruana, 2005; Guo et al., 2017.
  """
  from matplotlib.figure import Figure  # heavy, and only this function needs it

  num_bins = _check_bins("reliability_diagram", num_bins, binning)
  kwargs = dict(
    kind=kind, num_bins=num_bins, binning=binning, axis=axis, ignore_index=ignore_index, where=where
  )
  bins = calibration_bins(logits, labels, **kwargs)
  ece = float(expected_calibration_error(logits, labels, **kwargs))
  count, acc, conf, lower, upper = (np.asarray(v, np.float64) for v in bins)
  nonempty = count > 0
  width = np.where(nonempty, np.maximum(upper - lower, 1.0 / (4 * num_bins)), 0.0)

  fig = Figure(figsize=(4.5, 5.5), layout="constrained")
  diagram, hist = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
  diagram.plot([0, 1], [0, 1], linestyle="--", color="0.5", label="perfect calibration")
  diagram.bar(
    lower[nonempty], acc[nonempty], width=width[nonempty], align="edge",
    edgecolor="black", color="tab:blue", label=f"accuracy (ECE = {ece:.3f})",
  )  # fmt: skip
  diagram.bar(
    lower[nonempty], conf[nonempty] - acc[nonempty], bottom=acc[nonempty],
    width=width[nonempty], align="edge", color="tab:red", alpha=0.3, label="gap",
  )  # fmt: skip
  diagram.set_xlim(0, 1)
  diagram.set_ylim(0, 1)
  diagram.set_ylabel("accuracy")
  diagram.legend(loc="upper left")
  diagram.set_title(title if title is not None else f"reliability ({binning} bins)")
  hist.bar(lower[nonempty], count[nonempty], width=width[nonempty], align="edge", color="0.4")
  hist.set_xlabel("confidence (top-class probability)")
  hist.set_ylabel("examples")
  return fig
