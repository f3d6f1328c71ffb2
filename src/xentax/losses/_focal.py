r"""Focal modulation ``(1 - p)^gamma`` (Lin et al., 2017), shared by the focal losses.

Design rules:
  * An integer ``gamma`` up to a small power is a product of multiplies (exact, and finite
    derivatives at ``p = 1``); other values go through ``exp(gamma log(1 - p))``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax


def focal_modulator(one_minus_p, gamma, power):
  """``(1 - p)^gamma``: an integer power for a static whole ``gamma`` (``power``)."""
  if power is not None:
    return lax.integer_pow(one_minus_p, power)
  return jnp.power(one_minus_p, gamma)


def focal_weight(power, p, log_p, gamma, one_minus_p=None):
  """``A = (1 - p)^g - g p log(p) (1 - p)^(g - 1)`` with its limits at ``p = 0`` and 1
  (``one_minus_p``, when given, is ``1 - p`` computed exactly by the caller)."""
  if one_minus_p is None:
    one_minus_p = -jnp.expm1(log_p)
  # p log p -> 0 as p -> 0 without 0 * -inf: a max, as a compare in a row reduction makes
  # XLA:CPU write a [..., C] array.
  p_log_p = p * jnp.maximum(log_p, jnp.finfo(log_p.dtype).min)
  if power is not None:
    if power == 0:
      return jnp.ones_like(p)
    second = power * p_log_p * lax.integer_pow(one_minus_p, power - 1)
  else:
    # -> 0 as p -> 1 (p log p ~ -(1 - p)), also for gamma < 1 where (1 - p)^(g - 1) is inf.
    at_one = one_minus_p > 0
    safe = jnp.where(at_one, one_minus_p, jnp.ones_like(one_minus_p))
    second = jnp.where(at_one, gamma * p_log_p * jnp.power(safe, gamma - 1), 0.0)
  return focal_modulator(one_minus_p, gamma, power) - second


def focal_scale(ce, log_1mp, gamma) -> jax.Array:
  """``exp(gamma log(1 - p)) * ce``, exactly ``ce`` for ``gamma = 0``; where ``ce`` is
  infinite the modulator's gradient term is dropped (its limit), so the gradient is finite."""
  gamma = jnp.asarray(gamma, log_1mp.dtype)
  # Double where at p = 1 only (gamma * -inf is NaN for gamma = 0): there (1 - p)^gamma is
  # 1 for gamma = 0 and 0 otherwise, with zero gradient in gamma.
  certain = log_1mp == -jnp.inf
  exponent = gamma * jnp.where(certain, jnp.zeros_like(log_1mp), log_1mp)
  at_certain = jnp.where(gamma == 0, jnp.ones_like(log_1mp), jnp.zeros_like(log_1mp))
  modulator = jnp.where(certain, at_certain, jnp.exp(exponent))
  frozen = jax.lax.stop_gradient(modulator)
  finite_ce = jnp.where(jnp.isfinite(ce), ce, jnp.zeros_like(ce))
  # Value: modulator * ce. Gradient: modulator * d ce + finite_ce * d modulator.
  return frozen * ce + (modulator - frozen) * finite_ce
