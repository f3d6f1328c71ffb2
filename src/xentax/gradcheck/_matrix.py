"""The gradient-check matrix: every loss x its options x each reference x each dtype.

Design notes:
  * Each case draws its inputs in float64 from a fixed seed, then rounds every float input
    (scores, targets, weights) to the dtype under test. The gradient under test is
    ``jax.grad`` of the xentax loss at those rounded inputs, in that dtype; both references
    (the closed form of :func:`xentax.gradcheck.logits_grad` and float64 central
    differences of the loss) are computed in float64 at the *same* rounded inputs, so the
    error reported is that of the gradient, not of the rounding of the inputs.
  * Option sets per loss: none, each option alone, and all of them together under each
    reduction. ``where`` drops two examples, ``ignore_index`` two others.
  * Besides the losses, the matrix checks softmax regression and logistic regression
    (the models trained by SGD with gradient ``X^T (y_pred - y) / n``) and the fused
    linear cross-entropy against their closed forms. Those rows compute ``X @ W`` in the
    tested dtype; in bfloat16 the rounding of the logits would dominate and says nothing
    about the loss, so they run in float64 and float32 only.
  * The retrieval losses (in-batch softmax, CLIP, SigLIP) are models too: ``B = 5`` pairs
    in row blocks of 2 (a scan with a padded last block), each row differentiated in the
    embeddings and every float option it sets, against
    :mod:`xentax.gradcheck._retrieval_grads`. A handful of rows puts every option in some
    row and every reduction in some loss, instead of the full product (each row compiles).
  * Nearly all of the run time is XLA compiling small functions. So every case uses the
    same ``[6, 5]`` shape (binary losses included); the float64 reference of a case is
    one function object, compiled once for its three dtypes; and two threads run checks
    side by side (compilation releases the GIL).
"""

from __future__ import annotations

import concurrent.futures
import functools
import os
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xentax import losses
from xentax.gradcheck._adaptive_grads import adaptive_softmax_cross_entropy_grad
from xentax.gradcheck._finite_diff import central_differences, check_jit
from xentax.gradcheck._logits_grad import logits_grad
from xentax.gradcheck._regression import (
  fused_linear_cross_entropy_grad,
  logistic_regression_grad,
  softmax_cross_entropy_hessian,
  softmax_regression_grad,
  softmax_regression_per_example_grad,
)
from xentax.gradcheck._report import GradReport, compare
from xentax.gradcheck._retrieval_grads import (
  clip_loss_grad,
  in_batch_softmax_cross_entropy_grad,
  siglip_loss_grad,
)
from xentax.gradcheck._sampled_grads import sampled_softmax_cross_entropy_grad
from xentax.gradcheck._tolerances import DTYPES, finite_difference_noise, tolerance

NUM_EXAMPLES, NUM_CLASSES = 6, 5
# The binary losses use the same shape, so eager mode reuses the compiled ops across losses.
BINARY_SHAPE = (NUM_EXAMPLES, NUM_CLASSES)
IGNORE_INDEX = -100
# Threads that run checks side by side (compilation releases the GIL).
WORKERS = min(2, os.cpu_count() or 1)

# The options each loss takes (besides reduction); all but "axis" are also combined.
LOSS_OPTIONS: dict[str, tuple[str, ...]] = {
  "sparse_categorical_cross_entropy_with_logits": (
    "class_weights",
    "label_smoothing",
    "z_loss",
    "softcap",
    "ignore_index",
    "where",
    "sample_weight",
    "axis",
  ),
  "sparse_categorical_cross_entropy": (
    "class_weights",
    "ignore_index",
    "where",
    "sample_weight",
    "axis",
  ),
  "sparse_categorical_focal_loss_with_logits": (
    "gamma",
    "class_weights",
    "label_smoothing",
    "softcap",
    "ignore_index",
    "where",
    "sample_weight",
    "axis",
  ),
  "categorical_cross_entropy_with_logits": (
    "class_weights",
    "label_smoothing",
    "z_loss",
    "softcap",
    "where",
    "sample_weight",
    "axis",
  ),
  "categorical_cross_entropy": (
    "class_weights",
    "label_smoothing",
    "where",
    "sample_weight",
    "axis",
  ),
  "categorical_focal_loss_with_logits": (
    "gamma",
    "alpha",
    "label_smoothing",
    "where",
    "sample_weight",
    "axis",
  ),
  "binary_cross_entropy_with_logits": (
    "pos_weight",
    "weights",
    "label_smoothing",
    "where",
    "sample_weight",
  ),
  "binary_cross_entropy": ("weights", "label_smoothing", "where", "sample_weight"),
  "binary_focal_loss_with_logits": ("gamma", "alpha", "label_smoothing", "where", "sample_weight"),
  # Divergences: the second argument is the teacher's logits (drawn like dense targets).
  "kl_divergence_with_logits": ("temperature", "sample_weight", "where", "axis"),
  "jensen_shannon_divergence_with_logits": (
    "beta",
    "temperature",
    "sample_weight",
    "where",
    "axis",
  ),
  # Distillation: the teacher's logits are an argument of every case (``teacher_logits``).
  "distillation_loss": ("temperature", "alpha", "sample_weight", "ignore_index", "where", "axis"),
  "nll_loss": ("class_weights", "sample_weight", "ignore_index", "where", "axis"),
  "poly1_cross_entropy_with_logits": ("epsilon", "sample_weight", "ignore_index", "where", "axis"),
}
SCALAR_OPTIONS = {
  "label_smoothing": 0.1,
  "z_loss": 0.01,
  "gamma": 0.5,
  "alpha": 0.25,
  "temperature": 2.0,
  "beta": 0.3,
  "epsilon": 1.0,
  "softcap": 3.0,
}
# Losses with integer labels whose names do not start with "sparse".
# Losses whose gradient is a sum of two terms that cancel: in bfloat16 each term's cotangent
# is rounded before the sum (error ~ 2^-9 |term|, above bfloat16's tolerance on the small sum).
NO_BFLOAT16 = ("distillation_loss",)
_SPARSE_LABEL_LOSSES = ("nll_loss", "poly1_cross_entropy_with_logits", "distillation_loss")
# Options that are floats (possibly traced): their gradient is checked too, against float64
# central differences (learned class weights, meta-learned smoothing...).
FLOAT_OPTIONS = (
  "class_weights",
  "label_smoothing",
  "z_loss",
  "gamma",
  "alpha",
  "pos_weight",
  "weights",
  "softcap",
  "temperature",
  "beta",
  "epsilon",
  "sample_weight",
)
FUSED = "fused_linear_cross_entropy"
FUSED_OPTIONS = {
  "ignore_index": -100,
  "class_weights": np.linspace(0.5, 2.0, NUM_CLASSES),
  "label_smoothing": 0.1,
  "z_loss": 0.01,
  "softcap": 3.0,
  "sample_weight": np.linspace(0.25, 2.0, NUM_EXAMPLES),
}
# The linear models in the matrix; the per-example gradients and the Hessian are checked
# by the tests (they compile many more shapes, which would double the matrix's run time).
MODELS = (
  "softmax_regression",
  "logistic_regression",
  "fused_linear_cross_entropy",
  "sampled_softmax_cross_entropy",
  "adaptive_softmax_cross_entropy",
  "in_batch_softmax_cross_entropy",
  "clip_loss",
  "siglip_loss",
)
# The retrieval losses' rows: (options, reduction). ``item_ids`` repeat one item (pairs 0
# and 2) and two sampled ids equal queries' items: accidental hits; ``where`` drops pair 3.
RETRIEVAL_ROWS: dict[str, tuple[tuple[tuple[str, ...], str], ...]] = {
  # Every option at once, and a different reduction per loss: one row each, since each
  # compiles its own programs inside `xentax reproduce`'s time budget (the unit tests check
  # every reduction of each closed form).
  "in_batch_softmax_cross_entropy": (
    (
      (
        "temperature",
        "log_q",
        "item_ids",
        "sampled_item",
        "sampled_log_q",
        "sampled_ids",
        "where",
        "sample_weight",
      ),
      "mean",
    ),
  ),
  "clip_loss": ((("logit_scale", "where"), "none"),),
  "siglip_loss": ((("logit_scale", "logit_bias", "where"), "sum_over_batch_size"),),
}
RETRIEVAL_SCALARS = {"temperature": 0.5, "logit_scale": 2.5, "logit_bias": -1.0}
RETRIEVAL_CHUNK = 2
# Each retrieval loss's two embedding arguments and its closed form.
_RETRIEVAL_GRADS: dict[str, tuple[tuple[str, str], Callable[..., dict]]] = {
  "in_batch_softmax_cross_entropy": (("query", "item"), in_batch_softmax_cross_entropy_grad),
  "clip_loss": (("image", "text"), clip_loss_grad),
  "siglip_loss": (("image", "text"), siglip_loss_grad),
}


def option_cases() -> list[tuple[str, str]]:
  """Every ``(loss, option)`` whose gradient with respect to the option is checked."""
  out = [(loss, name) for loss, names in LOSS_OPTIONS.items() for name in names]
  out += [(FUSED, name) for name in FUSED_OPTIONS]
  return [(loss, name) for loss, name in out if name in FLOAT_OPTIONS]


def cases() -> list[tuple[str, tuple[str, ...], str]]:
  """Every ``(loss, options, reduction)`` of the matrix, in a fixed order."""
  out: list[tuple[str, tuple[str, ...], str]] = []
  for loss, names in LOSS_OPTIONS.items():
    out.append((loss, (), "mean"))
    out += [(loss, (name,), "mean") for name in names]
    combined = tuple(name for name in names if name != "axis")
    # "none" is differentiated through the sum of its entries: the "sum" reduction's function.
    out += [(loss, combined, reduction) for reduction in ("mean", "none")]
  return out


def _kind(loss: str) -> str:
  if loss.startswith("binary"):
    return "binary"
  return "sparse" if loss.startswith("sparse") or loss in _SPARSE_LABEL_LOSSES else "dense"


def _softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def make_inputs(loss: str, names: Iterable[str], seed: int = 0) -> tuple:
  """``(scores, labels, options)`` for one case, float64 (labels int for sparse losses)."""
  rng = np.random.default_rng(seed)
  kind, names = _kind(loss), tuple(names)
  logits_input = loss.endswith("_with_logits")
  labels: np.ndarray
  example_shape: tuple[int, ...]
  if kind == "binary":
    logits = rng.normal(0.0, 1.5, BINARY_SHAPE)
    scores = logits if logits_input else rng.uniform(0.05, 0.95, BINARY_SHAPE)
    labels = rng.uniform(0.0, 1.0, BINARY_SHAPE)
    example_shape = BINARY_SHAPE
  else:
    logits = rng.normal(0.0, 1.5, (NUM_EXAMPLES, NUM_CLASSES))
    scores = logits if logits_input else _softmax(logits)
    if kind == "sparse":
      labels = rng.integers(0, NUM_CLASSES, NUM_EXAMPLES)
    else:
      labels = _softmax(rng.normal(0.0, 1.0, (NUM_EXAMPLES, NUM_CLASSES)))
    example_shape = (NUM_EXAMPLES,)
  options: dict[str, Any] = {}
  if loss == "distillation_loss":
    options["teacher_logits"] = rng.normal(0.0, 1.5, (NUM_EXAMPLES, NUM_CLASSES))
  for name in names:
    if name in SCALAR_OPTIONS:
      options[name] = SCALAR_OPTIONS[name]
    elif name == "class_weights":
      options[name] = rng.uniform(0.5, 2.0, NUM_CLASSES)
    elif name == "weights":
      options[name] = rng.uniform(0.5, 2.0, BINARY_SHAPE)
    elif name == "pos_weight":
      options[name] = rng.uniform(0.5, 3.0, BINARY_SHAPE[-1:])
    elif name == "sample_weight":
      options[name] = rng.uniform(0.25, 2.0, example_shape)
    elif name == "ignore_index":
      labels = labels.copy()
      labels[[1, 4]] = IGNORE_INDEX
      options[name] = IGNORE_INDEX
    elif name == "where":
      where = np.ones(example_shape, bool)
      where[0] = False
      where[(3,) if kind != "binary" else (2, 1)] = False
      options[name] = where
    elif name == "axis":
      scores = scores.T
      if kind == "dense":
        labels = labels.T
      if "teacher_logits" in options:
        options["teacher_logits"] = options["teacher_logits"].T
      options[name] = 0
  return scores, labels, options


def describe(names: Iterable[str], reduction: str) -> dict:
  """JSON-friendly description of a case's options."""
  out: dict[str, Any] = {}
  for name in names:
    if name in SCALAR_OPTIONS:
      out[name] = SCALAR_OPTIONS[name]
    elif name == "ignore_index":
      out[name] = IGNORE_INDEX
    elif name == "axis":
      out[name] = 0
    else:
      out[name] = "array"
  out["reduction"] = reduction
  return out


def options_text(options: dict) -> str:
  parts = [k if v == "array" else f"{k}={v}" for k, v in options.items() if k != "reduction"]
  return ", ".join(parts + [f"reduction={options.get('reduction', 'mean')}"])


def _round(x, dtype):
  """Float arrays to ``dtype``; integers, booleans and Python scalars unchanged."""
  if isinstance(x, np.ndarray) and np.issubdtype(x.dtype, np.floating):
    return jnp.asarray(x, jnp.float64).astype(dtype)
  if isinstance(x, np.ndarray):
    return jnp.asarray(x)
  return x


def _upcast(x):
  if isinstance(x, jax.Array) and jnp.issubdtype(x.dtype, jnp.floating):
    return x.astype(jnp.float64)
  return x


def _record(loss, options, report: GradReport) -> dict:
  return {
    "loss": loss,
    "options": options,
    "dtype": report.dtype,
    "reference": report.reference,
    "max_abs_error": report.max_abs_error,
    "max_rel_error": report.max_rel_error,
    "passed": report.passed,
    "atol": report.atol,
    "rtol": report.rtol,
    "worst": report.worst,
    "size": report.size,
  }


def _loss_fn(loss: str):
  """The loss as ``f(scores, labels, **options)``: distillation's teacher is an option."""
  if loss == "distillation_loss":
    return lambda s, labels, *, teacher_logits, **kw: losses.distillation_loss(
      s, teacher_logits, labels, **kw
    )
  return getattr(losses, loss)


def _split_options(options: dict) -> tuple[dict, tuple]:
  """Array options (passed as arguments) and the rest (hashable, fixed in the function)."""
  arrays = {k: v for k, v in options.items() if isinstance(v, jax.Array | np.ndarray)}
  fixed = tuple((k, v) for k, v in options.items() if k not in arrays)
  return arrays, fixed


@functools.cache
def _loss_value(loss: str, reduction: str, fixed: tuple):
  """``f(scores, labels, array_options)``: one function object per case, so its
  compilations are reused across dtypes (``jax.jit`` caches on the function)."""
  loss_fn = _loss_fn(loss)

  def f(s, labels, arrays):
    out = loss_fn(s, labels, **arrays, **dict(fixed), reduction=reduction)
    return out.sum() if reduction == "none" else out

  return f


def check_loss_case(loss: str, names, reduction: str, dtype) -> list[GradReport]:
  """``jax.grad`` of one loss case in ``dtype`` against the closed form and central differences."""
  scores, labels, options = make_inputs(loss, names)
  name = f"{loss}({options_text(describe(names, reduction))})"
  s_d = _round(scores, dtype)
  labels_d = _round(labels, dtype)
  arrays, fixed = _split_options({k: _round(v, dtype) for k, v in options.items()})
  f = _loss_value(loss, reduction, fixed)
  actual = check_jit(jax.grad(f))(s_d, labels_d, arrays)
  labels_64 = _upcast(labels_d)
  arrays_64 = {k: _upcast(v) for k, v in arrays.items()}
  s_64 = _upcast(s_d)
  analytic = logits_grad(loss, s_64, labels_64, **arrays_64, **dict(fixed), reduction=reduction)
  numeric = central_differences(f, s_64, args=(labels_64, arrays_64))
  return _reports(actual, analytic, numeric, name)


def _reports(actual, analytic, numeric, name) -> list[GradReport]:
  expected, scale = numeric
  atol = tolerance(actual_dtype(actual), "finite_difference")["atol"]
  return [
    compare(actual, analytic, reference="analytic", name=name),
    compare(
      actual,
      expected,
      reference="finite_difference",
      atol=atol + finite_difference_noise(scale),
      name=name,
    ),
  ]


@functools.cache
def _option_value(loss: str, option: str, fixed: tuple):
  """``f(option_value, scores, labels, array_options)`` for one option case (see
  :func:`_loss_value`)."""
  if loss == FUSED:

    def loss_fn(s, labels_, **kw):
      h, weight, bias = s
      return losses.fused_linear_cross_entropy(h, weight, labels_, bias=bias, block_size=2, **kw)

  else:
    loss_fn = _loss_fn(loss)

  def f(value, s, labels, arrays):
    return loss_fn(s, labels, **arrays, **dict(fixed), **{option: value})

  return f


def check_option_case(loss: str, option: str, dtype) -> list[GradReport]:
  """``jax.grad`` with respect to one float option, every other option on, ``"mean"``.

  The reference is float64 central differences of the loss in the option, at the same
  (rounded) inputs; there is no closed form for these.
  """
  if loss == FUSED:
    X, W, b, y, *_ = _model_inputs()
    labels = np.where(np.arange(len(y)) % 4 == 3, -100, y)
    options = dict(FUSED_OPTIONS)
    scores = (X, W, b)
    names = tuple(FUSED_OPTIONS)
  else:
    names = tuple(name for name in LOSS_OPTIONS[loss] if name != "axis")
    scores, labels, options = make_inputs(loss, names)
  name = f"{loss}(d/d {option}; {options_text(describe(names, 'mean'))})"
  s_d = jax.tree_util.tree_map(lambda x: _round(x, dtype), scores)
  labels_d = _round(labels, dtype)
  value_d = _round(np.asarray(options[option]), dtype)
  others = {k: _round(v, dtype) for k, v in options.items() if k != option}
  arrays, fixed = _split_options(others)
  f = _option_value(loss, option, fixed)
  actual = check_jit(jax.grad(f))(value_d, s_d, labels_d, arrays)
  up = functools.partial(jax.tree_util.tree_map, _upcast)
  expected, scale = central_differences(
    f, _upcast(value_d), args=(up(s_d), _upcast(labels_d), up(arrays))
  )
  atol = tolerance(actual_dtype(actual), "finite_difference")["atol"]
  return [
    compare(
      actual,
      expected,
      reference="finite_difference",
      atol=atol + finite_difference_noise(scale),
      name=name,
    )
  ]


def actual_dtype(tree):
  return jax.tree_util.tree_leaves(tree)[0].dtype


def _model_inputs(seed: int = 1):
  rng = np.random.default_rng(seed)
  n, d = NUM_EXAMPLES, 4
  X = rng.normal(0.0, 1.0, (n, d))
  W = rng.normal(0.0, 0.5, (d, NUM_CLASSES))
  b = rng.normal(0.0, 0.5, NUM_CLASSES)
  y = rng.integers(0, NUM_CLASSES, n)
  soft = _softmax(rng.normal(0.0, 1.0, (n, NUM_CLASSES)))
  w = rng.normal(0.0, 0.5, d)
  yb = rng.uniform(0.0, 1.0, n)
  return X, W, b, y, soft, w, yb


def check_model(model: str, targets: str, dtype) -> list[GradReport]:
  """A linear model (softmax or logistic regression, the fused loss) or the softmax Hessian,
  against its closed form and float64 central differences."""
  X, W, b, y, soft, w, yb = (_round(v, dtype) for v in _model_inputs())
  up = jax.tree_util.tree_map(_upcast, (X, W, b, soft, w, yb))
  X64, W64, b64, soft64, w64, yb64 = up
  Y, Y64 = (y, y) if targets == "integer" else (soft, soft64)
  name = f"{model}(targets={targets})"
  analytic: Any

  def ce(z, labels, reduction="mean"):
    if jnp.issubdtype(jnp.result_type(labels), jnp.integer):
      return losses.sparse_categorical_cross_entropy_with_logits(z, labels, reduction=reduction)
    return losses.categorical_cross_entropy_with_logits(z, labels, reduction=reduction)

  if model == "softmax_regression":

    def f(params, X=X, Y=Y):
      return ce(X @ params[0] + params[1], Y)

    actual = jax.grad(f)((W, b))
    analytic = softmax_regression_grad(X64, W64, b64, Y64)
    numeric = central_differences(lambda p: f(p, X64, Y64), (W64, b64))
  elif model == "softmax_regression_per_example":

    def f_one(params, x_j, y_j):
      return ce((x_j @ params[0] + params[1])[None], y_j[None])

    actual = jax.vmap(jax.grad(f_one), in_axes=(None, 0, 0))((W, b), X, Y)
    analytic = softmax_regression_per_example_grad(X64, W64, b64, Y64)
    numeric = central_differences(
      lambda p: ce(X64 @ p[0] + p[1], Y64, reduction="none"), (W64, b64)
    )
  elif model == "logistic_regression":

    def f(params, X=X, y=yb):
      return losses.binary_cross_entropy_with_logits(X @ params[0] + params[1], y)

    b0 = b[0]
    actual = jax.grad(f)((w, b0))
    analytic = logistic_regression_grad(X64, w64, b64[0], yb64)
    numeric = central_differences(lambda p: f(p, X64, yb64), (w64, b64[0]))
  elif model == "fused_linear_cross_entropy":
    # Three vocabulary blocks of 2 (the last one overlapping), every option at once.
    labels = np.where(np.arange(len(y)) % 4 == 3, -100, y)
    options = dict(FUSED_OPTIONS)

    def f(params, X=X):  # type: ignore[misc]  # one f per model branch
      h, weight, bias = params
      return losses.fused_linear_cross_entropy(
        h, weight, labels, bias=bias, block_size=2, **options
      )

    actual = jax.grad(f)((X, W, b))
    analytic = fused_linear_cross_entropy_grad(X64, W64, labels, bias=b64, **options)
    numeric = central_differences(lambda p: f(p), (X64, W64, b64))
  elif model == "sampled_softmax_cross_entropy":
    actual, analytic, numeric = _sampled_softmax(X, W, b, y)
  elif model == "adaptive_softmax_cross_entropy":
    actual, analytic, numeric = _adaptive_softmax(X, y)
  elif model == "softmax_cross_entropy_hessian":
    z = X[0] @ W + b
    z64 = _upcast(z)
    label = Y[0]

    def f(z_, label_=label):  # type: ignore[misc]  # one f per model branch
      return ce(z_[None], label_[None])

    actual = jax.hessian(f)(z)
    analytic = softmax_cross_entropy_hessian(z64)
    numeric = central_differences(jax.grad(lambda z_: f(z_, _upcast(Y64[0]))), z64)
  else:
    raise ValueError(f"check_model: unknown model {model!r}; choose one of {MODELS}.")
  return _reports(actual, analytic, numeric, name)


def _sampled_softmax(X, W, b, y):
  """``(jax.grad, closed form, central differences)`` of the sampled softmax in hidden,
  weight, bias and both corrections: a repeated class, an accidental hit, a dropped example
  and sample weights, the weighted mean."""
  sampled = np.array([1, 1, int(y[0]), (int(y[0]) + 2) % W.shape[1]])
  labels = np.where(np.arange(len(y)) % 4 == 3, -100, y)
  weights = np.linspace(0.5, 2.0, len(y))
  params = (
    X,
    W,
    b,
    jnp.linspace(-0.5, 0.5, 4, dtype=X.dtype),
    jnp.linspace(0, 1, len(y), dtype=X.dtype),
  )

  def f(p):
    h, weight, bias, sq, tq = p
    return losses.sampled_softmax_cross_entropy(
      h,
      weight,
      labels,
      sampled,
      sampled_log_q=sq,
      true_log_q=tq,
      bias=bias,
      ignore_index=-100,
      sample_weight=weights,
      reduction="mean",
    )

  up = tuple(_upcast(x) for x in params)
  g = sampled_softmax_cross_entropy_grad(
    up[0],
    up[1],
    labels,
    sampled,
    sampled_log_q=up[3],
    true_log_q=up[4],
    bias=up[2],
    ignore_index=-100,
    sample_weight=weights,
    reduction="mean",
  )
  keys = ("d_hidden", "d_weight", "d_bias", "d_sampled_log_q", "d_true_log_q")
  return jax.grad(f)(params), tuple(g[k] for k in keys), central_differences(f, up)


def _adaptive_softmax(X, y):
  """``(jax.grad, closed form, central differences)`` of the adaptive softmax in hidden and
  every weight: a shortlist of 2 and clusters [2, 3) and [3, 5), a dropped example and sample
  weights, the weighted mean."""
  rng = np.random.default_rng(1)
  d = X.shape[1]
  head = jnp.asarray(rng.normal(0.0, 0.5, (d, 4)), X.dtype)
  tails = [
    (
      jnp.asarray(rng.normal(0.0, 0.5, (d, 2)), X.dtype),
      jnp.asarray(rng.normal(0.0, 0.5, (2, 1)), X.dtype),
    ),
    (
      jnp.asarray(rng.normal(0.0, 0.5, (d, 2)), X.dtype),
      jnp.asarray(rng.normal(0.0, 0.5, (2, 2)), X.dtype),
    ),
  ]
  bias = jnp.asarray(rng.normal(0.0, 0.5, 4), X.dtype)
  labels = np.where(np.arange(len(y)) % 4 == 3, -100, y)
  options = {
    "cutoffs": [2, 3],
    "ignore_index": -100,
    "sample_weight": np.linspace(0.5, 2.0, len(y)),
  }

  def f(p):
    h, head, tails, bias = p
    return losses.adaptive_softmax_cross_entropy(h, head, tails, labels, head_bias=bias, **options)

  params = (X, head, tails, bias)
  up = jax.tree_util.tree_map(_upcast, params)
  g = adaptive_softmax_cross_entropy_grad(*up[:3], labels, head_bias=up[3], **options)
  analytic = (g["d_hidden"], g["d_head_weight"], g["d_tail_weights"], g["d_head_bias"])
  return jax.grad(f)(params), analytic, central_differences(f, up)


def describe_retrieval(names: Iterable[str], reduction: str) -> dict:
  """JSON-friendly description of a retrieval row's options."""
  out: dict[str, Any] = {name: RETRIEVAL_SCALARS.get(name, "array") for name in names}
  return {**out, "chunk_size": RETRIEVAL_CHUNK, "reduction": reduction}


def retrieval_inputs(loss: str, names: Iterable[str], seed: int = 2) -> tuple[dict, dict]:
  """``(params, fixed)`` of one retrieval row, float64: the inputs differentiated (the two
  embeddings and the float options named) and the others (ids, ``where``, weights)."""
  rng = np.random.default_rng(seed)
  count, dim, sampled = 5, 3, 3
  left, right = _RETRIEVAL_GRADS[loss][0]
  params: dict[str, Any] = {left: rng.normal(0.0, 1.0, (count, dim))}
  params[right] = rng.normal(0.0, 1.0, (count, dim))
  draws = {
    "log_q": np.log(rng.uniform(0.05, 0.5, count)),
    "sampled_item": rng.normal(0.0, 1.0, (sampled, dim)),
    "sampled_log_q": np.log(rng.uniform(0.05, 0.5, sampled)),
    "sample_weight": rng.uniform(0.5, 2.0, count),
    "item_ids": np.array([3, 7, 3, 1, 5]),
    "sampled_ids": np.array([7, 2, 5]),
    "where": np.arange(count) != 3,
  }
  fixed: dict[str, Any] = {}
  for name in names:
    if name in RETRIEVAL_SCALARS:
      params[name] = np.asarray(RETRIEVAL_SCALARS[name])
    elif name in ("log_q", "sampled_item", "sampled_log_q"):
      params[name] = draws[name]
    else:
      fixed[name] = draws[name]
  return params, fixed


@functools.cache
def _retrieval_value(loss: str, reduction: str):
  """``f(params, fixed)``: one function object per row (see :func:`_loss_value`)."""
  left, right = _RETRIEVAL_GRADS[loss][0]
  loss_fn = getattr(losses, loss)

  def f(params, fixed):
    options = {k: v for k, v in params.items() if k not in (left, right)}
    out = loss_fn(
      params[left], params[right], **options, **fixed, chunk_size=RETRIEVAL_CHUNK,
      reduction=reduction,
    )  # fmt: skip
    return out.sum() if reduction == "none" else out

  return f


def check_retrieval_case(loss: str, names, reduction: str, dtype) -> list[GradReport]:
  """``jax.grad`` of one retrieval row in ``dtype`` (embeddings and float options) against
  its closed form and float64 central differences."""
  params, fixed = retrieval_inputs(loss, names)
  name = f"{loss}({options_text(describe_retrieval(names, reduction))})"
  params_d = {k: _round(v, dtype) for k, v in params.items()}
  fixed_d = {k: _round(v, dtype) for k, v in fixed.items()}
  f = _retrieval_value(loss, reduction)
  actual = check_jit(jax.grad(f))(params_d, fixed_d)
  up = functools.partial(jax.tree_util.tree_map, _upcast)
  params_64, fixed_64 = up(params_d), up(fixed_d)
  (left, right), closed_form = _RETRIEVAL_GRADS[loss]
  options = {k: v for k, v in params_64.items() if k not in (left, right)}
  g = closed_form(params_64[left], params_64[right], **options, **fixed_64, reduction=reduction)
  analytic = {k: g[f"d_{k}"] for k in params}
  return _reports(actual, analytic, central_differences(f, params_64, args=(fixed_64,)), name)


def run_matrix(
  dtypes: Iterable[str] = DTYPES, *, losses: Iterable[str] | None = None
) -> list[dict]:
  """Run every check of the matrix and return one record per check.

  Args:
    dtypes: any of ``"float64"``, ``"float32"``, ``"bfloat16"``.
    losses: restrict to these losses (names in :data:`LOSS_OPTIONS`, or in
      :data:`MODELS`: the linear models, the fused, sampled and adaptive softmax and the
      retrieval losses); default all.

  Returns:
    A list of dicts with ``loss``, ``options`` (a dict; ``"array"`` marks a random array),
    ``dtype``, ``reference`` (``"analytic"`` or ``"finite_difference"``),
    ``max_abs_error``, ``max_rel_error``, ``passed``, ``atol``, ``rtol``, ``worst`` and
    ``size``.

  Raises:
    ValueError: an unknown dtype or loss.

  Examples:
    >>> from xentax import gradcheck
    >>> records = gradcheck.run_matrix(["float64"], losses=["logistic_regression"])
    >>> [(r["reference"], r["passed"]) for r in records]
    [('analytic', True), ('finite_difference', True)]
  """
  dtypes = tuple(dtypes)
  unknown = [d for d in dtypes if d not in DTYPES]
  if unknown:
    raise ValueError(f"run_matrix: unknown dtype(s) {unknown}; choose from {DTYPES}.")
  known = (*LOSS_OPTIONS, *MODELS)
  selected = list(known if losses is None else losses)
  unknown = [name for name in selected if name not in known]
  if unknown:
    raise ValueError(f"run_matrix: unknown loss(es) {unknown}; choose from {list(known)}.")
  return _run(dtypes, selected)


def _run(dtypes: tuple[str, ...], selected: list[str]) -> list[dict]:
  tasks: list[
    tuple[Any, tuple, str, dict]
  ] = []  # (check, its arguments, the record's loss and options), in the matrix's order
  for loss, names, reduction in cases():
    if loss in selected:
      for dtype in dtypes:
        if dtype == "bfloat16" and loss in NO_BFLOAT16:
          continue
        args = (loss, names, reduction, jnp.dtype(dtype))
        tasks.append((check_loss_case, args, loss, describe(names, reduction)))
  for loss, option in option_cases():
    if loss in selected:
      options = {"d/d": option, **describe(_option_names(loss), "mean")}
      for dtype in dtypes:
        if dtype == "bfloat16" and loss in NO_BFLOAT16:
          continue
        tasks.append((check_option_case, (loss, option, jnp.dtype(dtype)), loss, options))
  for model in MODELS:
    if model in selected and model in RETRIEVAL_ROWS:
      for names, reduction in RETRIEVAL_ROWS[model]:
        for dtype in (d for d in dtypes if d != "bfloat16"):
          retrieval_args = (model, names, reduction, jnp.dtype(dtype))
          options = describe_retrieval(names, reduction)
          tasks.append((check_retrieval_case, retrieval_args, model, options))
    elif model in selected:
      for targets in ("integer", "soft") if model == "softmax_regression" else ("integer",):
        for dtype in dtypes:
          if dtype != "bfloat16":
            model_args = (model, targets, jnp.dtype(dtype))
            tasks.append((check_model, model_args, model, {"targets": targets}))

  def run(task):
    check, args, loss, options = task
    # The references are float64 whatever the caller's x64 setting (set per thread).
    with jax.enable_x64(True):
      return [_record(loss, options, report) for report in check(*args)]

  # Nearly all of a check's time is XLA compiling its small functions, which releases the
  # GIL: two threads keep two cores busy. The records keep the matrix's order.
  with concurrent.futures.ThreadPoolExecutor(max_workers=WORKERS) as pool:
    return [record for records in pool.map(run, tasks) for record in records]


def _option_names(loss: str) -> tuple[str, ...]:
  if loss == FUSED:
    return tuple(FUSED_OPTIONS)
  return tuple(name for name in LOSS_OPTIONS[loss] if name != "axis")


def format_table(records: list[dict]) -> str:
  """One line per (loss, options): the max relative error per dtype and reference.

  Examples:
    >>> from xentax import gradcheck
    >>> records = gradcheck.run_matrix(["float64"], losses=["logistic_regression"])
    >>> print(gradcheck.format_table(records))  # doctest: +ELLIPSIS
    loss                 options                          float64 analytic  float64 fd
    -------------------  -------------------------------  ----------------  ----------
    logistic_regression  targets=integer, reduction=mean  ...e-... ok        ...e-... ok
  """
  columns = sorted(
    {(r["dtype"], r["reference"]) for r in records},
    key=lambda c: (DTYPES.index(c[0]), c[1]),
  )
  rows: dict[tuple[str, str], dict] = {}
  for r in records:
    rows.setdefault((r["loss"], options_text(r["options"])), {})[(r["dtype"], r["reference"])] = r
  head = ["loss", "options"] + [
    f"{d} {'analytic' if ref == 'analytic' else 'fd'}" for d, ref in columns
  ]
  lines = [head]
  for (loss, text), cells in rows.items():
    line = [loss, text]
    for column in columns:
      cell = cells.get(column)
      line.append(
        "-" if cell is None else f"{cell['max_rel_error']:.1e} {'ok' if cell['passed'] else 'FAIL'}"
      )
    lines.append(line)
  widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
  out = [
    "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in lines
  ]
  out.insert(1, "  ".join("-" * width for width in widths))
  return "\n".join(out)


def summarize(records: list[dict]) -> list[dict]:
  """Per dtype and reference: number of checks, number passed, worst errors and where."""
  out = []
  for dtype in DTYPES:
    for reference in ("analytic", "finite_difference"):
      group = [r for r in records if r["dtype"] == dtype and r["reference"] == reference]
      if not group:
        continue
      worst = max(group, key=lambda r: r["max_rel_error"])
      out.append(
        {
          "dtype": dtype,
          "reference": reference,
          "checks": len(group),
          "passed": sum(r["passed"] for r in group),
          "max_abs_error": max(r["max_abs_error"] for r in group),
          "max_rel_error": worst["max_rel_error"],
          "worst_case": f"{worst['loss']}({options_text(worst['options'])})",
        }
      )
  return out


def format_summary(records: list[dict]) -> str:
  """A few lines: checks passed and worst errors per dtype and reference.

  Examples:
    >>> from xentax import gradcheck
    >>> records = gradcheck.run_matrix(["float64"], losses=["logistic_regression"])
    >>> print(gradcheck.format_summary(records).splitlines()[-1])
    2 checks, 2 passed, 0 failed
  """
  lines = []
  for row in summarize(records):
    lines.append(
      f"{row['dtype']:>8} {row['reference']:<17} {row['passed']:>3}/{row['checks']:<3} passed"
      f"  max abs error {row['max_abs_error']:.1e}  max rel error {row['max_rel_error']:.1e}"
      f"  ({row['worst_case']})"
    )
  failed = sum(not r["passed"] for r in records)
  lines.append(f"{len(records)} checks, {len(records) - failed} passed, {failed} failed")
  return "\n".join(lines)
