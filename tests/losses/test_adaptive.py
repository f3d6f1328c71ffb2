"""``adaptive_softmax_cross_entropy`` and ``adaptive_log_softmax`` against
``torch.nn.AdaptiveLogSoftmaxWithLoss`` (values, log-probabilities, every gradient), a float64
NumPy reference, and their bad-input contract."""

import jax
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import xentax

CUTOFFS = [4, 9, 15]
V, D = 22, 8


def _torch_module(head_bias, seed=0):
  torch.manual_seed(seed)
  return torch.nn.AdaptiveLogSoftmaxWithLoss(
    D, V, CUTOFFS, div_value=2.0, head_bias=head_bias
  ).double()


def _weights(module):
  """torch's parameters in xentax's ``x @ W`` layout."""
  head = module.head.weight.detach().numpy().T
  bias = None if module.head.bias is None else module.head.bias.detach().numpy()
  tails = [(t[0].weight.detach().numpy().T, t[1].weight.detach().numpy().T) for t in module.tail]
  return head, tails, bias


@pytest.mark.parametrize("head_bias", [False, True])
def test_matches_torch_values_log_probs_and_every_gradient(head_bias):
  module = _torch_module(head_bias)
  rng = np.random.default_rng(0)
  hidden = rng.normal(size=(12, D))
  labels = np.array([0, 3, 4, 8, 9, 14, 15, 21, 1, 10, 16, 20])  # every cluster and edge
  x = torch.tensor(hidden, requires_grad=True)
  out = module(x, torch.as_tensor(labels))
  out.loss.backward()
  head, tails, bias = _weights(module)

  def loss(h, head, tails, bias):
    return xentax.adaptive_softmax_cross_entropy(
      h, head, tails, labels, cutoffs=CUTOFFS, head_bias=bias
    )

  value, grads = jax.value_and_grad(loss, argnums=(0, 1, 2, 3))(hidden, head, tails, bias)
  np.testing.assert_allclose(value, out.loss.item(), rtol=1e-12)
  np.testing.assert_allclose(grads[0], x.grad.numpy(), rtol=1e-10, atol=1e-13)
  np.testing.assert_allclose(grads[1], module.head.weight.grad.numpy().T, rtol=1e-10, atol=1e-13)
  for (d_proj, d_out), t in zip(grads[2], module.tail, strict=True):
    np.testing.assert_allclose(d_proj, t[0].weight.grad.numpy().T, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(d_out, t[1].weight.grad.numpy().T, rtol=1e-10, atol=1e-13)
  if head_bias:
    np.testing.assert_allclose(grads[3], module.head.bias.grad.numpy(), rtol=1e-10, atol=1e-13)
  per_example = xentax.adaptive_softmax_cross_entropy(
    hidden, head, tails, labels, cutoffs=CUTOFFS, head_bias=bias, reduction="none"
  )
  np.testing.assert_allclose(-per_example, out.output.detach().numpy(), rtol=1e-12)
  log_p = xentax.adaptive_log_softmax(hidden, head, tails, cutoffs=CUTOFFS, head_bias=bias)
  np.testing.assert_allclose(log_p, module.log_prob(x).detach().numpy(), rtol=1e-12, atol=1e-14)
  np.testing.assert_allclose(np.exp(log_p).sum(-1), 1.0, rtol=1e-12)


def _reference(hidden, head, tails, bias, labels):
  """Float64 NumPy, one example at a time, from the formula."""

  def log_softmax(z):
    z = z - z.max()
    return z - np.log(np.exp(z).sum())

  bounds = [*CUTOFFS, V]
  out = []
  for h, y in zip(hidden, labels, strict=True):
    log_head = log_softmax(h @ head + (0 if bias is None else bias))
    if y < bounds[0]:
      out.append(-log_head[y])
      continue
    i = next(i for i in range(len(tails)) if bounds[i] <= y < bounds[i + 1])
    proj, o = tails[i]
    out.append(-(log_head[bounds[0] + i] + log_softmax(h @ proj @ o)[y - bounds[i]]))
  return np.array(out)


@settings(max_examples=8, deadline=None)  # each shape and option set compiles once
@given(
  seed=st.integers(0, 2**16),
  n=st.integers(1, 9),
  with_mask=st.booleans(),
  with_weights=st.booleans(),
  reduction=st.sampled_from(["mean", "sum", "sum_over_batch_size", "none"]),
)
def test_matches_the_reference_with_every_option(seed, n, with_mask, with_weights, reduction):
  rng = np.random.default_rng(seed)
  head, tails, bias = _weights(_torch_module(True, seed % 7))
  hidden = rng.normal(size=(n, D))
  labels = rng.integers(0, V, n)
  kept = rng.random(n) < 0.7 if with_mask else np.ones(n, bool)
  weights = rng.uniform(0.5, 2.0, n) if with_weights else np.ones(n)
  hidden = np.where(kept[:, None], hidden, np.nan)  # dropped rows may hold anything
  got = jax.jit(
    lambda h: xentax.adaptive_softmax_cross_entropy(
      h,
      head,
      tails,
      labels,
      cutoffs=CUTOFFS,
      head_bias=bias,
      where=kept,
      sample_weight=weights if with_weights else None,
      reduction=reduction,
    )
  )(hidden)
  losses = np.where(kept, weights * _reference(np.nan_to_num(hidden), head, tails, bias, labels), 0)
  want = {
    "none": losses,
    "sum": losses.sum(),
    "mean": losses.sum() / max((weights * kept).sum(), 1e-300) if kept.any() else 0.0,
    "sum_over_batch_size": losses.sum() / kept.sum() if kept.any() else 0.0,
  }[reduction]
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _call(**kw):
  head, tails, bias = _weights(_torch_module(True))
  args = {
    "hidden": np.ones((3, D)),
    "head_weight": head,
    "tail_weights": tails,
    "labels": np.array([0, 5, 21]),
    "cutoffs": CUTOFFS,
    "head_bias": bias,
  }
  args.update(kw)
  positional = [args.pop(k) for k in ("hidden", "head_weight", "tail_weights", "labels")]
  return xentax.adaptive_softmax_cross_entropy(*positional, **args)


@pytest.mark.parametrize(
  "bad, match",
  [
    ({"labels": np.array([0, 5, 22])}, r"labels must lie in \[0, 22\)"),
    ({"cutoffs": [4, 4, 15]}, "increasing"),
    ({"cutoffs": [0, 9, 15]}, "positive"),
    ({"cutoffs": [4, 9]}, "2 clusters"),
    ({"cutoffs": [4, 9, 16]}, r"classes \[9, 16\)"),
    ({"cutoffs": 4}, "sequence of ints"),
    ({"head_weight": np.ones((D, 6))}, r"shortlist \+ clusters"),
    ({"head_bias": np.ones(6)}, "head_bias has shape"),
    ({"labels": np.array([0, 5])}, "needs labels of shape"),
    (
      {
        "tail_weights": [
          (np.ones((D, 4)), np.ones((4, 5))),
          (np.ones((D, 2)), np.ones((2, 6))),
          (np.ones((D, 2)), np.ones((3, 7))),
        ]
      },
      r"tail_weights\[2\]",
    ),
    ({"reduction": "batchmean"}, "reduction"),
  ],
)
def test_bad_input_is_named(bad, match):
  with pytest.raises(ValueError, match=match):
    _call(**bad)


@pytest.mark.filterwarnings("ignore:Initializing zero-element tensors")
def test_torch_default_div_value_with_a_width_zero_tail():
  # div_value=4 at D = 8 gives the third tail a projection of width 8 // 64 = 0.
  torch.manual_seed(1)
  module = torch.nn.AdaptiveLogSoftmaxWithLoss(D, V, CUTOFFS, div_value=4.0).double()
  assert module.tail[2][0].weight.shape[0] == 0
  hidden = np.random.default_rng(1).normal(size=(6, D))
  labels = np.array([0, 5, 10, 15, 21, 3])
  x = torch.tensor(hidden, requires_grad=True)
  out = module(x, torch.as_tensor(labels))
  out.loss.backward()
  head, tails, _ = _weights(module)

  def loss(h, head, tails):
    return xentax.adaptive_softmax_cross_entropy(h, head, tails, labels, cutoffs=CUTOFFS)

  value, (d_h, d_head) = jax.value_and_grad(loss, argnums=(0, 1))(hidden, head, tails)
  np.testing.assert_allclose(value, out.loss.item(), rtol=1e-12)
  np.testing.assert_allclose(d_h, x.grad.numpy(), rtol=1e-10, atol=1e-13)
  np.testing.assert_allclose(d_head, module.head.weight.grad.numpy().T, rtol=1e-10, atol=1e-13)
