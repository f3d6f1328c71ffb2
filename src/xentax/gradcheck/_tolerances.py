"""Gradient-check tolerances, by dtype and by kind of reference, in one place.

Design notes:
  A check passes when every entry satisfies ``|actual - expected| <= atol + rtol |expected|``
  (NumPy's ``allclose``). The reference (closed form or central differences) is always
  computed in float64 at the *same* inputs as the gradient under test (rounded to the tested
  dtype first), so the tolerance only has to cover the error of the gradient under test plus
  the error of the reference itself:

  * **float64, analytic**: autodiff and the closed form evaluate the same formula in a
    different order; both are within a few ulps (unit roundoff 1.1e-16) of the exact value,
    amplified by at most O(C) in sums over classes. ``rtol=1e-10`` leaves a factor of about
    1e4 of headroom, and still fails any real mistake (a dropped ``1/n`` is a relative error
    of at least 1/n).
  * **float64, finite differences**: a central difference with step ``h`` has truncation
    error ``h^2 |f'''| / 6`` and round-off error about ``u |f| / h`` (``u`` the unit
    roundoff); the sum is smallest near ``h = u^(1/3)`` (6e-6 for float64), where it is about
    ``u^(2/3)``, 2e-11 for O(1) derivatives. :data:`FD_STEP` is 1e-6 (truncation 2e-13,
    round-off 1e-10 for ``|f| = 1``); ``rtol=1e-7, atol=1e-9`` leave two orders of
    magnitude above that. The round-off grows with ``|f|`` (a ``"sum"`` over 30 entries
    is 30 times larger than its mean), so every finite-difference comparison adds
    :func:`finite_difference_noise` ``= 4 eps_64 max|f| / h`` (``eps_64 = 2.2e-16``) to
    ``atol``: the reference's own error bound, not slack for the gradient under test.
    The report's step-size figure shows the V-shaped error curve.
  * **float32**: the losses compute in float32 (unit roundoff 6e-8). A gradient entry is
    ``softmax(z) - y`` and a few more terms (``lse``, ``(1 - p)^gamma``, ``log p``), each with
    a few ulps of error relative to the *largest* term, so small entries see a relative error
    of order ``u max|g| / |g|``: ``rtol=1e-5`` (about 170 ulps) plus ``atol=1e-6`` for the
    entries that sit near zero through cancellation. The float64 reference adds nothing.
  * **bfloat16**: the losses upcast bfloat16 inputs to float32, so the only bfloat16
    rounding is the final cast of the gradient (8 significant bits, unit roundoff 2^-8 =
    3.9e-3). ``rtol=1e-2`` covers that with a factor of 2.5; ``atol=1e-5`` covers the float32
    cancellation near zero, plus one bfloat16 rounding of such small entries.
"""

from __future__ import annotations

import math

import numpy as np

#: Step of the float64 central differences (see the module notes for the choice).
FD_STEP = 1e-6

REFERENCES = ("analytic", "finite_difference")
DTYPES = ("float64", "float32", "bfloat16")

TOLERANCES: dict[tuple[str, str], dict[str, float]] = {
  ("float64", "analytic"): {"atol": 1e-12, "rtol": 1e-10},
  ("float64", "finite_difference"): {"atol": 1e-9, "rtol": 1e-7},
  ("float32", "analytic"): {"atol": 1e-6, "rtol": 1e-5},
  ("float32", "finite_difference"): {"atol": 1e-6, "rtol": 1e-5},
  ("bfloat16", "analytic"): {"atol": 1e-5, "rtol": 1e-2},
  ("bfloat16", "finite_difference"): {"atol": 1e-5, "rtol": 1e-2},
}


def check_step(fn_name: str, eps) -> float:
  """The finite-difference step ``eps`` as a float, or an error naming ``fn_name``.

  Raises:
    TypeError: ``eps`` is not a real number (a string, a boolean, an array).
    ValueError: ``eps`` is 0, negative, infinite or NaN: the differences divide by
      ``2 eps``, so such a step gives NaN or infinite derivatives, or none at all.
  """
  kind = "b" if isinstance(eps, bool) else np.asarray(eps).dtype.kind
  if np.ndim(eps) != 0 or kind not in "iuf":
    raise TypeError(
      f"{fn_name}: eps={eps!r} must be a real number, the finite-difference step, got "
      f"{type(eps).__name__}; pass a float such as eps={FD_STEP} (the default, FD_STEP)."
    )
  step = float(eps)
  if not (math.isfinite(step) and step > 0):
    raise ValueError(
      f"{fn_name}: eps={step!r} is not a usable finite-difference step; it must be finite "
      f"and > 0 (the differences divide by 2 * eps). Pass a small positive step such as "
      f"eps={FD_STEP} (the default, FD_STEP, near the float64 optimum)."
    )
  return step


def finite_difference_noise(scale: float, eps: float = FD_STEP) -> float:
  """Round-off bound of a float64 central difference of a function of size ``scale``.

  ``f(x + h) - f(x - h)`` loses about ``eps_64 |f|`` to rounding in each evaluation, so the
  difference quotient carries an error of about ``eps_64 |f| / h``; the factor 4 covers
  both evaluations and the rounding inside ``f``.

  Raises:
    ValueError: ``eps`` is not finite and > 0 (TypeError: not a real number).

  Examples:
    >>> from xentax import gradcheck
    >>> f"{gradcheck.finite_difference_noise(1.0):.1e}"  # 4 * 2.2e-16 * 1 / 1e-6
    '8.9e-10'
  """
  eps = check_step("finite_difference_noise", eps)
  return 4 * float(np.finfo(np.float64).eps) * scale / eps


def dtype_name(dtype) -> str:
  """``"float64"``, ``"float32"`` or ``"bfloat16"`` for a dtype, dtype name or array."""
  if not isinstance(dtype, str | type | np.dtype) and hasattr(dtype, "dtype"):
    dtype = dtype.dtype  # an array
  import jax.numpy as jnp  # deferred: keep ``import xentax`` cheap

  return np.dtype(jnp.dtype(dtype)).name


def tolerance(dtype, reference: str = "analytic") -> dict[str, float]:
  """The ``{"atol": ..., "rtol": ...}`` for a gradient of ``dtype`` against ``reference``.

  Args:
    dtype: the dtype of the gradient under test (float64, float32 or bfloat16; float16 uses
      the bfloat16 row, which is looser).
    reference: ``"analytic"`` (a closed form) or ``"finite_difference"``.

  Returns:
    A new dict (changing it leaves :data:`TOLERANCES` as it is).

  Raises:
    ValueError: another dtype or reference.

  Examples:
    >>> from xentax import gradcheck
    >>> gradcheck.tolerance("float32")
    {'atol': 1e-06, 'rtol': 1e-05}
  """
  name = dtype_name(dtype)
  if name == "float16":
    name = "bfloat16"
  if (name, reference) not in TOLERANCES:
    raise ValueError(
      f"tolerance: no gradient tolerance for dtype={name!r}, reference={reference!r}; "
      f"dtypes are {DTYPES} and references {REFERENCES}."
    )
  return dict(TOLERANCES[(name, reference)])
