"""Causal-LM helper: shifted labels, token vs sequence normalisation."""

import jax
import numpy as np
import pytest
from jax.test_util import check_grads

import xentax
from tests import _reference as ref
from tests._tolerances import tol
from xentax import gradcheck

rng = np.random.default_rng(4)
B, L, V = 3, 6, 7
Z = rng.normal(size=(B, L, V))
Y = rng.integers(0, V, (B, L))
Y[0, 3:] = -100  # padding: sequence 0 keeps fewer tokens
Y[2, 1:] = -100  # sequence 2 keeps none (the label at t = 0 is never predicted)


@pytest.mark.parametrize("normalization", ["token", "sequence"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("shift", [1, 2])
def test_matches_reference(normalization, reduction, shift):
  kw = dict(shift=shift, normalization=normalization, ignore_index=-100, reduction=reduction)
  np.testing.assert_allclose(
    xentax.causal_lm_cross_entropy_with_logits(Z, Y, **kw),
    ref.causal_lm_cross_entropy_with_logits(Z, Y, **kw),
    **tol("float64"),
  )


def test_token_normalisation_is_the_flat_cross_entropy():
  flat = xentax.sparse_categorical_cross_entropy_with_logits(
    Z[:, :-1].reshape(-1, V), Y[:, 1:].reshape(-1), ignore_index=-100
  )
  np.testing.assert_allclose(
    xentax.causal_lm_cross_entropy_with_logits(Z, Y, ignore_index=-100), flat, **tol("float64")
  )


def test_sequence_normalisation_differs_when_lengths_differ():
  token = xentax.causal_lm_cross_entropy_with_logits(Z, Y, ignore_index=-100)
  sequence = xentax.causal_lm_cross_entropy_with_logits(
    Z, Y, ignore_index=-100, normalization="sequence"
  )
  assert abs(float(token) - float(sequence)) > 1e-3


@pytest.mark.parametrize("normalization", ["token", "sequence"])
def test_gradient_matches_closed_form(normalization):
  where = np.ones((B, L), bool)
  where[1, 4] = False
  kw = dict(normalization=normalization, ignore_index=-100, where=where)
  g = jax.grad(xentax.causal_lm_cross_entropy_with_logits)(Z, Y, **kw)
  np.testing.assert_allclose(
    g, gradcheck.causal_lm_cross_entropy_with_logits_grad(Z, Y, **kw), **tol("float64", "grad")
  )
  assert np.all(g[:, -1] == 0)  # the last logits predict nothing
  check_grads(lambda z: xentax.causal_lm_cross_entropy_with_logits(z, Y, **kw), (Z,), order=1)


def test_jit():
  f = jax.jit(lambda z: xentax.causal_lm_cross_entropy_with_logits(z, Y, ignore_index=-100))
  np.testing.assert_allclose(
    f(Z), ref.causal_lm_cross_entropy_with_logits(Z, Y, ignore_index=-100), **tol("float64")
  )


def test_bad_inputs():
  f = xentax.causal_lm_cross_entropy_with_logits
  with pytest.raises(ValueError, match="shift=0"):
    f(Z, Y, shift=0)
  with pytest.raises(ValueError, match="shift=6"):
    f(Z, Y, shift=6)
  with pytest.raises(ValueError, match="normalization='batch'"):
    f(Z, Y, normalization="batch")
  with pytest.raises(ValueError, match="the helper shifts them"):
    f(Z, Y[:, 1:])


# --- sample_weight ------------------------------------------------------------------------
SW = rng.uniform(0.0, 2.0, (B, L))
SW[1, 2] = 0.0


@pytest.mark.parametrize("reduction", ["none", "sum", "mean", "sum_over_batch_size"])
@pytest.mark.parametrize("normalization", ["token", "sequence"])
@pytest.mark.parametrize("weights", [SW, SW[:, :1]], ids=["per_token", "per_sequence"])
def test_sample_weight_matches_reference(reduction, normalization, weights):
  kw = dict(
    ignore_index=-100, normalization=normalization, sample_weight=weights, reduction=reduction
  )
  np.testing.assert_allclose(
    xentax.causal_lm_cross_entropy_with_logits(Z, Y, **kw),
    ref.causal_lm_cross_entropy_with_logits(Z, Y, **kw),
    **tol("float64"),
  )


def test_per_sequence_weight_cancels_in_sequence_normalization():
  kw = dict(ignore_index=-100, normalization="sequence")
  np.testing.assert_allclose(
    xentax.causal_lm_cross_entropy_with_logits(Z, Y, sample_weight=SW[:, :1] + 1.0, **kw),
    xentax.causal_lm_cross_entropy_with_logits(Z, Y, **kw),
    **tol("float64"),
  )


@pytest.mark.parametrize("normalization", ["token", "sequence"])
def test_sample_weight_gradient(normalization):
  def f(z, w):
    return xentax.causal_lm_cross_entropy_with_logits(
      z, Y, ignore_index=-100, normalization=normalization, sample_weight=w
    )

  check_grads(jax.jit(f), (Z, SW + 0.1), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


def test_a_bad_label_is_named_by_this_loss_at_its_own_position():
  z = np.zeros((1, 5, 7))
  with pytest.raises(
    ValueError, match=r"^causal_lm_cross_entropy_with_logits: .* at position \(0, 3\)"
  ):
    xentax.causal_lm_cross_entropy_with_logits(z, np.array([[1, 2, 3, 9, 5]]))
  # The first `shift` labels are never targets: anything there is accepted.
  np.testing.assert_allclose(
    xentax.causal_lm_cross_entropy_with_logits(z, np.array([[9, 9, 3, 4, 5]]), shift=2),
    np.log(7),
    rtol=1e-12,
  )
