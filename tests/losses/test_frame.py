"""The entry frame: torch and Keras habits answered with xentax's names, signatures explicit."""

import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xentax
from xentax import parallel

CANDIDATES = [getattr(xentax.losses, n) for n in xentax.losses.__all__] + [
  parallel.vocab_parallel_cross_entropy,
  parallel.vocab_parallel_fused_linear_cross_entropy,
]
FRAMED = sorted((f for f in CANDIDATES if hasattr(f, "__wrapped__")), key=lambda f: f.__name__)
NOT_LOSSES = {"checked", "inverse_frequency_class_weights", "effective_number_class_weights"}
Z, Y = jnp.zeros((2, 3)), jnp.array([0, 1])


def test_every_loss_goes_through_the_frame():
  names = {f.__name__ for f in FRAMED}
  assert names >= set(xentax.losses.__all__) - NOT_LOSSES
  assert len(FRAMED) == len(CANDIDATES) - len(NOT_LOSSES)


@pytest.mark.parametrize("fn", FRAMED, ids=lambda f: f.__name__)
def test_signatures_stay_explicit(fn):
  kinds = {p.kind for p in inspect.signature(fn).parameters.values()}
  assert inspect.Parameter.VAR_KEYWORD not in kinds


@pytest.mark.parametrize("fn", FRAMED, ids=lambda f: f.__name__)
def test_foreign_keywords_name_xentax_s(fn):
  params = inspect.signature(fn).parameters
  weight = "weights=" if "weights" in params else "class_weights="
  for keyword, expected in (
    ("weight", weight),
    ("from_logits", "_with_logits"),
    ("size_average", "reduction="),
    ("y_true", "positionally"),
  ):
    if keyword in params:
      continue
    with pytest.raises(TypeError) as err:
      fn(None, None, **{keyword: 1})  # refused before anything runs
    message = str(err.value)
    assert message.startswith(f"{fn.__name__}: unexpected keyword argument '{keyword}'")
    assert expected in message


def test_a_misspelt_keyword_gets_the_closest_parameter():
  fn = xentax.sparse_categorical_cross_entropy_with_logits
  with pytest.raises(TypeError, match=r"'label_smothing' \(did you mean label_smoothing\?\)"):
    fn(Z, Y, label_smothing=0.1)
  with pytest.raises(TypeError, match=r"'colour' \(not an option of this loss\)"):
    fn(Z, Y, colour=1)


@pytest.mark.parametrize("reduction, spelling", [("batchmean", '"mean"'), ("auto", "sum_over")])
def test_a_foreign_reduction_names_xentax_s(reduction, spelling):
  with pytest.raises(ValueError, match=spelling):
    xentax.kl_divergence_with_logits(Z, Z, reduction=reduction)


@pytest.mark.parametrize(
  "fn",
  [
    xentax.sparse_categorical_cross_entropy_with_logits,
    xentax.sparse_categorical_focal_loss_with_logits,
    xentax.poly1_cross_entropy_with_logits,
    xentax.nll_loss,
  ],
  ids=lambda f: f.__name__,
)
def test_torch_padding_labels_without_ignore_index_get_the_hint(fn):
  labels = np.array([0, -100])
  with pytest.raises(ValueError, match="pass ignore_index=-100"):
    fn(Z, labels)
  assert float(fn(Z, labels, ignore_index=-100)) == pytest.approx(float(fn(Z[:1], labels[:1])))


def test_other_bad_labels_get_no_padding_hint():
  with pytest.raises(ValueError) as err:
    xentax.sparse_categorical_cross_entropy_with_logits(Z, jnp.array([0, 5]))
  assert "ignore_index" not in str(err.value)


def test_the_frame_adds_nothing_to_the_program():
  fn = xentax.sparse_categorical_cross_entropy_with_logits
  framed = jax.jit(fn).lower(Z, Y).as_text()
  bare = jax.jit(fn.__wrapped__).lower(Z, Y).as_text()
  assert re.findall(r"stablehlo\.\w+", framed) == re.findall(r"stablehlo\.\w+", bare)
