"""Closed forms of _divergence_grads and _nll_grads against differences of the NumPy references.

Independent of xentax's losses: each closed form is compared with central differences of
the float64 reference in tests/_reference.py, including the sides and options the matrix
does not reach (the teacher's gradient, JSD's Liger end points, distillation, causal LM).
"""

import numpy as np
import pytest

from tests import _reference as ref
from xentax import gradcheck

rng = np.random.default_rng(12)
S = rng.normal(size=(4, 5)) * 1.5
T = rng.normal(size=(4, 5)) * 1.5
Y = np.array([0, 3, -100, 2])
WHERE = np.array([True, True, True, False])


def _differences(f, x, h=1e-6):
  g = np.zeros_like(x)
  for i in np.ndindex(*x.shape):
    e = np.zeros_like(x)
    e[i] = h
    g[i] = (np.sum(f(x + e)) - np.sum(f(x - e))) / (2 * h)
  return g


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_kl_teacher_side(reduction):
  kw = dict(temperature=1.7, where=WHERE, reduction=reduction)
  closed = gradcheck.kl_divergence_with_logits_teacher_grad(S, T, **kw)
  numeric = _differences(lambda t: ref.kl_divergence_with_logits(S, t, **kw), T)
  np.testing.assert_allclose(closed, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("beta", [0.0, 0.2, 1.0])
def test_jsd_end_points_and_interior(beta):
  kw = dict(beta=beta, temperature=0.8, where=WHERE)
  closed = gradcheck.jensen_shannon_divergence_with_logits_grad(S, T, **kw)
  numeric = _differences(lambda s: ref.jensen_shannon_divergence_with_logits(s, T, **kw), S)
  np.testing.assert_allclose(closed, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_distillation(reduction):
  kw = dict(temperature=2.5, alpha=0.3, ignore_index=-100, where=WHERE, reduction=reduction)
  closed = gradcheck.distillation_loss_grad(S, T, Y, **kw)
  numeric = _differences(lambda s: ref.distillation_loss(s, T, Y, **kw), S)
  np.testing.assert_allclose(closed, numeric, rtol=1e-6, atol=1e-8)
  assert np.all(np.asarray(closed)[2:] == 0)  # ignored and masked rows


@pytest.mark.parametrize("normalization", ["token", "sequence"])
@pytest.mark.parametrize("shift", [1, 2])
def test_causal_lm(normalization, shift):
  z = rng.normal(size=(2, 5, 4))
  y = rng.integers(0, 4, (2, 5))
  y[1, 3:] = -1
  kw = dict(shift=shift, normalization=normalization, ignore_index=-1)
  closed = gradcheck.causal_lm_cross_entropy_with_logits_grad(z, y, **kw)
  numeric = _differences(lambda a: ref.causal_lm_cross_entropy_with_logits(a, y, **kw), z)
  np.testing.assert_allclose(closed, numeric, rtol=1e-6, atol=1e-8)
