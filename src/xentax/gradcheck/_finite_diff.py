"""Finite differences in float64, over any pytree, and ``check_grads`` that returns numbers.

Design notes:
  * Central differences ``(f(x + h e_i) - f(x - h e_i)) / 2h`` need float64: in float32 the
    round-off term ``u |f| / h`` is 1e-3 at the best step (see the step-size figure in the
    report). Every function here therefore evaluates ``f`` inside ``jax.enable_x64(True)``
    on the parameters cast to float64, whatever the caller's x64 setting, and raises
    ``ValueError`` if ``f`` still returns something other than float64 (e.g. it casts to
    float32 inside), since the differences would then be meaningless.
  * The gradient *under test* is computed before that, in the caller's dtype and setting.
  * Small inputs get the full Jacobian (``2n`` evaluations, batched with ``jax.vmap``);
    large ones get ``num_directions`` random unit directions ``v``, comparing ``<grad, v>``
    with the central difference along ``v`` (``2k`` evaluations).
  * Arguments are checked before any evaluation: a step that is not finite and > 0 would
    divide by zero or give meaningless quotients, and directions must be ``[k, n]`` for
    ``n`` flattened parameters; each raises an error naming the function, the argument and
    the fix instead of returning NaN or failing inside a broadcast.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from xentax.gradcheck._report import GradReport, compare
from xentax.gradcheck._tolerances import (
  FD_STEP,
  check_step,
  dtype_name,
  finite_difference_noise,
  tolerance,
)

# A check's programs run once and are timed by nothing: LLVM's optimisation level 0 compiles
# them faster, and changes no operation XLA runs (the tests compile everything this way).
CHECK_COMPILE_OPTIONS = {"xla_backend_optimization_level": 0}


def check_jit(fn: Callable) -> Callable:
  """``jax.jit(fn)`` compiled with :data:`CHECK_COMPILE_OPTIONS`."""
  return jax.jit(fn, compiler_options=CHECK_COMPILE_OPTIONS)


def _to_float64(tree):
  return jax.tree_util.tree_map(lambda x: jnp.asarray(np.asarray(x, np.float64)), tree)


def _check_directions(fn_name: str, directions, size: int) -> np.ndarray:
  """``directions`` as a float64 ``[k, n]`` NumPy array, ``n = size`` flattened parameters.

  Raises:
    TypeError: directions that are not an array of real numbers.
    ValueError: a shape other than ``[k, n]``, or a value that is not finite.
  """
  try:
    v = np.asarray(directions)
  except ValueError:  # a ragged list
    v = np.asarray(directions, dtype=object)
  if v.dtype.kind not in "iuf":
    raise TypeError(
      f"{fn_name}: directions must be a [k, {size}] array of real numbers, got dtype "
      f"{v.dtype}; pass a float array, one direction per row."
    )
  if v.ndim != 2 or v.shape[1] != size:
    hint = " (directions[None] for a single direction)" if v.shape == (size,) else ""
    raise ValueError(
      f"{fn_name}: directions have shape {v.shape}, but params flatten to n = {size} entries "
      f"(jax.flatten_util.ravel_pytree order); pass a [k, {size}] array, one direction per "
      f"row{hint}."
    )
  v = v.astype(np.float64)
  if not np.all(np.isfinite(v)):
    position = tuple(int(i) for i in np.argwhere(~np.isfinite(v))[0])
    raise ValueError(
      f"{fn_name}: directions must be finite; found {v[position]} at position {position}. "
      "Pass finite directions (unit vectors keep the differences on the scale of the step)."
    )
  return v


def _check_count(fn_name: str, name: str, value, minimum: int, fix: str) -> int:
  """A Python or NumPy integer ``>= minimum`` (``max_full``, ``num_directions``), as an int."""
  if isinstance(value, bool) or not isinstance(value, numbers.Integral):
    raise TypeError(
      f"{fn_name}: {name}={value!r} must be an integer >= {minimum}, got "
      f"{type(value).__name__}; {fix}."
    )
  if value < minimum:
    raise ValueError(f"{fn_name}: {name}={value!r} must be an integer >= {minimum}; {fix}.")
  return int(value)


def _evaluate(fn_name: str, f, points, batched: bool) -> np.ndarray:
  """``f`` at each row of ``points`` (already unravelled by ``f``), as float64 NumPy."""
  if batched:
    values = check_jit(jax.vmap(f))(points)  # one compilation, not one per primitive
  else:
    values = jnp.stack([f(row) for row in points])
  return _checked_float64(fn_name, values)


def _checked_float64(fn_name: str, values) -> np.ndarray:
  if values.dtype != jnp.float64:
    raise ValueError(
      f"{fn_name}: f returned dtype {values.dtype} on float64 parameters; finite differences "
      "need f to compute in float64 (do not cast to float32 inside f)."
    )
  return np.asarray(values)


@functools.lru_cache(maxsize=128)
def _batched_values(f: Callable, treedef, shapes: tuple, num_args: int) -> Callable:
  """``jit(vmap(f))`` over flattened parameter rows, with ``num_args`` unbatched arguments.

  Cached on ``f`` and the parameters' structure, so calling :func:`central_differences`
  again with the same ``f`` (other ``args``, other values) reuses the compiled function.
  """
  ends = np.cumsum([int(np.prod(shape)) for shape in shapes])

  def value(row, *args):
    starts = [0, *ends[:-1]]
    leaves = [row[a:b].reshape(shape) for a, b, shape in zip(starts, ends, shapes, strict=True)]
    return f(jax.tree_util.tree_unflatten(treedef, leaves), *args)

  return check_jit(jax.vmap(value, in_axes=(0,) + (None,) * num_args))


def finite_difference_jacobian(f: Callable, params, *, eps: float = FD_STEP, batched: bool = True):
  r"""Central-difference Jacobian of ``f`` at ``params``, in float64.

  .. math::
    \frac{\partial f}{\partial x_i} \approx \frac{f(x + h e_i) - f(x - h e_i)}{2h},
    \quad \text{error} \approx \frac{h^2}{6} |f'''| + \frac{u |f|}{h}

  Args:
    f: function of one pytree of float arrays, returning an array (a scalar loss gives the
      gradient).
    params: the pytree at which to differentiate; cast to float64.
    eps: the step ``h`` (default 1e-6, near the float64 optimum ``u^(1/3)``).
    batched: evaluate the ``2n`` points with one ``jax.vmap(f)`` call; ``False`` loops in
      Python (for ``f`` that cannot be vmapped).

  Returns:
    A pytree like ``params`` whose leaves are float64 NumPy arrays of shape
    ``f(params).shape + leaf.shape``.

  Raises:
    ValueError: ``f`` does not return float64 on float64 parameters, or ``eps`` is not
      finite and > 0 (TypeError: not a real number).

  Examples:
    >>> import jax.numpy as jnp
    >>> from xentax import gradcheck
    >>> g = gradcheck.finite_difference_jacobian(lambda p: jnp.sum(p["w"] ** 2),
    ...                                          {"w": jnp.array([1.0, -2.0])})
    >>> [round(float(v), 6) for v in g["w"]]
    [2.0, -4.0]
  """
  eps = check_step("finite_difference_jacobian", eps)
  jac, _ = central_differences(f, params, eps=eps, batched=batched)
  return jac


def central_differences(
  f: Callable, params, *, args: tuple = (), eps: float = FD_STEP, batched: bool = True
):
  """:func:`finite_difference_jacobian` and ``max |f|`` over the evaluated points.

  The second value sets the round-off error of the differences (see
  :func:`xentax.gradcheck.finite_difference_noise`).

  With ``args``, ``f`` is called as ``f(params, *args)`` and its batched evaluation is
  compiled once per ``f`` and parameter structure: many checks of one ``f`` at other
  inputs (the gradient-check matrix runs each case in three dtypes) compile it once.
  ``args`` are cast to float64 like ``params`` (integer and boolean leaves unchanged).
  """
  eps = check_step("central_differences", eps)
  with jax.enable_x64(True):
    params = _to_float64(params)
    args = jax.tree_util.tree_map(_float64_leaf, tuple(args))
    flat, unravel = ravel_pytree(params)
    n = flat.size
    steps = eps * jnp.eye(n, dtype=jnp.float64)
    points = jnp.concatenate([flat[None] + steps, flat[None] - steps])
    if not args:
      values = _evaluate("finite_difference_jacobian", lambda v: f(unravel(v)), points, batched)
    elif batched:
      leaves, treedef = jax.tree_util.tree_flatten(params)
      shapes = tuple(tuple(np.shape(leaf)) for leaf in leaves)
      evaluate = _batched_values(f, treedef, shapes, len(args))
      values = _checked_float64("finite_difference_jacobian", evaluate(points, *args))
    else:
      values = _checked_float64(
        "finite_difference_jacobian", jnp.stack([f(unravel(v), *args) for v in points])
      )
  jac = np.moveaxis((values[:n] - values[n:]) / (2 * eps), 0, -1)  # [*out, n]
  leaves, tree = jax.tree_util.tree_flatten(params)
  out, start = [], 0
  for leaf in leaves:
    size = int(np.size(leaf))
    out.append(jac[..., start : start + size].reshape(jac.shape[:-1] + tuple(np.shape(leaf))))
    start += size
  return jax.tree_util.tree_unflatten(tree, out), float(np.max(np.abs(values), initial=0.0))


def _float64_leaf(x):
  x = np.asarray(x) if not isinstance(x, jax.Array) else x
  if jnp.issubdtype(x.dtype, jnp.floating):
    return jnp.asarray(x, jnp.float64)
  return jnp.asarray(x)


def finite_difference_directional(
  f: Callable, params, directions, *, eps: float = FD_STEP, batched: bool = True
) -> np.ndarray:
  """Central differences of ``f`` along each direction: ``(f(x + h v) - f(x - h v)) / 2h``.

  Args:
    f: function of one pytree of float arrays.
    params: the point; cast to float64.
    directions: ``[k, n]`` directions in the flattened (``ravel_pytree``) parameter space,
      ``n`` the number of parameter entries; finite.
    eps: the step ``h``: finite and > 0.
    batched: as :func:`finite_difference_jacobian`.

  Returns:
    ``[k, *f(params).shape]`` float64 directional derivatives.

  Raises:
    ValueError: ``eps`` not finite and > 0, ``directions`` not of shape ``[k, n]`` or not
      finite, or ``f`` not returning float64 on float64 parameters. TypeError: ``eps`` or
      ``directions`` not real numbers.

  Examples:
    >>> import jax.numpy as jnp
    >>> from xentax import gradcheck
    >>> d = gradcheck.finite_difference_directional(
    ...     lambda w: jnp.sum(w**2), jnp.array([1.0, 2.0]), [[1.0, 0.0], [0.0, 1.0]])
    >>> [round(float(v), 6) for v in d]
    [2.0, 4.0]
  """
  fn_name = "finite_difference_directional"
  eps = check_step(fn_name, eps)
  with jax.enable_x64(True):
    flat, unravel = ravel_pytree(_to_float64(params))
    v = jnp.asarray(_check_directions(fn_name, directions, flat.size))
    points = jnp.concatenate([flat[None] + eps * v, flat[None] - eps * v])
    values = _evaluate(fn_name, lambda p: f(unravel(p)), points, batched)
  k = v.shape[0]
  return (values[:k] - values[k:]) / (2 * eps)


def _directional_scale(f, params, directions, eps, batched):
  """Directional differences and ``|f(params)|``, which sets their round-off."""
  with jax.enable_x64(True):
    flat, unravel = ravel_pytree(_to_float64(params))
    scale = float(jnp.max(jnp.abs(f(unravel(flat)))))
  return finite_difference_directional(f, params, directions, eps=eps, batched=batched), scale


def _check_arity(fn_name: str, f: Callable, count: int) -> None:
  """``TypeError`` with the fix when ``f`` cannot be called with ``count`` positional
  arguments (say ``f(params, X, y)`` given where ``f(params)`` is called)."""
  try:
    signature = inspect.signature(f)
  except (TypeError, ValueError):  # a builtin or C function: let the call speak
    return
  try:
    signature.bind(*range(count))
  except TypeError as err:
    takes = ", ".join(signature.parameters)
    raise TypeError(
      f"{fn_name}: f is called with {count} positional argument{'s' * (count > 1)}, but it "
      f"takes ({takes}) ({err}). Close over the rest: lambda params: f(params, X, y), or "
      "functools.partial."
    ) from None


def check_finite_differences(
  f: Callable,
  params,
  grad=None,
  *,
  eps: float = FD_STEP,
  max_full: int = 256,
  num_directions: int = 16,
  seed: int = 0,
  atol: float | None = None,
  rtol: float | None = None,
  batched: bool = True,
  name: str = "",
) -> GradReport:
  """Compare a gradient of a scalar ``f`` with float64 central differences.

  Args:
    f: scalar function of one pytree of float arrays (e.g. a loss of the parameters).
    params: the point; any float dtype. The gradient under test is taken at ``params`` as
      given; the finite differences at ``params`` cast to float64.
    grad: the gradient under test: a pytree like ``params``, a function ``params ->
      gradient`` (e.g. a hand-derived formula), or ``None`` for ``jax.grad(f)``.
    eps: finite-difference step.
    max_full: up to this many parameters, compare every entry of the gradient; above it,
      compare ``num_directions`` directional derivatives ``<grad, v>`` along random unit
      directions ``v``.
    num_directions: number of random directions for large inputs.
    seed: seed of the random directions.
    atol: absolute tolerance (default: by the gradient's dtype, see
      :func:`xentax.gradcheck.tolerance`); the round-off of the differences,
      :func:`xentax.gradcheck.finite_difference_noise` of ``max |f|``, is added to it.
    rtol: relative tolerance (same default).
    batched: evaluate ``f`` with ``jax.vmap`` (``False``: a Python loop).
    name: label for the report.

  Returns:
    A :class:`GradReport` (reference ``"finite_difference"``); for large inputs its
    ``worst`` is the index of a direction.

  Raises:
    ValueError: ``eps`` not finite and > 0, ``max_full < 0`` or ``num_directions < 1``
      (a check along no direction could never fail). TypeError: ``eps`` not a real
      number, ``max_full`` or ``num_directions`` not an integer.

  Examples:
    >>> import jax.numpy as jnp
    >>> from xentax import gradcheck
    >>> f = lambda w: jnp.sum(jnp.log1p(jnp.exp(w)))
    >>> gradcheck.check_finite_differences(f, jnp.array([0.5, -1.0])).passed
    True
    >>> gradcheck.check_finite_differences(f, jnp.array([0.5, -1.0]), grad=lambda w: -w).passed
    False
  """
  fn_name = "check_finite_differences"
  eps = check_step(fn_name, eps)
  max_full = _check_count(
    fn_name, "max_full", max_full, 0, "pass 0 to compare along random directions only"
  )
  num_directions = _check_count(
    fn_name,
    "num_directions",
    num_directions,
    1,
    "a check along no direction could never fail, so pass at least 1 (the default is 16)",
  )
  _check_arity(fn_name, f, 1)
  if grad is None:
    grad = jax.grad(f)(params)
  elif callable(grad):
    grad = grad(params)
  leaves = jax.tree_util.tree_leaves(grad)
  dtype = dtype_name(leaves[0]) if leaves else "float64"
  tol = tolerance(dtype, "finite_difference")
  atol = tol["atol"] if atol is None else atol
  rtol = tol["rtol"] if rtol is None else rtol
  size = sum(int(np.size(leaf)) for leaf in leaves)
  if size <= max_full:
    expected, scale = central_differences(f, params, eps=eps, batched=batched)
    return compare(
      grad,
      expected,
      dtype=dtype,
      reference="finite_difference",
      atol=atol + finite_difference_noise(scale, eps),
      rtol=rtol,
      name=name,
    )
  rng = np.random.default_rng(seed)
  directions = rng.standard_normal((num_directions, size))
  directions /= np.linalg.norm(directions, axis=1, keepdims=True)
  flat_grad = np.concatenate([np.asarray(leaf, np.float64).ravel() for leaf in leaves])
  expected, scale = _directional_scale(f, params, directions, eps, batched)
  return compare(
    directions @ flat_grad,
    expected,
    dtype=dtype,
    reference="finite_difference",
    atol=atol + finite_difference_noise(scale, eps),
    rtol=rtol,
    name=name,
    detail=f"{num_directions} random directions (n = {size} > max_full = {max_full})",
  )


def check_grads_report(
  f: Callable,
  args,
  *,
  order: int = 2,
  modes=("fwd", "rev"),
  eps: float = FD_STEP,
  atol: float | None = None,
  rtol: float | None = None,
  seed: int = 0,
  name: str = "",
) -> GradReport:
  """``jax.test_util.check_grads``'s checks in float64, as a report with numbers.

  The recursion of ``check_grads(f, args, order, modes)`` (JVP and JVP of JVP for
  ``"fwd"``; VJP and VJP of VJP for ``"rev"``, up to ``order``), each autodiff derivative
  measured against central differences along random directions: the verdict and the one
  pair of numbers in the report (``worst``, ``actual_at_worst``, ``expected_at_worst``) come
  from the same comparison. A mode ``f`` does not support (forward mode of a
  ``jax.custom_vjp``) is skipped and named in ``detail``; the report fails if none applies.

  Args:
    f: function of positional float array arguments.
    args: tuple of arguments; cast to float64.
    order: highest derivative order checked (``check_grads``'s ``order``).
    modes: ``("fwd", "rev")`` or one of them (a name alone, ``"rev"``, is one mode).
    eps: finite-difference step.
    atol: absolute tolerance (default: float64 ``"finite_difference"``); the round-off of
      the differences, :func:`xentax.gradcheck.finite_difference_noise` of the largest
      ``|f|`` evaluated (times the cotangent's 1-norm for a VJP), is added to it.
    rtol: relative tolerance (same default).
    seed: seed of the random tangents and cotangents.
    name: label for the report.

  Returns:
    A :class:`GradReport` with reference ``"check_grads"``; ``worst`` names the check
    (e.g. ``['VJP of VJP']``).

  Raises:
    ValueError: ``f`` does not return float64 on float64 arguments, ``eps`` is not
      finite and > 0, or ``modes`` names anything but ``"fwd"`` and ``"rev"``.
    TypeError: ``eps`` not a real number, or ``f`` cannot take ``args`` (the message says
      how to close over its other arguments).

  Examples:
    >>> import jax.numpy as jnp
    >>> from xentax import gradcheck
    >>> gradcheck.check_grads_report(jnp.sin, (jnp.array([0.5, 1.0]),)).passed
    True
  """
  eps = check_step("check_grads_report", eps)
  _check_arity("check_grads_report", f, len(tuple(args)))
  tol = tolerance("float64", "finite_difference")
  atol = tol["atol"] if atol is None else atol
  rtol = tol["rtol"] if rtol is None else rtol
  modes = _check_modes(modes)
  rng = np.random.default_rng(seed)
  actual, expected = {}, {}
  scale = [0.0]  # max |g| times the direction's weight over every difference taken

  def rand_like(tree):
    return jax.tree_util.tree_map(
      lambda x: jnp.asarray(rng.standard_normal(np.shape(x)), jnp.float64), tree
    )

  def inner(xs, ys):
    pairs = zip(jax.tree_util.tree_leaves(xs), jax.tree_util.tree_leaves(ys), strict=True)
    return sum(jnp.vdot(x, y) for x, y in pairs)

  def numerical_jvp(g, xs, ts, weight=1.0):
    plus = g(*jax.tree_util.tree_map(lambda x, t: x + eps * t, xs, ts))
    minus = g(*jax.tree_util.tree_map(lambda x, t: x - eps * t, xs, ts))
    out = jax.tree_util.tree_map(lambda a, b: (a - b) / (2 * eps), plus, minus)
    leaves = [v for v in jax.tree_util.tree_leaves((plus, minus)) if jnp.size(v)]
    size = max((float(jnp.max(jnp.abs(v))) for v in leaves), default=0.0)
    scale[0] = max(scale[0], size * weight)
    for leaf in jax.tree_util.tree_leaves(out):
      if leaf.dtype != jnp.float64:
        raise ValueError(
          f"check_grads_report: f returned dtype {leaf.dtype} on float64 arguments; "
          "finite differences need f to compute in float64."
        )
    return out

  def record(label, a, e):
    actual[label] = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(a)])
    expected[label] = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(e)])

  def check(g, xs, depth, label):
    if "fwd" in modes:
      fwd = f"JVP of {label}" if label else "JVP"
      ts = rand_like(xs)
      record(fwd, jax.jvp(g, xs, ts)[1], numerical_jvp(g, xs, ts))
      if depth > 1:
        check(functools.partial(jax.jvp, g), (xs, xs), depth - 1, fwd)
    if "rev" in modes:
      rev = f"VJP of {label}" if label else "VJP"
      out, vjp_fn = jax.vjp(g, *xs)
      cts, ts = rand_like(out), rand_like(xs)
      # The projection on cts sums |cts| differences' round-off.
      weight = sum(float(jnp.sum(jnp.abs(c))) for c in jax.tree_util.tree_leaves(cts))
      record(rev, inner(vjp_fn(cts), ts), inner(numerical_jvp(g, xs, ts, weight), cts))
      if depth > 1:

        def g_vjp(*ys, g=g):
          out_primal, vjp_ys = jax.vjp(g, *ys)
          return vjp_ys(out_primal)

        check(g_vjp, xs, depth - 1, rev)

  with jax.enable_x64(True):
    args = tuple(_to_float64(tuple(args)))
    modes, skipped = _supported_modes(f, args, modes)
    if modes:
      check(f, args, order, "")
  if not modes:
    return GradReport(
      max_abs_error=0.0,
      max_rel_error=0.0,
      worst="-",
      actual_at_worst=0.0,
      expected_at_worst=0.0,
      dtype="float64",
      atol=atol,
      rtol=rtol,
      passed=False,
      name=name,
      reference="check_grads",
      detail="no mode applies: " + "; ".join(skipped),
    )
  # The differences' own round-off is added to atol, as for check_finite_differences.
  atol = atol + finite_difference_noise(scale[0], eps)
  report = compare(
    actual, expected, dtype="float64", reference="check_grads", atol=atol, rtol=rtol, name=name
  )
  return GradReport(**{**report.to_dict(), "detail": "; ".join(skipped)}) if skipped else report


def _check_modes(modes) -> tuple:
  """``modes`` as a tuple of ``"fwd"``/``"rev"`` (one name alone is accepted), else an error."""
  modes = (modes,) if isinstance(modes, str) else tuple(modes)
  unknown = [m for m in modes if m not in ("fwd", "rev")]
  if unknown or not modes:
    raise ValueError(
      f"check_grads_report: modes={modes!r} must name 'fwd', 'rev' or both, e.g. ('fwd', 'rev')."
    )
  return modes


def _supported_modes(f: Callable, args, modes):
  """``(modes f supports, what was skipped and why)``: forward mode of a ``custom_vjp``
  raises a ``TypeError`` naming it; any other error is the caller's to see."""
  supported, skipped = [], []
  for mode in modes:
    try:
      if mode == "fwd":
        jax.jvp(f, args, jax.tree_util.tree_map(jnp.zeros_like, args))
      supported.append(mode)
    except TypeError as err:
      if "custom_vjp" not in str(err):
        raise
      skipped.append("forward mode skipped: f supports reverse mode only (a jax.custom_vjp)")
  return tuple(supported), skipped
