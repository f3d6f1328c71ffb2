"""Empty batches: every public loss gives 0 (an empty array for ``"none"``) and zero gradients.

The table of input builders is checked against xentax's public names, so a loss added to
the package without an entry here fails :func:`test_every_public_loss_has_an_empty_batch_case`.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

import xentax

C, D, L = 5, 3, 4  # classes, hidden size, sequence length
DEVICES = 8  # tests/conftest.py
V = 2 * DEVICES  # the vocabulary-parallel losses' classes: two per device
REDUCTIONS = ("mean", "sum", "sum_over_batch_size", "none")
SCALAR_REDUCTIONS = REDUCTIONS[:-1]


class F(NamedTuple):
  """A floating-point input (differentiated), filled with 0.5: inside every option's domain."""

  shape: tuple


class Fixed(NamedTuple):
  """A floating-point input that is traced but not differentiated (filled with 0.5)."""

  shape: tuple


class Labels(NamedTuple):
  shape: tuple


class Mask(NamedTuple):
  shape: tuple


class Case(NamedTuple):
  fn: Callable
  inputs: dict  # positional inputs, in order: name -> F / Fixed / Labels / Mask
  options: dict  # keyword inputs for the options run (sample weights, masks, weights)
  static: dict = {}  # keyword settings, neither traced nor differentiated
  reductions: tuple = REDUCTIONS
  none_shape: tuple = (0,)  # the per-example shape of an empty batch


def _mesh():
  return jax.make_mesh((DEVICES,), ("vocab",), axis_types=(jax.sharding.AxisType.Auto,))


def _vocab_parallel_cross_entropy(
  logits_shard, labels, class_weights=None, *, reduction, **options
):
  options = {**options, "class_weights": class_weights}

  def body(logits, labels, options):
    return xentax.parallel.vocab_parallel_cross_entropy(
      logits, labels, axis_name="vocab", reduction=reduction, **options
    )

  specs = (P(None, "vocab"), P(), P())
  return jax.shard_map(body, mesh=_mesh(), in_specs=specs, out_specs=P())(
    logits_shard, labels, options
  )


def _vocab_parallel_fused(hidden, weight_shard, labels, *, reduction, **options):
  def body(hidden, weight, labels, options):
    return xentax.parallel.vocab_parallel_fused_linear_cross_entropy(
      hidden, weight, labels, axis_name="vocab", reduction=reduction, **options
    )

  specs = (P(), P(None, "vocab"), P(), P())
  return jax.shard_map(body, mesh=_mesh(), in_specs=specs, out_specs=P())(
    hidden, weight_shard, labels, options
  )


BATCH = (0,)
WEIGHTED = {"sample_weight": F(BATCH), "where": Mask(BATCH)}
SPARSE = {"logits": F((0, C)), "labels": Labels(BATCH)}
DENSE = {"logits": F((0, C)), "targets": F((0, C))}
BINARY = {"logits": F((0, C)), "labels": F((0, C))}
BINARY_WEIGHTED = {"sample_weight": F((0, C)), "where": Mask((0, C))}
FUSED = {"hidden": F((0, D)), "weight": F((D, C)), "labels": Labels(BATCH)}
FUSED_OPTIONS = {
  **WEIGHTED,
  "bias": F((C,)),
  "class_weights": F((C,)),
  "label_smoothing": F(()),
  "z_loss": F(()),
  "softcap": F(()),
}
FUSED_DISTILL = {
  "student_hidden": F((0, D)),
  "student_weight": F((D, C)),
  "teacher_hidden": F((0, D + 1)),
  "teacher_weight": F((D + 1, C)),
  "labels": Labels(BATCH),
}
CAUSAL = {"logits": F((0, L, C)), "labels": Labels((0, L))}
CAUSAL_OPTIONS = {"sample_weight": F((0, L)), "where": Mask((0, L))}

# Public name (or "name/variant") -> its empty-batch case.
CASES = {
  "binary_cross_entropy": Case(
    xentax.binary_cross_entropy,
    {"probs": F((0, C)), "labels": F((0, C))},
    {**BINARY_WEIGHTED, "weights": F((C,)), "label_smoothing": F(())},
    none_shape=(0, C),
  ),
  "binary_cross_entropy_with_logits": Case(
    xentax.binary_cross_entropy_with_logits,
    BINARY,
    {**BINARY_WEIGHTED, "pos_weight": F((C,)), "weights": F((C,)), "label_smoothing": F(())},
    none_shape=(0, C),
  ),
  "binary_cross_entropy_with_logits/1d": Case(
    xentax.binary_cross_entropy_with_logits,
    {"logits": F(BATCH), "labels": F(BATCH)},
    WEIGHTED,
  ),
  "binary_focal_loss_with_logits": Case(
    xentax.binary_focal_loss_with_logits,
    BINARY,
    {**BINARY_WEIGHTED, "gamma": F(()), "alpha": F(()), "label_smoothing": F(())},
    none_shape=(0, C),
  ),
  "categorical_cross_entropy": Case(
    xentax.categorical_cross_entropy,
    {"probs": F((0, C)), "targets": F((0, C))},
    {**WEIGHTED, "class_weights": F((C,)), "label_smoothing": F(())},
  ),
  "categorical_cross_entropy_with_logits": Case(
    xentax.categorical_cross_entropy_with_logits,
    DENSE,
    {
      **WEIGHTED,
      "class_weights": F((C,)),
      "label_smoothing": F(()),
      "z_loss": F(()),
      "softcap": F(()),
    },
  ),
  "categorical_cross_entropy_with_logits/axis0": Case(
    xentax.categorical_cross_entropy_with_logits,
    {"logits": F((C, 2, 0)), "targets": F((C, 2, 0))},
    {"sample_weight": F((2, 0))},
    static={"axis": 0},
    none_shape=(2, 0),
  ),
  "categorical_focal_loss_with_logits": Case(
    xentax.categorical_focal_loss_with_logits,
    DENSE,
    {**WEIGHTED, "gamma": F(()), "alpha": F(()), "label_smoothing": F(())},
  ),
  "causal_lm_cross_entropy_with_logits": Case(
    xentax.causal_lm_cross_entropy_with_logits,
    CAUSAL,
    CAUSAL_OPTIONS,
    none_shape=(0, L - 1),
  ),
  "causal_lm_cross_entropy_with_logits/sequence": Case(
    xentax.causal_lm_cross_entropy_with_logits,
    CAUSAL,
    CAUSAL_OPTIONS,
    static={"normalization": "sequence", "ignore_index": -100},
    none_shape=(0, L - 1),
  ),
  "distillation_loss": Case(
    xentax.distillation_loss,
    {"student_logits": F((0, C)), "teacher_logits": F((0, C)), "labels": Labels(BATCH)},
    {**WEIGHTED, "temperature": F(()), "alpha": F(())},
  ),
  "fused_linear_cross_entropy": Case(xentax.fused_linear_cross_entropy, FUSED, FUSED_OPTIONS),
  "fused_linear_cross_entropy/tokens": Case(
    xentax.fused_linear_cross_entropy,
    FUSED,
    FUSED_OPTIONS,
    static={"schedule": "tokens"},
    reductions=SCALAR_REDUCTIONS,
  ),
  "fused_linear_cross_entropy/vocab": Case(
    xentax.fused_linear_cross_entropy,
    FUSED,
    FUSED_OPTIONS,
    static={"schedule": "vocab", "block_size": 2},
  ),
  "fused_linear_cross_entropy/batch_dims": Case(
    xentax.fused_linear_cross_entropy,
    {"hidden": F((2, 0, D)), "weight": F((D, C)), "labels": Labels((2, 0))},
    {"sample_weight": F((2, 0)), "where": Mask((2, 0))},
    none_shape=(2, 0),
  ),
  "adaptive_softmax_cross_entropy": Case(
    lambda h, head, p1, o1, y, **kw: xentax.adaptive_softmax_cross_entropy(
      h, head, [(p1, o1)], y, cutoffs=[2], **kw
    ),
    {
      "hidden": F((0, D)),
      "head_weight": F((D, 3)),
      "proj": F((D, 2)),
      "out": F((2, C - 2)),
      "labels": Labels(BATCH),
    },
    {**WEIGHTED, "head_bias": F((3,))},
  ),
  "sampled_softmax_cross_entropy": Case(
    lambda h, w, y, c, sq, tq, **kw: xentax.sampled_softmax_cross_entropy(
      h, w, y, c, sampled_log_q=sq, true_log_q=tq, **kw
    ),
    {**FUSED, "sampled_classes": Labels((2,)), "sampled_log_q": F((2,)), "true_log_q": F(BATCH)},
    {**WEIGHTED, "bias": F((C,))},
  ),
  "in_batch_softmax_cross_entropy": Case(
    lambda q, v, **kw: xentax.in_batch_softmax_cross_entropy(q, v, chunk_size=2, **kw),
    {"query": F((0, D)), "item": F((0, D))},
    {
      **WEIGHTED,
      "log_q": F(BATCH),
      "temperature": F(()),
      "item_ids": Labels(BATCH),
      "sampled_item": F((2, D)),
      "sampled_log_q": F((2,)),
      "sampled_ids": Labels((2,)),
    },
  ),
  "clip_loss": Case(
    lambda x, t, s, **kw: xentax.clip_loss(x, t, logit_scale=s, **kw),
    {"image": F((0, D)), "text": F((0, D)), "logit_scale": F(())},
    {"where": Mask(BATCH)},
  ),
  "siglip_loss": Case(
    lambda x, t, s, b, **kw: xentax.siglip_loss(x, t, logit_scale=s, logit_bias=b, **kw),
    {"image": F((0, D)), "text": F((0, D)), "logit_scale": F(()), "logit_bias": F(())},
    {"where": Mask(BATCH)},
  ),
  "fused_linear_distillation": Case(
    xentax.fused_linear_distillation,
    FUSED_DISTILL,
    # Its temperature and alpha are not differentiable (a documented TypeError).
    {**WEIGHTED, "temperature": Fixed(()), "alpha": Fixed(())},
    reductions=SCALAR_REDUCTIONS,
  ),
  "jensen_shannon_divergence_with_logits": Case(
    xentax.jensen_shannon_divergence_with_logits,
    {"student_logits": F((0, C)), "teacher_logits": F((0, C))},
    {**WEIGHTED, "beta": F(()), "temperature": F(())},
  ),
  "kl_divergence_with_logits": Case(
    xentax.kl_divergence_with_logits,
    {"student_logits": F((0, C)), "teacher_logits": F((0, C))},
    {**WEIGHTED, "temperature": F(())},
  ),
  "nll_loss": Case(
    xentax.nll_loss,
    {"log_probs": F((0, C)), "labels": Labels(BATCH)},
    {**WEIGHTED, "class_weights": F((C,))},
  ),
  "poly1_cross_entropy_with_logits": Case(
    xentax.poly1_cross_entropy_with_logits, SPARSE, {**WEIGHTED, "epsilon": F(())}
  ),
  "sparse_categorical_cross_entropy": Case(
    xentax.sparse_categorical_cross_entropy,
    {"probs": F((0, C)), "labels": Labels(BATCH)},
    {**WEIGHTED, "class_weights": F((C,))},
  ),
  "sparse_categorical_cross_entropy_with_logits": Case(
    xentax.sparse_categorical_cross_entropy_with_logits,
    SPARSE,
    {
      **WEIGHTED,
      "class_weights": F((C,)),
      "label_smoothing": F(()),
      "z_loss": F(()),
      "softcap": F(()),
    },
  ),
  "sparse_categorical_cross_entropy_with_logits/batch_dims": Case(
    xentax.sparse_categorical_cross_entropy_with_logits,
    {"logits": F((3, 0, C)), "labels": Labels((3, 0))},
    {"sample_weight": F((3, 1)), "where": Mask((3, 0))},
    none_shape=(3, 0),
  ),
  "sparse_categorical_focal_loss_with_logits": Case(
    xentax.sparse_categorical_focal_loss_with_logits,
    SPARSE,
    {**WEIGHTED, "gamma": F(()), "class_weights": F((C,)), "label_smoothing": F(())},
  ),
  # Each vocabulary-parallel case passes a non-empty replicated operand (the class weights)
  # to shard_map: a jitted shard_map whose operands are all zero-size fails inside XLA
  # (see test_jitted_shard_map_of_only_empty_operands_is_an_xla_limitation).
  "vocab_parallel_cross_entropy": Case(
    _vocab_parallel_cross_entropy,
    {"logits_shard": F((0, V)), "labels": Labels(BATCH), "class_weights": F((V,))},
    {**WEIGHTED, "label_smoothing": F(()), "z_loss": F(())},
  ),
  "vocab_parallel_fused_linear_cross_entropy": Case(
    _vocab_parallel_fused,
    {"hidden": F((0, D)), "weight_shard": F((D, V)), "labels": Labels(BATCH)},
    {**WEIGHTED, "class_weights": F((V,)), "label_smoothing": F(()), "z_loss": F(())},
  ),
}
# Public functions that are not losses, each tested on empty inputs below.
NOT_LOSSES = {
  "adaptive_log_softmax",  # log-probabilities, not a loss: its loss is in CASES
  "checked",
  "effective_number_class_weights",
  "inverse_frequency_class_weights",
}


def _public_functions() -> set[str]:
  names = {*xentax.__all__, *xentax.losses.__all__}
  names = {name for name in names if not isinstance(getattr(xentax, name), type(xentax))}
  return names | {f"parallel.{name}" for name in xentax.parallel.__all__}


def _case_names() -> set[str]:
  names = {name.split("/")[0] for name in CASES}
  return {f"parallel.{n}" if n.startswith("vocab_parallel") else n for n in names}


def test_every_public_loss_has_an_empty_batch_case():
  missing = _public_functions() - _case_names() - NOT_LOSSES
  assert not missing, f"public losses without an empty-batch case in CASES: {sorted(missing)}"
  unknown = (_case_names() | NOT_LOSSES) - _public_functions()
  assert not unknown, f"CASES names that are not public xentax functions: {sorted(unknown)}"


def _build(specs: dict, dtype) -> tuple[dict, dict]:
  """(differentiable float inputs, other inputs) for the specs."""
  floats, data = {}, {}
  for name, spec in specs.items():
    if isinstance(spec, F):
      floats[name] = np.full(spec.shape, 0.5, dtype)
    elif isinstance(spec, Fixed):
      data[name] = np.full(spec.shape, 0.5, dtype)
    elif isinstance(spec, Labels):
      data[name] = np.zeros(spec.shape, np.int32)
    else:
      data[name] = np.ones(spec.shape, bool)
  return floats, data


def _loss_fn(case: Case, reduction: str, option_names):
  positional = tuple(case.inputs)

  def loss(floats, data):
    merged = {**floats, **data}
    args = [merged[name] for name in positional]
    options = {name: merged[name] for name in option_names}
    return case.fn(*args, **options, **case.static, reduction=reduction)

  return loss


def _check(name, reduction, jit, dtype, with_options):
  case = CASES[name]
  specs = {**case.inputs, **(case.options if with_options else {})}
  floats, data = _build(specs, dtype)
  loss = _loss_fn(case, reduction, tuple(case.options) if with_options else ())

  def total(floats, data):
    return jnp.sum(loss(floats, data))

  grad = jax.grad(total)
  if jit:
    loss, grad = jax.jit(loss), jax.jit(grad)
  value, grads = loss(floats, data), grad(floats, data)

  want_dtype = jnp.float64 if dtype == np.float64 else jnp.float32
  assert value.dtype == want_dtype, (value.dtype, want_dtype)
  if reduction == "none":
    assert value.shape == case.none_shape
  else:
    assert value.shape == ()
    assert float(value) == 0.0  # exactly: nothing is summed, and 0 / 0 is taken as 0
  assert set(grads) == set(floats)
  for key, g in grads.items():
    # Shapes and values through jnp: an eager shard_map's zero-size outputs do not convert
    # to NumPy (jax 0.10.2 builds their shards with the global shape).
    assert g.shape == floats[key].shape and g.dtype == floats[key].dtype, key
    assert bool(jnp.all(g == 0)), (key, g)  # finite, and zero: no example to move


# (name, reduction) for every reduction each case supports.
SUPPORTED = [(name, reduction) for name in sorted(CASES) for reduction in CASES[name].reductions]
# The gradient of a "none" reduction has a zero-size cotangent: the backward shard_map then
# has only zero-size operands (see the XLA limitation below).
XLA_EMPTY_OPERANDS = {("vocab_parallel_cross_entropy", "none", True)}


# An eager shard_map dispatches every operation to each device: its reductions differ only in
# the last step, which the jit cases check for every reduction, so eagerly the default runs,
# and "none" where the jit case cannot.
EAGER_ONLY = {
  "vocab_parallel_cross_entropy": ("mean", "none"),
  "vocab_parallel_fused_linear_cross_entropy": ("mean",),
}


def _params(jit: bool):
  marks = pytest.mark.xfail(
    raises=jax.errors.JaxRuntimeError, strict=True, reason="XLA: shard_map of only empty operands"
  )
  return [
    pytest.param(
      name,
      reduction,
      jit,
      marks=marks if (name, reduction, jit) in XLA_EMPTY_OPERANDS else (),
      id=f"{name}-{reduction}-{'jit' if jit else 'eager'}",
    )
    for name, reduction in SUPPORTED
    if jit or reduction in EAGER_ONLY.get(name, (reduction,))
  ]


# jit cases first: the fast loop's covering subset (conftest.each_choice) then takes the cheap
# compiled case for most losses and eager ones only where a value needs it.
@pytest.mark.parametrize("name, reduction, jit", _params(True) + _params(False))
def test_empty_batch_gives_zero_loss_and_zero_gradients(name, reduction, jit):
  _check(name, reduction, jit, np.float32, with_options=False)


@pytest.mark.parametrize("name, reduction", SUPPORTED)
def test_empty_batch_with_traced_options(name, reduction):
  """Sample weights, masks, class weights and float options as traced (jit) arguments,
  float64: the traced-value checks must not index into an empty array."""
  _check(name, reduction, True, np.float64, with_options=True)


@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize(
  "name", ["binary_cross_entropy", "sparse_categorical_cross_entropy", "fused_linear_cross_entropy"]
)
def test_checked_losses_on_an_empty_batch(name, jit):
  case = CASES[name]
  floats, data = _build(case.inputs, np.float64)
  loss = xentax.checked(case.fn)
  if jit:
    loss = jax.jit(loss)
  value = loss(*({**floats, **data}[key] for key in case.inputs))
  assert value.shape == () and float(value) == 0.0


@pytest.mark.parametrize(
  "fn", [xentax.inverse_frequency_class_weights, xentax.effective_number_class_weights]
)
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_class_weights_from_no_labels_are_zero(fn, jit):
  """No class is present, so every weight is 0 (the helpers' rule for absent classes)."""
  if jit:
    fn = jax.jit(fn, static_argnums=1)
  weights = fn(np.zeros((0,), np.int32), C)
  np.testing.assert_array_equal(weights, np.zeros(C, np.float32))


@pytest.mark.xfail(raises=jax.errors.JaxRuntimeError, strict=True)
def test_jitted_shard_map_of_only_empty_operands_is_an_xla_limitation():
  """jax 0.10.2: a jitted shard_map whose operands are all zero-size fails in XLA's Shardy
  export ("expected at least one operand of @xla.sdy.manual_computation_body to be produced
  by a xla.sdy.GlobalToLocalShape"), before any xentax code runs on a device; a loss inside
  cannot avoid it. Strict: when jax fixes it, this test fails and the vocabulary-parallel
  cases above can drop their non-empty class-weights operand."""
  logits, labels = np.zeros((0, V), np.float32), np.zeros((0,), np.int32)
  jax.jit(_vocab_parallel_cross_entropy, static_argnames="reduction")(
    logits, labels, reduction="sum"
  ).block_until_ready()
