"""Gradient filtering (Cut Cross-Entropy, Wijmans et al. 2024, section 4.3) on a trained model.

CCE skips the backward matmuls of a (tokens x vocabulary) tile of the logits when every
softmax entry in it is below a threshold (2^-12 for bf16 in the paper): the target's
``-1`` is applied apart from the tiles, so such a tile's ``d logits`` is below ``eps / N``
everywhere. This study trains the deck's next-word model (Bengio's MLP) on the
standard-library docstrings with ``xentax.fused_linear_cross_entropy``, then on held-out
tokens measures, for several thresholds and tile shapes:

  * the fraction of tiles that could be skipped (the work the two backward matmuls of the
    "vocab" schedule would save, at most half of its four matmuls);
  * the relative error that skipping them makes in ``d hidden`` and ``d weight``.

Run: ``python experiments/benchmarks/grad_filter_study.py`` (CPU, a few minutes).
"""

import time

import jax
import numpy as np
import optax

import xentax
from xentax import data as xdata
from xentax.training import next_word_hidden, next_word_mlp

VOCAB, CONTEXT, EMBED, HIDDEN = 8192, 3, 64, 256
BATCH, STEPS, LR = 512, 1500, 3e-3
HELD_OUT = 2048
THRESHOLDS = {"2^-12": 2.0**-12, "2^-16": 2.0**-16, "2^-20": 2.0**-20}
# (tokens, vocabulary columns) per tile: the fused loss's own blocks (every token of the
# batch against 1024 columns), then CCE-like tiles.
TILES = [(HELD_OUT, 1024), (256, 512), (64, 256), (16, 128)]


def train():
  dataset = xdata.next_word(vocab_size=VOCAB, context=CONTEXT)
  model = next_word_mlp(VOCAB, CONTEXT, embed_dim=EMBED, hidden=HIDDEN)
  params = model.init(jax.random.key(0))
  optimizer = optax.adam(LR)
  opt_state = optimizer.init(params)

  def objective(p, x, y):
    h = next_word_hidden(p, x)
    return xentax.fused_linear_cross_entropy(h, p["w_out"], y, bias=p["b_out"])

  @jax.jit
  def step(params, opt_state, x, y):
    value, grads = jax.value_and_grad(objective)(params, x, y)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  rng = np.random.default_rng(0)
  n = len(dataset.y_train)
  start = time.perf_counter()
  for i in range(STEPS):
    idx = rng.integers(0, n, BATCH)
    params, opt_state, value = step(params, opt_state, dataset.x_train[idx], dataset.y_train[idx])
    if i % 500 == 0 or i == STEPS - 1:
      print(f"step {i}: train loss {float(value):.3f} ({time.perf_counter() - start:.0f} s)")
  return dataset, params


def main():
  dataset, params = train()
  x, y = dataset.x_test[:HELD_OUT], dataset.y_test[:HELD_OUT]
  h = np.asarray(next_word_hidden(params, x), np.float64)
  w = np.asarray(params["w_out"], np.float64)
  logits = h @ w + np.asarray(params["b_out"], np.float64)
  logits -= logits.max(-1, keepdims=True)
  p = np.exp(logits)
  p /= p.sum(-1, keepdims=True)
  test_loss = -np.mean(np.log(p[np.arange(len(y)), y]))
  onehot = np.zeros_like(p)
  onehot[np.arange(len(y)), y] = 1.0
  d_logits = (p - onehot) / len(y)  # the mean loss's gradient
  exact_dh, exact_dw = d_logits @ w.T, h.T @ d_logits
  top = np.sort(p, axis=-1)[:, ::-1]
  print(
    f"\nheld-out tokens: {len(y)}, V = {VOCAB}, test loss {test_loss:.3f} nats; "
    f"median top-1 probability {np.median(top[:, 0]):.3f}, median mass outside the top 100 "
    f"{np.median(1 - top[:, :100].sum(-1)):.3f}"
  )
  for name, eps in THRESHOLDS.items():
    print(f"entries with p < {name}: {np.mean(p < eps):.3f}")

  print("\n| threshold | tile (tokens x columns) | tiles skippable ", end="")
  print("| rel. error d hidden | rel. error d weight |")
  print("|---|---|---|---|---|")
  for name, eps in THRESHOLDS.items():
    for rows, cols in TILES:
      n_r, n_c = len(y) // rows, VOCAB // cols
      tile_max = p[: n_r * rows, : n_c * cols].reshape(n_r, rows, n_c, cols).max(axis=(1, 3))
      skip = tile_max < eps
      keep = np.repeat(np.repeat(~skip, rows, axis=0), cols, axis=1)
      filtered = (p * keep - onehot) / len(y)  # the target's -1 is never filtered
      dh, dw = filtered @ w.T, h.T @ filtered
      err_h = np.linalg.norm(dh - exact_dh) / np.linalg.norm(exact_dh)
      err_w = np.linalg.norm(dw - exact_dw) / np.linalg.norm(exact_dw)
      print(f"| {name} | {rows} x {cols} | {skip.mean():.3f} | {err_h:.1e} | {err_w:.1e} |")


if __name__ == "__main__":
  main()
