"""Test tolerances by dtype and kind of comparison, from the library's one table.

"value" compares a loss with the float64 NumPy reference; "grad" compares gradients and is
the library's own gradient tolerance (:func:`xentax.gradcheck.tolerance`, "analytic"), so
the tests and ``xentax gradcheck`` hold gradients to the same bound. float32 losses
accumulate O(C) rounding in the log-sum-exp, hence 2e-5 relative; bfloat16 inputs are
upcast inside, so only the rounding of the inputs themselves (8 bits of mantissa, ~4e-3)
remains.
"""

import numpy as np

from xentax.gradcheck import TOLERANCES as GRAD_TOLERANCES

VALUE_TOLERANCES = {
  "float64": dict(rtol=1e-12, atol=1e-12),
  "float32": dict(rtol=2e-5, atol=2e-6),
  "bfloat16": dict(rtol=2e-2, atol=1e-2),
}

TOLERANCES = {
  **{(dtype, "value"): tol for dtype, tol in VALUE_TOLERANCES.items()},
  **{
    (dtype, "grad"): dict(GRAD_TOLERANCES[(dtype, "analytic")])
    for dtype in ("float64", "float32", "bfloat16")
  },
}


def tol(dtype, kind="value"):
  return TOLERANCES[(np.dtype(dtype).name, kind)]
