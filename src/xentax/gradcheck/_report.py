"""``GradReport``: how far a gradient is from its reference, and whether that is close enough.

Design notes:
  * Library code returns reports and never asserts; tests (and the ``xentax gradcheck``
    command) decide what to do with ``report.passed``.
  * Errors are computed in float64 after converting both sides, so a bfloat16 gradient is
    compared exactly as it is.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from xentax.gradcheck._tolerances import dtype_name, tolerance


@dataclasses.dataclass(frozen=True)
class GradReport:
  """The result of comparing a gradient with a reference.

  Attributes:
    max_abs_error: ``max |actual - expected|`` over every entry of every leaf.
    max_rel_error: ``max |actual - expected| / |expected|`` over the entries with a nonzero
      expected value (entries expected to be exactly 0 are judged by ``atol`` alone).
    worst: where the entry closest to failing sits (the largest
      ``|actual - expected| / (atol + rtol |expected|)``), e.g. ``"[0][3, 1]"``.
    actual_at_worst: the gradient under test at ``worst``.
    expected_at_worst: the reference at ``worst``.
    dtype: dtype of the gradient under test.
    atol: absolute tolerance used.
    rtol: relative tolerance used.
    passed: every entry satisfies ``|actual - expected| <= atol + rtol |expected|``, and
      neither side has a NaN where the other has a number.
    name: what was checked (free text).
    reference: what it was checked against (``"analytic"``, ``"finite_difference"``, ...).
    size: number of entries compared.
    detail: extra information, e.g. a mode :func:`check_grads_report` skipped.
  """

  max_abs_error: float
  max_rel_error: float
  worst: str
  actual_at_worst: float
  expected_at_worst: float
  dtype: str
  atol: float
  rtol: float
  passed: bool
  name: str = ""
  reference: str = ""
  size: int = 0
  detail: str = ""

  def __str__(self) -> str:
    verdict = "PASS" if self.passed else "FAIL"
    what = self.name or "gradient"
    if self.reference:
      what += f" vs {self.reference}"
    text = (
      f"{verdict} {what} [{self.dtype}, {self.size} entries]: "
      f"max abs error {self.max_abs_error:.2e}, max rel error {self.max_rel_error:.2e}; "
      f"worst at {self.worst or '()'}: {self.actual_at_worst:.6g} vs "
      f"{self.expected_at_worst:.6g} (atol {self.atol:.0e}, rtol {self.rtol:.0e})"
    )
    if self.detail:
      text += f"\n  {self.detail}"
    return text

  def to_dict(self) -> dict:
    """The report as a JSON-ready dict."""
    return dataclasses.asdict(self)


def compare(
  actual,
  expected,
  *,
  dtype=None,
  reference: str = "analytic",
  atol: float | None = None,
  rtol: float | None = None,
  name: str = "",
  detail: str = "",
) -> GradReport:
  """Compare two gradients (any matching pytrees of arrays) entry by entry.

  Args:
    actual: the gradient under test, e.g. ``jax.grad(loss)(params)``.
    expected: the reference, same tree structure and shapes (any float dtype).
    dtype: dtype that selects the tolerance; defaults to the dtype of ``actual``'s first leaf.
    reference: kind of reference, selects the tolerance (``"analytic"`` or
      ``"finite_difference"``) and is recorded in the report.
    atol: absolute tolerance; default from :func:`xentax.gradcheck.tolerance`.
    rtol: relative tolerance; default from :func:`xentax.gradcheck.tolerance`.
    name: label recorded in the report.
    detail: extra text recorded in the report.

  Returns:
    A :class:`GradReport`.

  Raises:
    ValueError: the trees or the shapes differ.

  Examples:
    >>> import numpy as np
    >>> from xentax import gradcheck
    >>> gradcheck.compare(np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-14])).passed
    True
  """
  import jax  # deferred: keep ``import xentax`` cheap

  actual_leaves, actual_tree = jax.tree_util.tree_flatten_with_path(actual)
  expected_leaves, expected_tree = jax.tree_util.tree_flatten_with_path(expected)
  if actual_tree != expected_tree:  # type: ignore[operator]  # PyTreeDef defines __ne__
    raise ValueError(
      f"compare: actual has tree structure {actual_tree} but expected has {expected_tree}; "
      "pass gradients with the same structure (e.g. both (dW, db))."
    )
  if dtype is None:
    dtype = actual_leaves[0][1].dtype if actual_leaves else np.float64
  dtype = dtype_name(dtype)
  tol = tolerance(dtype, reference) if reference in ("analytic", "finite_difference") else {}
  atol = tol.get("atol", 0.0) if atol is None else atol
  rtol = tol.get("rtol", 0.0) if rtol is None else rtol

  max_abs = max_rel = 0.0
  worst, worst_score, at_actual, at_expected = "", -1.0, math.nan, math.nan
  passed, size = True, 0
  for (path, a), (_, e) in zip(actual_leaves, expected_leaves, strict=True):
    a = np.asarray(a, dtype=np.float64)
    e = np.asarray(e, dtype=np.float64)
    key = jax.tree_util.keystr(path)
    if a.shape != e.shape:
      raise ValueError(
        f"compare: leaf {key or '()'} has shape {a.shape} in actual but {e.shape} in "
        "expected; they must be equal."
      )
    size += a.size
    if a.size == 0:
      continue
    nan_mismatch = np.isnan(a) != np.isnan(e)
    # NaN matches NaN and an infinity only itself; an infinite reference adds no rtol slack.
    matched = (np.isnan(a) & np.isnan(e)) | (np.isinf(e) & (a == e))
    with np.errstate(invalid="ignore", divide="ignore"):
      err = np.where(matched, 0.0, np.abs(a - e))
      err = np.where(nan_mismatch | np.isnan(err), np.inf, err)
      finite_e = np.where(np.isinf(e), 0.0, np.abs(e))
      rel = np.where(finite_e != 0, err / finite_e, np.where(err == 0, 0.0, np.inf))
      bound = atol + rtol * finite_e
      score = err / bound
    score = np.where(np.isnan(score), np.where(err == 0, 0.0, np.inf), score)
    passed = passed and bool(np.all(err <= bound))
    max_abs = max(max_abs, float(np.max(err)))
    nonzero = e != 0
    if nonzero.any():
      max_rel = max(max_rel, float(np.max(rel[nonzero])))
    flat = int(np.argmax(score))
    if float(score.flat[flat]) > worst_score:
      worst_score = float(score.flat[flat])
      index = np.unravel_index(flat, a.shape)
      worst = key + (f"[{', '.join(str(int(i)) for i in index)}]" if a.ndim else "")
      at_actual, at_expected = float(a.flat[flat]), float(e.flat[flat])
  return GradReport(
    max_abs_error=max_abs,
    max_rel_error=max_rel,
    worst=worst,
    actual_at_worst=at_actual,
    expected_at_worst=at_expected,
    dtype=dtype,
    atol=float(atol),
    rtol=float(rtol),
    passed=passed,
    name=name,
    reference=reference,
    size=size,
    detail=detail,
  )
