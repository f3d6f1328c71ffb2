"""The typed record of one gradient check, and the matrix run with progress.

Design notes:
  * :func:`xentax.gradcheck.run_matrix` returns one dict per check (its table and summary
    formatters read those); :func:`check_matrix` runs the same matrix loss by loss, shows
    a progress bar, and returns :class:`GradCheckRecord` objects, which the report renders
    and :mod:`xentax.records` writes as JSON.
  * Keys this class does not know (a newer matrix's) land in ``extra`` instead of failing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

from xentax.progress import progress_bar


@dataclasses.dataclass
class GradCheckRecord:
  """One gradient check: a loss with options, in a dtype, against one reference.

  Attributes:
    loss: the loss (or the model ``"softmax_regression"`` / ``"logistic_regression"``).
    options: its options (``"array"`` marks a random array).
    dtype: the dtype of the gradient under test.
    reference: ``"analytic"`` (closed form) or ``"finite_difference"`` (float64).
    max_abs_error, max_rel_error: entrywise worst errors.
    passed: every entry within ``atol + rtol |expected|``.
    atol, rtol: the tolerance used (:func:`xentax.gradcheck.tolerance`).
    worst: where the worst entry sits.
    size: number of gradient entries.
    extra: any further keys of the matrix's row.
  """

  loss: str
  options: dict[str, Any]
  dtype: str
  reference: str
  max_abs_error: float
  max_rel_error: float
  passed: bool
  atol: float
  rtol: float
  worst: Any = None
  size: int | None = None
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)

  @classmethod
  def from_dict(cls, row: dict[str, Any]) -> GradCheckRecord:
    """A record from one of :func:`run_matrix`'s dicts."""
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    known = {k: v for k, v in row.items() if k in names}
    return cls(**known, extra={k: v for k, v in row.items() if k not in names})

  def as_dict(self) -> dict[str, Any]:
    """The matrix's dict form (what :func:`format_table` and :func:`format_summary` read)."""
    row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
    return {**row, **self.extra}


def checked_names() -> tuple[str, ...]:
  """The names :func:`run_matrix` accepts in ``losses`` (the losses, then the models).

  Examples:
    >>> from xentax import gradcheck
    >>> "softmax_regression" in gradcheck.checked_names()
    True
  """
  from xentax.gradcheck import _matrix

  return (*_matrix.LOSS_OPTIONS, *_matrix.MODELS)


def check_matrix(
  dtypes: Iterable[str] = ("float64", "float32", "bfloat16"),
  *,
  losses: Iterable[str] | None = None,
  progress: bool = False,
) -> list[GradCheckRecord]:
  """:func:`run_matrix`, one loss at a time (with a ``rich`` bar if ``progress``).

  Returns:
    One :class:`GradCheckRecord` per check, in the matrix's order.

  Raises:
    ValueError: an unknown dtype or loss (before any check runs).

  Examples:
    >>> from xentax import gradcheck
    >>> records = gradcheck.check_matrix(["float64"], losses=["logistic_regression"])
    >>> [(r.loss, r.reference, r.passed) for r in records]
    [('logistic_regression', 'analytic', True), ('logistic_regression', 'finite_difference', True)]
  """
  from xentax.gradcheck._matrix import run_matrix

  dtypes = tuple(dtypes)
  names = list(checked_names() if losses is None else losses)
  run_matrix(dtypes, losses=[])  # validates the dtypes without running a check
  unknown = [name for name in names if name not in checked_names()]
  if unknown:
    raise ValueError(
      f"unknown loss(es) {', '.join(unknown)}; choose from {', '.join(checked_names())}"
    )
  out: list[GradCheckRecord] = []
  with progress_bar(len(names), enabled=progress, label="gradcheck", unit="losses") as bar:
    for name in names:
      bar.update_text(name)
      out += [GradCheckRecord.from_dict(row) for row in run_matrix(dtypes, losses=[name])]
      bar.advance(1)
  return out
