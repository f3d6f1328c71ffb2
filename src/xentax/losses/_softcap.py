r"""Logit soft-capping ``z = c tanh(x / c)`` (Gemma 2) and its derivatives.

Design rules:
  * ``tanh`` saturates to exactly +-1, so the value needs no clip (a clip before the ``tanh``
    inside a fused pass is slow on XLA:CPU); only the derivatives clip, to keep
    ``inf * 0`` out of them at infinite logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.losses import _common

# |x / c| beyond which tanh is +-1 in float64 (it rounds to 1 from about 19.1).
_TANH_SATURATION = 40.0


def softcap(x, cap) -> jax.Array:
  """``c tanh(x / c)`` in the compute dtype; a ``-inf`` logit becomes ``-c``, exactly."""
  return cap * jnp.tanh(_common.upcast(x) / cap)


def softcap_slope(x, cap) -> jax.Array:
  """``d z / d x = 1 - tanh(x / c)^2``: 0 at ``+-inf`` with no ``[..., C]`` clip pass."""
  return 1 - jnp.square(jnp.tanh(_common.upcast(x) / cap))


def softcap_derivatives(x, cap):
  """``(d z / d x, d z / d c)`` of ``z = c tanh(x / c)``: ``1 - t^2`` and
  ``t - (x / c)(1 - t^2)`` with ``t = tanh(x / c)``; finite (0 and ``+-1``) at ``+-inf``."""
  ratio = jnp.clip(_common.upcast(x) / cap, -_TANH_SATURATION, _TANH_SATURATION)
  t = jnp.tanh(ratio)
  d_x = 1 - jnp.square(t)
  return d_x, t - ratio * d_x


@jax.custom_jvp
def differentiable_softcap(x, cap):
  """:func:`softcap` whose derivatives stay finite at ``+-inf``."""
  return softcap(x, cap)


@differentiable_softcap.defjvp
def _differentiable_softcap_jvp(primals, tangents):
  x, cap = primals
  t_x, t_cap = tangents
  d_x, d_cap = softcap_derivatives(x, cap)
  return softcap(x, cap), d_x * t_x + d_cap * t_cap
