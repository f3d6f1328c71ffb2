r"""Temperature scaling: the one-parameter NLL fit of Guo et al. (2017).

Design notes:
  * Fit the *inverse* temperature ``a = 1 / T``: the mean NLL of ``softmax(a z)`` is convex
    in ``a`` (a log-sum-exp of linear functions of ``a`` minus a linear term), with slope
    ``g(a) = mean_n (E_{p_a}[z_n] - z_{n,y_n})`` and curvature the mean predictive
    variance of the logit. The fit is the root of ``g``.
  * Safeguarded Newton inside a bracket that bisection keeps valid, a fixed number of
    steps in ``lax`` loops: jit-able and deterministic.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from xentax.losses import contract
from xentax.metrics._classification import prepare

_MAX_INVERSE_TEMPERATURE = 2.0**30


def _slope_and_curvature(a, x, labels, valid):
  """``d NLL / d a`` and ``d^2 NLL / d a^2`` at inverse temperature ``a``."""
  scaled = a * x
  p = jnp.exp(scaled - contract.logsumexp(scaled)[..., None])
  # 0 * (-inf) = NaN for -inf logits: their probability is 0, so they add nothing.
  finite_x = jnp.where(p > 0, x, 0.0)
  mean_z = jnp.sum(p * finite_x, axis=-1)
  var_z = jnp.sum(p * jnp.square(finite_x - mean_z[..., None]), axis=-1)
  target = jnp.take_along_axis(x, labels[..., None], axis=-1)[..., 0]
  count = jnp.maximum(jnp.sum(valid), 1).astype(x.dtype)
  slope = jnp.sum(jnp.where(valid, mean_z - target, 0.0)) / count
  curvature = jnp.sum(jnp.where(valid, var_z, 0.0)) / count
  return slope, curvature


def fit_temperature(
  logits,
  labels,
  *,
  kind: str = "logits",
  axis: int = -1,
  ignore_index: int | None = None,
  where=None,
  num_steps: int = 64,
) -> jax.Array:
  r"""The temperature ``T`` minimising the mean NLL of ``softmax(logits / T)`` on ``labels``.

  .. math::
    T^\star = \arg\min_{T > 0} \frac{1}{N} \sum_n
      \left(\mathrm{lse}(z_n / T) - z_{n,y_n} / T\right)

  Fitted on held-out logits, then ``logits / T`` is the calibrated model (the ranking, hence
  the accuracy, is unchanged). Solved for ``a = 1 / T``, where the objective is convex: a
  bracket ``[0, a_hi]`` is grown by doubling until the slope turns positive, then
  ``num_steps`` safeguarded Newton steps (bisection whenever Newton would leave the
  bracket). Runs under ``jit`` (``num_steps`` is static). Edge cases: if predictions are no
  better than uniform on average (the slope at ``a = 0`` is already >= 0) the result is
  ``inf``; if every kept example is classified with a margin so that the NLL keeps falling
  as ``a`` grows, the bracket stops at ``a = 2^30`` and ``T`` is tiny; a NaN logit in a kept
  example (or a bad label under ``jit``) gives NaN. Use float64 logits
  for a fit to more than float32's ~7 digits.

  Args:
    logits: ``[..., C, ...]`` logits, class axis at ``axis``.
    labels: integer class indices, the logits' shape without ``axis``.
    axis, ignore_index, where: as in the sparse losses.
    num_steps: Newton/bisection steps after the bracket is found.
    kind: ``"logits"`` (default), ``"probs"``, ``"binary_logits"`` or ``"binary_probs"``
      (:mod:`xentax.metrics`).

  Returns:
    A scalar ``T > 0``, float32 (float64 for float64 logits).

  Raises:
    TypeError: float labels, as for the sparse losses.
    ValueError: bad shapes or labels out of range, as for the sparse losses.

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> z = 3.0 * jax.random.normal(jax.random.key(0), (512, 5))  # overconfident logits
    >>> y = jax.random.categorical(jax.random.key(1), z / 3.0)  # drawn at temperature 3
    >>> 2.0 < float(xentax.metrics.fit_temperature(z, y)) < 4.5
    True

  References:
    Guo et al., "On Calibration of Modern Neural Networks", ICML 2017.
  """
  fn_name = "fit_temperature"
  if not isinstance(num_steps, int) or num_steps < 1:
    raise ValueError(f"{fn_name}: num_steps={num_steps!r} must be a positive int.")
  x, inputs = prepare(
    fn_name, logits, labels, axis=axis, ignore_index=ignore_index, where=where, kind=kind
  )
  x = x + contract.nan_where(inputs.bad, x.dtype)[..., None]
  labels, valid = inputs.labels, inputs.valid

  def slope(a):
    return _slope_and_curvature(a, x, labels, valid)[0]

  one = jnp.ones((), x.dtype)

  # Grow the bracket: the smallest a_hi = 2^k with slope(a_hi) >= 0.
  def grow_cond(a_hi):
    return (slope(a_hi) < 0) & (a_hi < _MAX_INVERSE_TEMPERATURE)

  a_hi = lax.while_loop(grow_cond, lambda a: 2 * a, one)

  def step(_, state):
    lo, hi, a = state
    g, h = _slope_and_curvature(a, x, labels, valid)
    lo = jnp.where(g < 0, a, lo)
    hi = jnp.where(g < 0, hi, a)
    newton = a - g / jnp.where(h > 0, h, 1.0)
    inside = (h > 0) & (newton > lo) & (newton < hi)
    return lo, hi, jnp.where(inside, newton, (lo + hi) / 2)

  lo, hi, a = lax.fori_loop(0, num_steps, step, (0 * one, a_hi, a_hi / 2))
  no_better_than_uniform = slope(0 * one) >= 0
  fitted = jnp.where(no_better_than_uniform, jnp.inf, 1 / a)
  # A NaN in a kept logit (or a bad label) makes the objective NaN: so is its minimiser.
  return jnp.where(jnp.any(jnp.isnan(x)), jnp.nan, fitted)
