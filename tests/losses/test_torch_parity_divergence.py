"""PyTorch parity for the divergences, distillation, nll_loss and poly-1 (skipped without torch).

Same role as ``test_torch_parity.py``: the float64 NumPy references are the tests of record;
this module confirms that xentax reads torch's documented semantics the way torch computes
them.
"""

import jax
import numpy as np
import pytest

import xentax

torch = pytest.importorskip("torch")
F = torch.nn.functional
rng = np.random.default_rng(11)


def _t(x):
  return torch.tensor(x)


@pytest.mark.parametrize("temperature", [1.0, 4.0])
def test_kl_is_torch_batchmean_kl_div_of_log_softmaxes(temperature):
  s, t = rng.normal(size=(9, 7)) * 3, rng.normal(size=(9, 7)) * 3
  want = F.kl_div(
    F.log_softmax(_t(s) / temperature, -1),
    F.log_softmax(_t(t) / temperature, -1),
    log_target=True,
    reduction="batchmean",
  ).numpy()
  got = xentax.kl_divergence_with_logits(s, t, temperature=temperature)
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
  per_example = F.kl_div(
    F.log_softmax(_t(s) / temperature, -1),
    F.log_softmax(_t(t) / temperature, -1),
    log_target=True,
    reduction="none",
  ).sum(-1)
  got = xentax.kl_divergence_with_logits(s, t, temperature=temperature, reduction="none")
  np.testing.assert_allclose(got, per_example.numpy(), rtol=1e-12, atol=1e-12)


def test_kl_gradients_to_both_sides_match_torch():
  s, t = rng.normal(size=(5, 6)), rng.normal(size=(5, 6))
  s_t, t_t = _t(s).requires_grad_(), _t(t).requires_grad_()
  loss = F.kl_div(
    F.log_softmax(s_t / 2, -1), F.log_softmax(t_t / 2, -1), log_target=True, reduction="batchmean"
  )
  loss.backward()
  g_s, g_t = jax.grad(xentax.kl_divergence_with_logits, argnums=(0, 1))(s, t, temperature=2.0)
  np.testing.assert_allclose(g_s, s_t.grad.numpy(), rtol=1e-10, atol=1e-14)
  np.testing.assert_allclose(g_t, t_t.grad.numpy(), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("beta", [0.0, 0.25, 0.5, 1.0])
def test_jsd_matches_liger_formula_in_torch(beta):
  """Liger's LigerJSD(beta) on log-softmaxes, written out in torch ops (Liger is GPU-only)."""
  s, t = rng.normal(size=(6, 5)) * 2, rng.normal(size=(6, 5)) * 2
  log_q, log_p = F.log_softmax(_t(s), -1), F.log_softmax(_t(t), -1)
  if beta == 0:
    want = F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
  elif beta == 1:
    want = F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
  else:
    log_m = torch.logsumexp(torch.stack([log_p + np.log(beta), log_q + np.log(1 - beta)]), dim=0)
    want = beta * F.kl_div(log_m, log_p, log_target=True, reduction="batchmean") + (
      1 - beta
    ) * F.kl_div(log_m, log_q, log_target=True, reduction="batchmean")
  got = xentax.jensen_shannon_divergence_with_logits(s, t, beta=beta)
  np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)


def test_distillation_matches_the_hinton_recipe_in_torch():
  s, t = rng.normal(size=(8, 6)) * 2, rng.normal(size=(8, 6)) * 2
  y = rng.integers(0, 6, 8)
  y[[1, 5]] = -100
  temperature, alpha = 3.0, 0.7
  kept = y != -100
  soft = F.kl_div(
    F.log_softmax(_t(s[kept]) / temperature, -1),
    F.log_softmax(_t(t[kept]) / temperature, -1),
    log_target=True,
    reduction="batchmean",
  )
  hard = F.cross_entropy(_t(s), _t(y), ignore_index=-100)
  want = alpha * temperature**2 * soft + (1 - alpha) * hard
  got = xentax.distillation_loss(s, t, y, temperature=temperature, alpha=alpha, ignore_index=-100)
  np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_matches_torch(reduction, weighted):
  x = F.log_softmax(_t(rng.normal(size=(10, 5, 3))), dim=1).numpy()
  y = rng.integers(0, 5, (10, 3))
  y[::4, 1] = -100
  w = np.linspace(0.3, 2.0, 5) if weighted else None
  want = F.nll_loss(
    _t(x), _t(y), weight=None if w is None else _t(w), ignore_index=-100, reduction=reduction
  ).numpy()
  got = xentax.nll_loss(x, y, axis=1, class_weights=w, ignore_index=-100, reduction=reduction)
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_causal_lm_token_mean_matches_torch_shifted_cross_entropy():
  z = rng.normal(size=(2, 7, 11))
  y = rng.integers(0, 11, (2, 7))
  y[1, 5:] = -100
  want = F.cross_entropy(
    _t(z[:, :-1]).reshape(-1, 11), _t(y[:, 1:]).reshape(-1), ignore_index=-100
  ).numpy()
  got = xentax.causal_lm_cross_entropy_with_logits(z, y, ignore_index=-100)
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# --- sample_weight: (F.xxx(reduction="none") * w).sum() / w.sum() and .mean() ------------


@pytest.mark.parametrize("reduction", ["mean", "sum_over_batch_size", "sum"])
def test_kl_sample_weight_matches_torch_weighted_reductions(reduction):
  s, t = rng.normal(size=(8, 5)) * 2, rng.normal(size=(8, 5)) * 2
  w = rng.uniform(0.0, 2.0, 8)
  per_example = F.kl_div(
    F.log_softmax(_t(s) / 2.0, -1), F.log_softmax(_t(t) / 2.0, -1), log_target=True,
    reduction="none",
  ).sum(-1) * _t(w)  # fmt: skip
  want = {
    "mean": per_example.sum() / _t(w).sum(),
    "sum_over_batch_size": per_example.mean(),
    "sum": per_example.sum(),
  }[reduction].numpy()
  got = xentax.kl_divergence_with_logits(
    s, t, temperature=2.0, sample_weight=w, reduction=reduction
  )
  np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum_over_batch_size"])
def test_nll_loss_sample_weight_matches_torch(reduction):
  x = np.asarray(jax.nn.log_softmax(rng.normal(size=(9, 4))))
  y = rng.integers(0, 4, 9)
  w = rng.uniform(0.0, 2.0, 9)
  per_example = F.nll_loss(_t(x), _t(y), reduction="none") * _t(w)
  want = per_example.sum() / _t(w).sum() if reduction == "mean" else per_example.mean()
  got = xentax.nll_loss(x, y, sample_weight=w, reduction=reduction)
  np.testing.assert_allclose(got, want.numpy(), rtol=1e-12, atol=1e-12)
