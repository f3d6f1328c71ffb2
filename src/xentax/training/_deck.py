"""The deck's per-example gradient-descent pseudocode, faithfully, as the reference loop.

Design notes:
  The deck's "binary cross entropy loss pseudocode" is softmax regression trained by
  per-example SGD with no bias (append a column of ones to ``X`` for one)::

    FOR i = 1 to N: FOR each X_j, y_j:
      z = X_j * theta;  y_pred = softmax(z);  loss = -sum(y_j * log(y_pred))
      gradient = X_j.T * (y_pred - y_j);  theta = theta - alpha * gradient

  :func:`deck_sgd` runs exactly that, one example at a time, as eager (uncompiled) JAX
  operations in the inputs' dtype. It is the reference the compiled loop is checked
  against (same updates with ``batch_size=1``, no shuffling, plain SGD) and timed against.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def with_bias_column(x: np.ndarray) -> np.ndarray:
  """``[x, 1]``: the deck's ``theta`` has no bias, so a constant feature supplies it."""
  return np.concatenate([x, np.ones((len(x), 1), x.dtype)], axis=1)


def deck_sgd(
  x_NxD, y_NxC, theta_DxC, *, alpha: float, iterations: int = 1
) -> tuple[jax.Array, list[float]]:
  """The deck's per-example SGD for softmax regression, as written.

  Args:
    x_NxD: training examples ``X`` (rows ``X_j``).
    y_NxC: one-hot labels ``y``.
    theta_DxC: the initial ``theta`` (the deck: random).
    alpha: learning rate.
    iterations: the deck's ``N``, passes over the examples in their given order.

  Returns:
    ``(theta, losses)``: the final ``theta`` and, per iteration, the mean of the per-example
    losses computed before each update.

  Raises:
    ValueError: shapes that do not fit ``z = X_j theta``.
  """
  x_NxD, y_NxC, theta = jnp.asarray(x_NxD), jnp.asarray(y_NxC), jnp.asarray(theta_DxC)
  if x_NxD.ndim != 2 or y_NxC.shape != (x_NxD.shape[0], theta.shape[1]):
    raise ValueError(
      f"need x [N, D], y [N, C] and theta [D, C]; got {x_NxD.shape}, {y_NxC.shape}, {theta.shape}"
    )
  if theta.shape[0] != x_NxD.shape[1]:
    raise ValueError(f"theta has {theta.shape[0]} rows but x has {x_NxD.shape[1]} features")
  losses = []
  for _ in range(iterations):
    total = 0.0
    for j in range(x_NxD.shape[0]):
      x_j, y_j = x_NxD[j], y_NxC[j]
      z = x_j @ theta
      y_pred = jax.nn.softmax(z)
      loss = -jnp.sum(y_j * jnp.log(y_pred))
      gradient = jnp.outer(x_j, y_pred - y_j)  # X_j.T * (y_pred - y_j)
      theta = theta - alpha * gradient
      total += float(loss)
    losses.append(total / x_NxD.shape[0])
  return theta, losses
