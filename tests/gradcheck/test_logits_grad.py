"""Closed-form loss gradients against ``jax.grad`` and against differences of the NumPy references.

Covers ``_softmax_grads``, ``_binary_grads`` and the ``logits_grad`` dispatcher.
"""

import jax
import numpy as np
import pytest

import xentax
from tests import _reference
from xentax import gradcheck
from xentax.gradcheck import _matrix

pytestmark = pytest.mark.slow  # closed forms against autodiff for every loss x option

LOSSES = list(_matrix.LOSS_OPTIONS)


def _cases():
  for loss, names in _matrix.LOSS_OPTIONS.items():
    combined = tuple(name for name in names if name != "axis")
    yield loss, (), "mean"
    if "axis" in names:
      yield loss, ("axis",), "mean"
    for reduction in ("mean", "sum", "none"):
      yield loss, combined, reduction


CASES = list(_cases())


def _numpy_central_differences(f, x, h=1e-6):
  g = np.zeros_like(x)
  for i in np.ndindex(*x.shape):
    e = np.zeros_like(x)
    e[i] = h
    g[i] = (f(x + e) - f(x - e)) / (2 * h)
  return g


@pytest.mark.parametrize("loss, names, reduction", CASES)
def test_closed_form_matches_autodiff_in_float64(loss, names, reduction):
  scores, labels, options = _matrix.make_inputs(loss, names, seed=3)
  fn = _matrix._loss_fn(loss)  # distillation_loss: the teacher's logits as a keyword

  def f(s):
    out = fn(s, labels, **options, reduction=reduction)
    return out.sum() if reduction == "none" else out

  auto = jax.grad(f)(scores)
  closed = gradcheck.logits_grad(loss, scores, labels, **options, reduction=reduction)
  report = gradcheck.compare(auto, closed, reference="analytic", name=loss)
  assert report.passed, str(report)
  assert report.max_rel_error < 1e-10, str(report)
  assert closed.dtype == np.float64


@pytest.mark.parametrize("loss, names, reduction", CASES)
def test_closed_form_matches_differences_of_the_numpy_reference(loss, names, reduction):
  """Independent of xentax's losses: the NumPy reference, differenced in NumPy."""
  scores, labels, options = _matrix.make_inputs(loss, names, seed=4)
  reference = getattr(_reference, loss)
  rest = {k: v for k, v in options.items() if k != "teacher_logits"}
  teacher = () if "teacher_logits" not in options else (options["teacher_logits"],)

  def f(s):
    return np.sum(reference(s, *teacher, labels, **rest, reduction=reduction))

  closed = gradcheck.logits_grad(loss, scores, labels, **options, reduction=reduction)
  numeric = _numpy_central_differences(f, scores)
  np.testing.assert_allclose(np.asarray(closed), numeric, rtol=1e-6, atol=1e-7)


def test_no_options_is_the_decks_y_pred_minus_y():
  logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
  labels = np.array([0, 2])
  p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  expected = (p - np.eye(3)[labels]) / 2
  closed = gradcheck.logits_grad("sparse_categorical_cross_entropy_with_logits", logits, labels)
  np.testing.assert_allclose(closed, expected, rtol=1e-14)


def test_mean_with_nothing_kept_is_zero():
  closed = gradcheck.logits_grad(
    "sparse_categorical_cross_entropy_with_logits",
    np.ones((2, 3)),
    np.array([-100, -100]),
    ignore_index=-100,
  )
  assert np.all(np.asarray(closed) == 0)


def test_unknown_loss_and_reduction_are_clear_errors():
  with pytest.raises(ValueError, match="no closed-form gradient for loss 'hinge'"):
    gradcheck.logits_grad("hinge", np.ones((2, 3)), np.array([0, 1]))
  with pytest.raises(ValueError, match="reduction='avg'"):
    gradcheck.logits_grad(
      "binary_cross_entropy_with_logits", np.ones(3), np.ones(3), reduction="avg"
    )


def test_every_loss_has_a_closed_form():
  # The fused loss is a loss of (hidden, weight, bias), not of logits: its closed form is
  # gradcheck.fused_linear_cross_entropy_grad, checked in the matrix as a model.
  # distillation_loss's closed form takes the teacher's logits as a keyword;
  # fused_linear_distillation is checked against it in its own tests; the class-weight
  # helpers are not losses. The sampled and adaptive softmax, losses of (hidden, weights),
  # and the retrieval losses, of two embeddings, are models too.
  retrieval = ("in_batch_softmax_cross_entropy", "clip_loss", "siglip_loss")
  not_logits_losses = (
    *retrieval,
    "adaptive_log_softmax",
    "adaptive_softmax_cross_entropy",
    "checked",
    "fused_linear_cross_entropy",
    "sampled_softmax_cross_entropy",
    "fused_linear_distillation",
    "effective_number_class_weights",
    "inverse_frequency_class_weights",
  )
  assert sorted(gradcheck.LOSS_GRADS) == sorted(
    name for name in xentax.losses.__all__ if name not in not_logits_losses
  )
  assert "fused_linear_cross_entropy" in gradcheck._matrix.MODELS
  assert "sampled_softmax_cross_entropy" in gradcheck._matrix.MODELS
  assert "adaptive_softmax_cross_entropy" in gradcheck._matrix.MODELS
  assert set(retrieval) <= set(gradcheck._matrix.MODELS)


@pytest.mark.parametrize(
  ("loss", "scores", "labels", "options", "match"),
  [
    (
      "sparse_categorical_cross_entropy_with_logits",
      np.zeros((2, 3)),
      np.array([7, 0]),
      {},
      r"labels must lie in \[0, 3\); found 7",
    ),
    (
      "sparse_categorical_cross_entropy",
      np.full((2, 3), 0.3),
      np.array([0, 1]),
      {"class_weights": np.array([1.0, -1.0, 1.0])},
      "class_weights must be finite and >= 0",
    ),
    (
      "sparse_categorical_focal_loss_with_logits",
      np.zeros((2, 3)),
      np.array([0, 1]),
      {"gamma": -1.0},
      "gamma=-1.0 is invalid",
    ),
    (
      "categorical_cross_entropy_with_logits",
      np.zeros((2, 3)),
      np.full((2, 3), 2.0),
      {},
      r"targets must lie in \[0, 1\]",
    ),
    (
      "categorical_cross_entropy_with_logits",
      np.zeros((2, 3)),
      np.zeros((2, 4)),
      {},
      r"targets has shape \(2, 4\)",
    ),
    (
      "binary_cross_entropy_with_logits",
      np.zeros(3),
      np.array([0.0, 2.0, 1.0]),
      {},
      r"labels must lie in \[0, 1\]; found 2.0",
    ),
    (
      "binary_cross_entropy",
      np.array([0.5, 1.5]),
      np.array([0.0, 1.0]),
      {},
      r"probs must lie in \[0, 1\]",
    ),
    (
      "binary_focal_loss_with_logits",
      np.zeros(2),
      np.zeros(2),
      {"alpha": 2.0},
      "alpha=2.0 is invalid",
    ),
    (
      "binary_cross_entropy_with_logits",
      np.zeros(2),
      np.zeros(2),
      {"label_smoothing": 1.5},
      "label_smoothing=1.5 is invalid",
    ),
  ],
)
def test_closed_forms_reject_what_the_losses_reject(loss, scores, labels, options, match):
  with pytest.raises(ValueError, match=match):
    gradcheck.logits_grad(loss, scores, labels, **options)
  with pytest.raises(ValueError, match=match.replace("_grad", "")):
    getattr(xentax, loss)(scores, labels, **options)


SPARSE_WEIGHTED = [
  "sparse_categorical_cross_entropy_with_logits",
  "sparse_categorical_cross_entropy",
  "sparse_categorical_focal_loss_with_logits",
]


@pytest.mark.parametrize("loss", SPARSE_WEIGHTED)
@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "mean", "none"])
def test_sparse_closed_forms_with_sample_weight_every_reduction(loss, reduction):
  names = tuple(name for name in _matrix.LOSS_OPTIONS[loss] if name != "axis")
  scores, labels, options = _matrix.make_inputs(loss, names, seed=5)
  assert "sample_weight" in options
  reference = getattr(_reference, loss)

  def f(s):
    return np.sum(reference(s, labels, **options, reduction=reduction))

  closed = gradcheck.logits_grad(loss, scores, labels, **options, reduction=reduction)
  np.testing.assert_allclose(
    np.asarray(closed), _numpy_central_differences(f, scores), rtol=1e-6, atol=1e-7
  )
  auto = jax.grad(lambda s: getattr(xentax, loss)(s, labels, **options, reduction=reduction).sum())
  np.testing.assert_allclose(np.asarray(closed), auto(scores), rtol=1e-10, atol=1e-12)


BINARY = (
  "binary_cross_entropy",
  "binary_cross_entropy_with_logits",
  "binary_focal_loss_with_logits",
)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "sum_over_batch_size"])
@pytest.mark.parametrize("loss", BINARY)
def test_binary_closed_forms_with_smoothing_and_sample_weight_match_autodiff(loss, reduction):
  rng = np.random.default_rng(3)
  z = rng.normal(size=(5, 3)) * 2
  scores = 1 / (1 + np.exp(-z)) if loss == "binary_cross_entropy" else z
  labels = rng.uniform(size=(5, 3))
  options = {
    "label_smoothing": 0.2,
    "sample_weight": rng.uniform(0.0, 2.0, size=(3,)),
    "where": rng.uniform(size=(5, 3)) > 0.3,
  }
  fn = getattr(xentax, loss)

  def total(s):
    out = fn(s, labels, **options, reduction=reduction)
    return out.sum() if reduction == "none" else out

  want = jax.grad(total)(jax.numpy.asarray(scores))
  got = gradcheck.logits_grad(loss, scores, labels, **options, reduction=reduction)
  np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("loss", BINARY)
def test_binary_closed_forms_reject_bad_sample_weights(loss):
  with pytest.raises(ValueError, match="sample_weight"):
    gradcheck.logits_grad(loss, np.full(2, 0.5), np.zeros(2), sample_weight=np.array([1.0, -1.0]))


def test_a_loss_is_named_or_passed_itself():
  logits, labels = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]]), np.array([0, 2])
  for loss in (xentax.nll_loss, xentax.sparse_categorical_cross_entropy_with_logits):
    np.testing.assert_array_equal(
      gradcheck.logits_grad(loss, logits, labels),
      gradcheck.logits_grad(loss.__name__, logits, labels),
    )
