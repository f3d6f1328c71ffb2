"""The finite-difference step-size study: a V with its bottom far below both ends."""

import numpy as np
import pytest

from xentax import experiments, gradcheck

pytestmark = pytest.mark.slow  # runs the step-size experiment


def test_step_size_errors_form_a_v_with_central_below_forward():
  study = experiments.step_size_errors()
  assert study.chosen_step == gradcheck.FD_STEP and len(study.steps) == 40
  for name, bottom in [("float64", 1e-9), ("float32", 1e-3)]:
    central = np.asarray(study.errors[name]["central"])
    best = int(np.argmin(central))
    assert central[best] < bottom
    assert central[0] > 100 * central[best] and central[-1] > 100 * central[best]
    # Central differences beat forward differences at their own best step.
    assert central[best] < np.min(study.errors[name]["forward"])
    assert study.best(name) == (study.steps[best], float(central[best]))
  assert study.best("float64")[0] < 1e-3
