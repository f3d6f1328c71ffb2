"""GradCheckRecord and check_matrix: the matrix as typed records, loss by loss."""

import pytest

from xentax import gradcheck


@pytest.mark.slow  # runs part of the gradcheck matrix twice
def test_check_matrix_gives_the_same_checks_as_run_matrix():
  names = ["binary_cross_entropy", "logistic_regression"]
  checks = gradcheck.check_matrix(("float64",), losses=names)
  rows = gradcheck.run_matrix(("float64",), losses=names)
  assert [c.as_dict() for c in checks] == rows
  assert all(isinstance(c, gradcheck.GradCheckRecord) and c.passed for c in checks)
  assert {c.loss for c in checks} == set(names)


def test_unknown_names_are_refused_before_any_check():
  with pytest.raises(ValueError, match="unknown loss\\(es\\) hinge; choose from"):
    gradcheck.check_matrix(("float64",), losses=["hinge"])
  with pytest.raises(ValueError, match="unknown dtype"):
    gradcheck.check_matrix(("float16",), losses=["binary_cross_entropy"])


def test_new_keys_of_a_matrix_row_are_kept_in_extra():
  row = {
    "loss": "l",
    "options": {},
    "dtype": "float64",
    "reference": "analytic",
    "max_abs_error": 0.0,
    "max_rel_error": 0.0,
    "passed": True,
    "atol": 1e-12,
    "rtol": 1e-10,
    "wrt": "label_smoothing",
  }
  record = gradcheck.GradCheckRecord.from_dict(row)
  assert record.extra == {"wrt": "label_smoothing"}
  assert record.as_dict() == {**row, "worst": None, "size": None}
