"""Test tolerances, in one place, by dtype and by kind of comparison.

"value" compares a loss with the float64 NumPy reference; "grad" compares gradients.
float32 losses accumulate O(C) rounding in the log-sum-exp, hence 1e-5 relative;
bfloat16 inputs are upcast inside, so only the rounding of the inputs themselves
(8 bits of mantissa, ~4e-3) remains.
"""

import numpy as np

TOLERANCES = {
  ("float64", "value"): dict(rtol=1e-12, atol=1e-12),
  ("float64", "grad"): dict(rtol=1e-10, atol=1e-12),
  ("float32", "value"): dict(rtol=2e-5, atol=2e-6),
  ("float32", "grad"): dict(rtol=1e-4, atol=1e-6),
  ("bfloat16", "value"): dict(rtol=2e-2, atol=1e-2),
}


def tol(dtype, kind="value"):
  return TOLERANCES[(np.dtype(dtype).name, kind)]
