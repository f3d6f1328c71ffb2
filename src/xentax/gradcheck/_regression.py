"""Closed-form gradients of softmax and logistic regression, in full and per example.

Design notes:
  * Softmax regression and logistic regression trained by SGD take the step
    ``gradient = X_j^T (y_pred - y_j)``; these functions write that gradient (and the
    softmax Hessian, and the fused linear loss's) as plain array formulas to compare with
    ``jax.grad``.
  * They share no code with :mod:`xentax.losses`, so they can check it: the losses they
    differentiate are the mean sparse/soft cross-entropy and the mean binary
    cross-entropy of a linear model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from xentax.losses import contract


def _linear_model(fn_name: str, X, W, b, *, vector: bool):
  """Check ``X [n, d]``, ``W [d, C]`` (``w [d]`` when ``vector``) and ``b [C]`` (scalar)."""
  X = contract.float_array(fn_name, "X", X)
  W = contract.float_array(fn_name, "w" if vector else "W", W)
  b = contract.float_array(fn_name, "b", jnp.asarray(b, W.dtype) if _is_scalar(b) else b)
  want_w = "[d]" if vector else "[d, C]"
  want_b = "[]" if vector else f"[{W.shape[-1] if W.ndim else 'C'}]"
  ok = X.ndim == 2 and W.ndim == (1 if vector else 2) and W.shape[:1] == X.shape[1:]
  ok = ok and b.shape == (() if vector else W.shape[1:])
  if not ok:
    raise ValueError(
      f"{fn_name}: X has shape {X.shape}, {'w' if vector else 'W'} {W.shape} and b {b.shape}; "
      f"they must be X [n, d], {'w' if vector else 'W'} {want_w} and b {want_b}."
    )
  if not vector:
    contract.check_num_classes(fn_name, W.shape[1], "W's class axis")
  return X, W, b


def _is_scalar(x) -> bool:
  return isinstance(x, int | float)


def _targets(fn_name: str, Y, n: int, num_classes: int, dtype) -> jax.Array:
  """Integer labels become one-hot rows; one-hot or soft rows are used as given.

  Labels must lie in ``[0, C)`` and targets in ``[0, 1]``, as for the losses.
  """
  Y = contract.numeric_array(fn_name, "Y", Y)
  if jnp.issubdtype(Y.dtype, jnp.integer) and Y.shape == (n,):
    bad = (Y < 0) | (Y >= num_classes)
    contract.check_values(fn_name, f"labels Y must lie in [0, {num_classes})", Y, bad)
    return jax.nn.one_hot(Y, num_classes, dtype=dtype)
  if Y.shape != (n, num_classes) or jnp.issubdtype(Y.dtype, jnp.integer):
    raise ValueError(
      f"{fn_name}: Y has shape {Y.shape} and dtype {Y.dtype}; pass integer labels of shape "
      f"[n] = [{n}] or one-hot/soft float targets of shape [n, C] = [{n}, {num_classes}]."
    )
  contract.check_values(fn_name, "targets Y must lie in [0, 1]", Y, (Y < 0) | (Y > 1))
  return Y.astype(dtype)


def softmax_regression_grad(X, W, b, Y) -> tuple[jax.Array, jax.Array]:
  r"""Gradient of the mean cross-entropy of softmax regression ``softmax(X W + b)``.

  .. math::
    J(W, b) = -\frac{1}{n} \sum_j \sum_c Y_{jc} \log \mathrm{softmax}(X_j W + b)_c

  Derivation: with ``z_j = X_j W + b`` and ``p_j = softmax(z_j)``, and targets summing to
  one, ``-sum_c Y_c log p_c = lse(z) - sum_c Y_c z_c``; since ``d lse / d z = p``, the
  gradient of example ``j`` with respect to its logits is ``p_j - Y_j`` (``y_pred - y``).
  The chain rule through ``z_j = X_j W + b`` gives
  ``d/dW = X_j^T (p_j - Y_j)`` (an outer product) and ``d/db = p_j - Y_j``; averaging over
  the ``n`` examples:

  .. math::
    \frac{\partial J}{\partial W} = \frac{1}{n} X^T (\mathrm{softmax}(XW + b) - Y),
    \qquad
    \frac{\partial J}{\partial b} = \frac{1}{n} \sum_j (\mathrm{softmax}(X_j W + b) - Y_j)

  Args:
    X: ``[n, d]`` inputs.
    W: ``[d, C]`` weights.
    b: ``[C]`` bias.
    Y: ``[n]`` integer labels, or ``[n, C]`` one-hot or soft targets (rows summing to 1).

  Returns:
    ``(dW, db)`` of shapes ``[d, C]`` and ``[C]``.

  Raises:
    TypeError: non-float ``X``, ``W`` or ``b``, or non-numeric ``Y``.
    ValueError: shapes other than the above, or (on concrete inputs) a label outside
      ``[0, C)`` or a target outside ``[0, 1]``.

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> X, W, b, y = jnp.ones((4, 3)), jnp.zeros((3, 2)), jnp.zeros(2), jnp.array([0, 1, 1, 1])
    >>> dW, db = xentax.gradcheck.softmax_regression_grad(X, W, b, y)
    >>> [round(float(v), 3) for v in db]  # mean of [0.5, 0.5] - onehot(y)
    [0.25, -0.25]
  """
  X, W, b = _linear_model("softmax_regression_grad", X, W, b, vector=False)
  Y = _targets("softmax_regression_grad", Y, X.shape[0], W.shape[-1], W.dtype)
  residual = jax.nn.softmax(X @ W + b, axis=-1) - Y
  n = X.shape[0]
  return X.T @ residual / n, jnp.sum(residual, axis=0) / n


def softmax_regression_per_example_grad(X, W, b, Y) -> tuple[jax.Array, jax.Array]:
  """The per-example gradients of softmax regression (SGD's step), ``X_j^T (p_j - Y_j)``.

  Example ``j`` alone has loss ``-sum_c Y_jc log softmax(X_j W + b)_c``, whose gradient is
  the outer product ``X_j^T (softmax(X_j W + b) - Y_j)`` with respect to ``W`` and
  ``softmax(X_j W + b) - Y_j`` with respect to ``b`` (see :func:`softmax_regression_grad`).
  Their mean over ``j`` is the full-batch gradient; each one equals
  ``jax.vmap(jax.grad(loss_j), in_axes=(None, None, 0, 0))``.

  Args:
    X: ``[n, d]`` inputs.
    W: ``[d, C]`` weights.
    b: ``[C]`` bias.
    Y: ``[n]`` integer labels, or ``[n, C]`` one-hot or soft targets.

  Returns:
    ``(dW, db)`` of shapes ``[n, d, C]`` and ``[n, C]``: one gradient per example.

  Raises:
    As :func:`softmax_regression_grad`.

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> X, W, b, y = jnp.ones((4, 3)), jnp.zeros((3, 2)), jnp.zeros(2), jnp.array([0, 1, 1, 1])
    >>> dW, db = xentax.gradcheck.softmax_regression_per_example_grad(X, W, b, y)
    >>> dW.shape, db[0].tolist()  # example 0: [0.5, 0.5] - onehot(0)
    ((4, 3, 2), [-0.5, 0.5])
  """
  fn_name = "softmax_regression_per_example_grad"
  X, W, b = _linear_model(fn_name, X, W, b, vector=False)
  Y = _targets(fn_name, Y, X.shape[0], W.shape[-1], W.dtype)
  residual = jax.nn.softmax(X @ W + b, axis=-1) - Y
  return X[:, :, None] * residual[:, None, :], residual


def logistic_regression_grad(X, w, b, y) -> tuple[jax.Array, jax.Array]:
  r"""Gradient of the mean binary cross-entropy of logistic regression ``sigmoid(X w + b)``.

  .. math::
    J(w, b) = -\frac{1}{n} \sum_j \left[ y_j \log \sigma(z_j)
      + (1 - y_j) \log(1 - \sigma(z_j)) \right], \quad z = X w + b

  Derivation: ``d log sigma(z) / dz = 1 - sigma(z)`` and ``d log(1 - sigma(z)) / dz =
  -sigma(z)``, so ``dJ_j / dz_j = -y_j (1 - sigma) + (1 - y_j) sigma = sigma(z_j) - y_j``,
  ``y_pred - y`` once more. Through ``z = X w + b``:

  .. math::
    \frac{\partial J}{\partial w} = \frac{1}{n} X^T (\sigma(Xw + b) - y), \qquad
    \frac{\partial J}{\partial b} = \frac{1}{n} \sum_j (\sigma(X_j w + b) - y_j)

  Args:
    X: ``[n, d]`` inputs.
    w: ``[d]`` weights.
    b: scalar bias.
    y: ``[n]`` labels in ``[0, 1]`` (hard or soft).

  Returns:
    ``(dw, db)`` of shapes ``[d]`` and ``[]``.

  Raises:
    TypeError: non-float ``X``, ``w`` or ``b``, or non-numeric ``y``.
    ValueError: shapes other than the above, or (on concrete inputs) a label outside
      ``[0, 1]``.

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> dw, db = xentax.gradcheck.logistic_regression_grad(  # sigmoid(0) - 1 = -0.5
    ...     jnp.ones((2, 3)), jnp.zeros(3), 0.0, jnp.array([1.0, 1.0]))
    >>> dw.tolist(), float(db)
    ([-0.5, -0.5, -0.5], -0.5)
  """
  fn_name = "logistic_regression_grad"
  X, w, b = _linear_model(fn_name, X, w, b, vector=True)
  y = contract.numeric_array(fn_name, "y", y)
  if y.shape != X.shape[:1]:
    raise ValueError(f"{fn_name}: y has shape {y.shape}; X {X.shape} needs y of shape [n].")
  contract.check_values(fn_name, "labels y must lie in [0, 1]", y, (y < 0) | (y > 1))
  residual = jax.nn.sigmoid(X @ w + b) - y.astype(w.dtype)
  n = X.shape[0]
  return X.T @ residual / n, jnp.sum(residual) / n


def softmax_cross_entropy_hessian(logits) -> jax.Array:
  r"""Hessian of ``-sum_c y_c log softmax(z)_c`` with respect to the logits ``z``.

  .. math::
    \frac{\partial^2 \ell}{\partial z \partial z^T} = \mathrm{diag}(p) - p p^T,
    \quad p = \mathrm{softmax}(z)

  Derivation: the gradient is ``p - y`` (see :func:`softmax_regression_grad`) and ``y``
  does not depend on ``z``, so the Hessian is the Jacobian of the softmax,
  ``d p_a / d z_b = p_a ([a = b] - p_b)``. It does not depend on the target, is symmetric
  and positive semi-definite (``v^T H v`` is the variance of ``v`` under ``p``), and has the
  all-ones vector in its null space (shifting every logit changes nothing).

  Args:
    logits: ``[..., C]``; leading axes are batch axes.

  Returns:
    ``[..., C, C]`` one Hessian per row.

  Raises:
    TypeError: non-float logits. ValueError: scalar logits or an empty class axis.

  Examples:
    >>> import jax.numpy as jnp, xentax
    >>> xentax.gradcheck.softmax_cross_entropy_hessian(jnp.zeros(2)).tolist()
    [[0.25, -0.25], [-0.25, 0.25]]
  """
  logits = contract.float_array("softmax_cross_entropy_hessian", "logits", logits)
  if logits.ndim == 0:
    raise ValueError(
      "softmax_cross_entropy_hessian: logits must have a class axis [..., C], got a scalar; "
      "pass logits[None] for a single class."
    )
  contract.check_num_classes("softmax_cross_entropy_hessian", logits.shape[-1])
  p = jax.nn.softmax(logits, axis=-1)
  return jnp.eye(p.shape[-1], dtype=p.dtype) * p[..., None, :] - p[..., :, None] * p[..., None, :]


def fused_linear_cross_entropy_grad(
  hidden, weight, labels, *, bias=None, softcap=None, **options
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
  r"""Gradient of :func:`xentax.fused_linear_cross_entropy` w.r.t. hidden, weight and bias.

  Derivation: with ``u = hidden @ weight + bias`` and ``z = c tanh(u / c)`` (``z = u``
  without softcap), let ``G = d loss / d z`` be the closed-form sparse cross-entropy
  gradient (:func:`~xentax.gradcheck.logits_grad`, every option included). Then
  ``d z / d u = 1 - tanh(u / c)^2 = 1 - (z / c)^2`` elementwise, so with
  ``G_u = G (1 - (z / c)^2)``:

  .. math::
    \frac{\partial L}{\partial h} = G_u W^T, \quad
    \frac{\partial L}{\partial W} = h^T G_u, \quad
    \frac{\partial L}{\partial b} = \sum_n G_{u,n}

  (softmax regression's ``X^T (y_pred - y)`` with ``X = hidden`` when there are no
  options).

  Args:
    hidden: ``[..., D]``; weight: ``[D, V]``; labels: ``[...]``; bias: optional ``[V]``.
    softcap: the loss's ``softcap``.
    **options: the sparse loss's options (``class_weights``, ``ignore_index``,
      ``label_smoothing``, ``z_loss``, ``where``, ``sample_weight``, ``reduction``); sample
      weights scale each token's row of ``G``, and so its share of every gradient.

  Returns:
    ``(d_hidden, d_weight, d_bias)``; ``d_bias`` is None without a bias.

  Raises:
    TypeError / ValueError: non-float ``hidden`` or ``weight``, shapes other than the
      above, a ``softcap`` outside its domain, or as
      :func:`~xentax.gradcheck.sparse_categorical_cross_entropy_with_logits_grad`.

  Examples:
    >>> import jax, jax.numpy as jnp, xentax
    >>> h = jax.random.normal(jax.random.key(0), (4, 3))
    >>> w = jax.random.normal(jax.random.key(1), (3, 5))
    >>> y = jnp.array([0, 1, 2, 3])
    >>> d_h, d_w, _ = xentax.gradcheck.fused_linear_cross_entropy_grad(h, w, y)
    >>> auto_h, auto_w = jax.grad(xentax.fused_linear_cross_entropy, argnums=(0, 1))(h, w, y)
    >>> bool(jnp.allclose(d_h, auto_h, atol=1e-6) & jnp.allclose(d_w, auto_w, atol=1e-6))
    True
  """
  from xentax.gradcheck._softmax_grads import sparse_categorical_cross_entropy_with_logits_grad

  fn_name = "fused_linear_cross_entropy_grad"
  hidden = contract.float_array(fn_name, "hidden", hidden)
  weight = contract.float_array(fn_name, "weight", weight)
  if weight.ndim != 2 or hidden.ndim < 1 or hidden.shape[-1] != weight.shape[0]:
    raise ValueError(
      f"{fn_name}: hidden has shape {hidden.shape} and weight {weight.shape}; they must be "
      "[..., D] and [D, V]."
    )
  if bias is not None and jnp.shape(bias) != weight.shape[1:]:
    raise ValueError(f"{fn_name}: bias has shape {jnp.shape(bias)}; it must be {weight.shape[1:]}.")
  if softcap is not None:
    contract.option(fn_name, "softcap", softcap)
  u = hidden @ weight + (0 if bias is None else jnp.asarray(bias))
  z = u if softcap is None else softcap * jnp.tanh(u / softcap)
  g = sparse_categorical_cross_entropy_with_logits_grad(z, labels, **options)
  if softcap is not None:
    g = g * (1 - jnp.square(z / softcap))
  g_2d = g.reshape(-1, g.shape[-1])
  d_hidden = (g @ weight.T).reshape(hidden.shape)
  d_weight = hidden.reshape(-1, hidden.shape[-1]).T @ g_2d
  d_bias = None if bias is None else jnp.sum(g_2d, axis=0)
  return d_hidden, d_weight, d_bias
