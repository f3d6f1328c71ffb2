"""Why gradcheck's finite differences use float64 and ``FD_STEP``: error against step size.

Design notes:
  The error of a difference quotient falls with the step ``h`` (truncation, ``h^2`` for
  central differences) until round-off (``u |f| / h``) takes over: a V whose bottom sits
  near ``u^(1/3)``. The study differentiates ``sparse_categorical_cross_entropy_with_logits``
  (label smoothing 0.1) at fixed ``[6, 5]`` logits in float32 and float64 and compares with
  the closed form :func:`xentax.gradcheck.logits_grad` in float64 at the same (rounded)
  logits.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from xentax import gradcheck, losses

STEPS = tuple(float(h) for h in np.logspace(-13, 0, 40))
LOSS = "sparse_categorical_cross_entropy_with_logits"


@dataclasses.dataclass
class StepSizeStudy:
  """Max error of central and forward differences against the step, by dtype.

  Attributes:
    loss: the loss differentiated.
    steps: the steps ``h``.
    errors: dtype name -> ``{"central": [...], "forward": [...]}`` (one per step).
    chosen_step: gradcheck's step (:data:`xentax.gradcheck.FD_STEP`).
  """

  loss: str
  steps: list[float]
  errors: dict[str, dict[str, list[float]]]
  chosen_step: float

  def best(self, dtype: str) -> tuple[float, float]:
    """``(h, error)`` at the bottom of ``dtype``'s central-difference curve."""
    central = np.asarray(self.errors[dtype]["central"])
    i = int(np.argmin(central))
    return self.steps[i], float(central[i])


def step_size_errors(steps=STEPS) -> StepSizeStudy:
  """The study (see the module notes); differences are taken in each named dtype."""
  rng = np.random.default_rng(0)
  scores = rng.normal(size=(6, 5)) * 2
  labels = jnp.asarray(rng.integers(0, 5, size=6))
  options = {"label_smoothing": 0.1}
  out = {}
  with jax.enable_x64(True):
    for name in ("float32", "float64"):
      z = jnp.asarray(scores, name)
      exact = np.asarray(gradcheck.logits_grad(LOSS, z.astype(jnp.float64), labels, **options))
      n = z.size
      h = jnp.asarray(steps, name)[:, None, None]  # [S, 1, 1]
      basis = jnp.eye(n, dtype=name).reshape(n, *z.shape)  # [n, 6, 5]
      plus = (z + h[:, :, None, None] * basis).reshape(-1, *z.shape)
      minus = (z - h[:, :, None, None] * basis).reshape(-1, *z.shape)

      def f(x):
        return losses.sparse_categorical_cross_entropy_with_logits(x, labels, **options)

      f_plus = np.asarray(jax.vmap(f)(plus), np.float64).reshape(len(steps), n)
      f_minus = np.asarray(jax.vmap(f)(minus), np.float64).reshape(len(steps), n)
      f_0 = float(f(z))
      with np.errstate(divide="ignore", invalid="ignore"):
        central = (f_plus - f_minus) / np.asarray(2 * np.asarray(steps))[:, None]
        forward = (f_plus - f_0) / np.asarray(steps)[:, None]
      exact_flat = exact.reshape(1, n)
      out[name] = {
        "central": np.max(np.abs(central - exact_flat), axis=1).tolist(),
        "forward": np.max(np.abs(forward - exact_flat), axis=1).tolist(),
      }
  return StepSizeStudy(LOSS, list(steps), out, gradcheck.FD_STEP)
