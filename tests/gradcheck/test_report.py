"""``GradReport`` and ``compare``: the checker can fail, and says where."""

import numpy as np
import pytest

from xentax import gradcheck


def _softmax_regression_problem(seed=0):
  rng = np.random.default_rng(seed)
  X = rng.normal(size=(8, 3))
  W = rng.normal(size=(3, 4))
  b = rng.normal(size=4)
  y = rng.integers(0, 4, 8)
  return X, W, b, y


def _by_hand(X, W, b, y, *, scale, sign):
  z = X @ W + b
  p = np.exp(z - z.max(axis=1, keepdims=True))
  p /= p.sum(axis=1, keepdims=True)
  residual = sign * (p - np.eye(W.shape[1])[y])
  return X.T @ residual * scale, residual.sum(axis=0) * scale


def test_correct_gradient_passes():
  X, W, b, y = _softmax_regression_problem()
  report = gradcheck.compare(
    _by_hand(X, W, b, y, scale=1 / len(y), sign=1), gradcheck.softmax_regression_grad(X, W, b, y)
  )
  assert report.passed
  assert report.max_rel_error < 1e-12
  assert str(report).startswith("PASS")


@pytest.mark.parametrize("scale, sign", [(1.0, 1), (1 / 8, -1)], ids=["dropped 1/n", "sign"])
def test_wrong_gradient_fails(scale, sign):
  X, W, b, y = _softmax_regression_problem()
  report = gradcheck.compare(
    _by_hand(X, W, b, y, scale=scale, sign=sign),
    gradcheck.softmax_regression_grad(X, W, b, y),
    name="softmax regression",
  )
  assert not report.passed
  assert report.max_rel_error == pytest.approx(7.0 if scale == 1 else 2.0)
  assert str(report).startswith("FAIL softmax regression vs analytic [float64, 16 entries]")


def test_worst_entry_is_located():
  expected = {"w": np.zeros((2, 3)), "b": np.ones(2)}
  actual = {"w": np.zeros((2, 3)), "b": np.ones(2)}
  actual["w"][1, 2] = 1e-3
  report = gradcheck.compare(actual, expected)
  assert not report.passed
  assert report.worst == "['w'][1, 2]"
  assert report.max_abs_error == pytest.approx(1e-3)
  assert report.actual_at_worst == pytest.approx(1e-3)
  assert report.expected_at_worst == 0.0
  assert report.max_rel_error == 0.0  # the only error sits where 0 was expected


def test_nan_where_a_number_is_expected_fails():
  report = gradcheck.compare(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
  assert not report.passed and report.max_abs_error == np.inf


def test_tolerance_follows_the_dtype():
  expected = np.array([1.0, -2.0, 0.5])
  off = expected * (1 + 3e-6)  # 50 float32 ulps: fine in float32, wrong in float64
  assert gradcheck.compare(off.astype(np.float32), expected).passed
  assert not gradcheck.compare(off, expected).passed
  assert gradcheck.compare(off.astype(np.float32), expected).rtol == 1e-5


def test_mismatched_trees_are_a_clear_error():
  with pytest.raises(ValueError, match="tree structure"):
    gradcheck.compare((np.ones(2), np.ones(2)), [np.ones(2)])
  with pytest.raises(ValueError, match=r"shape \(2,\) in actual but \(3,\)"):
    gradcheck.compare(np.ones(2), np.ones(3))


def test_to_dict_is_json_ready():
  import json

  report = gradcheck.compare(np.ones(2), np.ones(2), name="x")
  assert json.loads(json.dumps(report.to_dict()))["passed"] is True


def test_an_infinite_reference_is_matched_only_by_itself():
  assert not gradcheck.compare(np.array([1.0, 2.0]), np.array([np.inf, 2.0])).passed
  assert not gradcheck.compare(np.array([-np.inf]), np.array([np.inf])).passed
  assert not gradcheck.compare(np.array([np.inf]), np.array([1.0])).passed
  assert gradcheck.compare(
    np.array([np.inf, -np.inf, 1.0]), np.array([np.inf, -np.inf, 1.0])
  ).passed
