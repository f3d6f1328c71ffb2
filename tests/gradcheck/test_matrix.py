"""The check matrix and the ``xentax gradcheck`` command."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from xentax import cli, gradcheck
from xentax.gradcheck import _matrix

pytestmark = pytest.mark.slow  # runs the full gradcheck matrix

KEYS = {"loss", "options", "dtype", "reference", "max_abs_error", "max_rel_error", "passed"}


def test_cases_cover_every_option_and_reduction():
  cases = _matrix.cases()
  for loss, names in _matrix.LOSS_OPTIONS.items():
    seen = {name for case_loss, case_names, _ in cases if case_loss == loss for name in case_names}
    assert seen == set(names)
    reductions = {r for case_loss, _, r in cases if case_loss == loss}
    assert reductions == {"none", "mean"}


def test_where_and_ignore_index_drop_examples():
  scores, labels, options = _matrix.make_inputs(
    "sparse_categorical_cross_entropy_with_logits", ("ignore_index", "where")
  )
  assert (labels == -100).sum() == 2 and (~options["where"]).sum() == 2


def test_cli_writes_records_and_exits_zero(tmp_path, capsys):
  path = tmp_path / "records.json"
  args = ["gradcheck", "--dtype", "float32", "--loss", "binary_cross_entropy_with_logits"]
  assert cli.main([*args, "--json", str(path)]) == 0
  records = json.loads(path.read_text())
  loss = "binary_cross_entropy_with_logits"
  options = [c for c in _matrix.option_cases() if c[0] == loss]
  assert len(records) == 2 * len([c for c in _matrix.cases() if c[0] == loss]) + len(options)
  wrt = {r["options"]["d/d"] for r in records if "d/d" in r["options"]}
  assert wrt == {"pos_weight", "weights", "label_smoothing", "sample_weight"}
  assert all(KEYS <= set(r) for r in records)
  assert {r["reference"] for r in records} == {"analytic", "finite_difference"}
  assert all(r["passed"] and r["dtype"] == "float32" for r in records)
  assert all(0 < r["max_rel_error"] < 1e-3 for r in records)
  out = capsys.readouterr().out
  assert "float32 analytic" in out and f"{len(records)} checks, {len(records)} passed" in out


def test_cli_exits_nonzero_when_a_gradient_is_wrong(monkeypatch, tmp_path, capsys):
  loss = "binary_cross_entropy_with_logits"
  right = gradcheck.LOSS_GRADS[loss]
  monkeypatch.setitem(gradcheck.LOSS_GRADS, loss, lambda *a, **k: -right(*a, **k))
  path = tmp_path / "records.json"
  code = cli.main(["gradcheck", "--dtype", "float64", "--loss", loss, "--json", str(path)])
  assert code == 1
  records = json.loads(path.read_text())
  analytic = [r for r in records if r["reference"] == "analytic"]
  assert analytic and not any(r["passed"] for r in analytic)
  # The finite differences do not use the closed form, so they still pass.
  assert all(r["passed"] for r in records if r["reference"] == "finite_difference")
  assert "FAIL" in capsys.readouterr().out


def test_models_and_unknown_names():
  records = gradcheck.run_matrix(("float64",), losses=["logistic_regression"])
  assert len(records) == 2 and all(r["passed"] for r in records)
  assert all(r["max_rel_error"] < 1e-6 for r in records)
  with pytest.raises(ValueError, match="unknown loss"):
    gradcheck.run_matrix(losses=["hinge"])
  with pytest.raises(ValueError, match="unknown dtype"):
    gradcheck.run_matrix(("float16",))


def test_retrieval_rows_cover_every_option_and_reduction_and_pass():
  import inspect

  from xentax import losses

  reductions = set()
  for loss, rows in _matrix.RETRIEVAL_ROWS.items():
    assert loss in _matrix.MODELS and loss in gradcheck.checked_names()
    params = inspect.signature(getattr(losses, loss)).parameters.values()
    options = {p.name for p in params if p.kind == p.KEYWORD_ONLY}
    not_rows = {"chunk_size", "axis_name", "reduction"}  # fixed, no option, the rows' own
    assert {n for names, _ in rows for n in names} == options - not_rows
    reductions |= {reduction for _, reduction in rows}
  assert reductions == {"mean", "sum_over_batch_size", "none"}
  records = gradcheck.run_matrix(("float64", "float32"), losses=list(_matrix.RETRIEVAL_ROWS))
  rows = sum(len(rows) for rows in _matrix.RETRIEVAL_ROWS.values())
  assert len(records) == 2 * 2 * rows  # float64 and float32, analytic and differences
  assert all(r["passed"] for r in records), [r for r in records if not r["passed"]]
  assert all(r["options"]["chunk_size"] == 2 for r in records)


def test_retrieval_rows_fail_for_a_wrong_closed_form(monkeypatch):
  import jax

  loss = "siglip_loss"
  names, reduction = _matrix.RETRIEVAL_ROWS[loss][0]
  inputs, right = _matrix._RETRIEVAL_GRADS[loss]

  def wrong(*args, **kwargs):
    return {**right(*args, **kwargs), "d_logit_bias": 0.0}

  monkeypatch.setitem(_matrix._RETRIEVAL_GRADS, loss, (inputs, wrong))
  with jax.enable_x64(True):
    analytic, numeric = _matrix.check_retrieval_case(loss, names, reduction, jnp.float64)
  assert not analytic.passed and numeric.passed


def test_format_table_marks_failures():
  record = {
    "loss": "x",
    "options": {"reduction": "mean"},
    "dtype": "float64",
    "reference": "analytic",
    "max_abs_error": 1.0,
    "max_rel_error": np.float64(0.5),
    "passed": False,
  }
  assert "5.0e-01 FAIL" in gradcheck.format_table([record])
  assert "1 checks, 0 passed, 1 failed" in gradcheck.format_summary([record])


def test_option_gradients_cover_every_float_option_of_every_loss():
  covered = set(_matrix.option_cases())
  for loss, names in _matrix.LOSS_OPTIONS.items():
    for name in set(names) & set(_matrix.FLOAT_OPTIONS):
      assert (loss, name) in covered
  assert {n for loss, n in covered if loss == _matrix.FUSED} == {
    "class_weights",
    "label_smoothing",
    "z_loss",
    "softcap",
    "sample_weight",
  }


def test_option_gradient_check_fails_for_a_wrong_gradient(monkeypatch):
  # A custom_vjp that drops the option's cotangent (the fused loss's old bug) must fail.
  import jax
  import jax.numpy as jnp

  from xentax import losses

  real = losses.sparse_categorical_cross_entropy_with_logits

  def frozen(s, y, *, label_smoothing=0.0, **kw):
    return real(s, y, label_smoothing=jax.lax.stop_gradient(label_smoothing), **kw)

  monkeypatch.setattr(losses, "sparse_categorical_cross_entropy_with_logits", frozen)
  with jax.enable_x64(True):
    (report,) = _matrix.check_option_case(
      "sparse_categorical_cross_entropy_with_logits", "label_smoothing", jnp.dtype("float64")
    )
  assert not report.passed


@pytest.mark.parametrize(
  ("loss", "option"),
  [
    ("kl_divergence_with_logits", "temperature"),
    ("jensen_shannon_divergence_with_logits", "beta"),
    ("jensen_shannon_divergence_with_logits", "temperature"),
    ("poly1_cross_entropy_with_logits", "epsilon"),
  ],
)
def test_option_gradients_of_the_divergences_and_poly1_are_in_the_matrix(loss, option):
  assert (loss, option) in _matrix.option_cases()
  for dtype in (jnp.float64, jnp.float32):
    (report,) = _matrix.check_option_case(loss, option, dtype)
    assert report.passed, report
    assert report.max_abs_error < 1e-4


@pytest.mark.parametrize(
  ("loss", "option"),
  [
    ("categorical_cross_entropy_with_logits", "z_loss"),
    ("categorical_cross_entropy_with_logits", "softcap"),
    ("categorical_cross_entropy_with_logits", "sample_weight"),
    ("categorical_cross_entropy", "sample_weight"),
    ("categorical_focal_loss_with_logits", "gamma"),
    ("categorical_focal_loss_with_logits", "alpha"),
    ("categorical_focal_loss_with_logits", "sample_weight"),
  ],
)
def test_option_gradients_of_the_dense_losses_are_in_the_matrix(loss, option):
  assert (loss, option) in _matrix.option_cases()
  for dtype in (jnp.float64, jnp.float32):
    (report,) = _matrix.check_option_case(loss, option, dtype)
    assert report.passed, report


@pytest.mark.parametrize(
  ("loss", "option"),
  [
    ("sparse_categorical_cross_entropy_with_logits", "softcap"),
    ("sparse_categorical_cross_entropy_with_logits", "sample_weight"),
    ("sparse_categorical_cross_entropy", "sample_weight"),
    ("sparse_categorical_focal_loss_with_logits", "softcap"),
    ("sparse_categorical_focal_loss_with_logits", "label_smoothing"),
    ("sparse_categorical_focal_loss_with_logits", "sample_weight"),
    ("fused_linear_cross_entropy", "sample_weight"),
  ],
)
def test_option_gradients_of_sample_weight_and_softcap_are_in_the_matrix(loss, option):
  assert (loss, option) in _matrix.option_cases()
  for dtype in (jnp.float64, jnp.float32):
    (report,) = _matrix.check_option_case(loss, option, dtype)
    assert report.passed, report


@pytest.mark.parametrize(
  # binary_cross_entropy_with_logits: test_cli_writes_records_and_exits_zero runs its rows.
  "loss",
  ["binary_cross_entropy", "binary_focal_loss_with_logits"],
)
def test_binary_rows_with_label_smoothing_and_sample_weight_pass(loss):
  names = _matrix.LOSS_OPTIONS[loss]
  assert {"label_smoothing", "sample_weight"} <= set(names)
  assert (loss, "sample_weight") in _matrix.option_cases()
  records = _matrix.run_matrix(("float64", "float32"), losses=[loss])
  failed = [r for r in records if not r["passed"]]
  assert not failed, failed
  by_option = {r["options"].get("d/d") for r in records}
  assert {"label_smoothing", "sample_weight"} <= by_option
