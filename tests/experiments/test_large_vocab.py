"""The large-vocabulary experiment: fused and full-logits heads train alike; fused needs less."""

import json

import jax
import numpy as np
import pytest

from xentax import data, experiments
from xentax.records import read_jsonl
from xentax.training import next_word_mlp

pytestmark = pytest.mark.slow  # runs an experiment


def _reference_first_loss(config):
  """Float64 NumPy cross-entropy of the initial model on the first batch (no xentax)."""
  ds = data.synthetic_next_word(
    vocab_size=config.vocab_size,
    num_tokens=config.num_tokens,
    context=config.context,
    seed=config.seed,
  )
  model = next_word_mlp(config.vocab_size, config.context, embed_dim=8, hidden=16)
  p = {k: np.asarray(v, np.float64) for k, v in model.init(jax.random.key(config.seed)).items()}
  rng = np.random.default_rng(config.seed)
  idx = rng.permutation(len(ds.y_train))[: config.batch_size]
  x, y = ds.x_train[idx], ds.y_train[idx]
  h = np.tanh(p["embed"][x].reshape(len(x), -1) @ p["w_hidden"] + p["b_hidden"])
  z = h @ p["w_out"] + p["b_out"]
  m = z.max(axis=1)
  lse = m + np.log(np.exp(z - m[:, None]).sum(axis=1))
  return float(np.mean(lse - z[np.arange(len(y)), y]))


def test_fused_and_full_heads_trace_the_same_curve_and_fused_has_fewer_temporaries(tmp_path):
  # one smoke run for every check: under pytest-xdist a shared fixture would run once per worker
  root = tmp_path
  result = experiments.run("large_vocab", root, scale="smoke")
  config = experiments.HeadComparisonConfig(
    **{
      k: v
      for k, v in json.loads((root / "large_vocab" / "config.json").read_text()).items()
      if k != "scale"
    }
  )
  assert (config.embed_dim, config.hidden) == (8, 16)  # as in the reference above
  assert [row.run for row in result.rows] == ["fused", "full"]
  fused, full = result.row("fused").extra, result.row("full").extra
  summary = result.info

  records = read_jsonl(root / "large_vocab" / "metrics.jsonl")
  assert [r["step"] for r in records] == list(range(1, config.steps + 1))
  fused_curve = np.array([r["fused_loss"] for r in records])
  full_curve = np.array([r["full_loss"] for r in records])
  # both start at the float64 reference and stay together up to float32 rounding
  reference = _reference_first_loss(config)
  assert fused_curve[0] == pytest.approx(reference, rel=1e-5)
  assert full_curve[0] == pytest.approx(reference, rel=1e-5)
  np.testing.assert_allclose(fused_curve, full_curve, rtol=1e-5)
  assert summary["max_abs_loss_diff"] == pytest.approx(np.max(np.abs(fused_curve - full_curve)))
  assert full_curve[-1] < full_curve[0]  # it trained
  assert result.row("fused").test_loss == pytest.approx(result.row("full").test_loss, rel=1e-4)

  # the full step holds the [batch, V] logits and their gradient; the fused one does not
  logits_bytes = config.batch_size * config.vocab_size * 4
  assert summary["logits_bytes"] == logits_bytes
  assert full["temp_bytes"] >= logits_bytes
  assert fused["temp_bytes"] < logits_bytes / 4
  assert full["loss_temp_bytes"] >= logits_bytes
  assert fused["loss_temp_bytes"] < logits_bytes / 2  # two [batch, block] slices, V / block = 8
  assert fused["argument_bytes"] == full["argument_bytes"]
  assert fused["median_step_s"] > 0 and full["median_step_s"] > 0

  # the run folder
  folder = root / "large_vocab"
  written = json.loads((folder / "config.json").read_text())
  assert written["scale"] == "smoke" and written["block_size"] == 512
  written = json.loads((folder / "summary.json").read_text())
  assert written["name"] == "large_vocab" and written["rows"][0]["run"] == "fused"
  assert (root / result.rows[0].curves).stat().st_size > 5_000
  assert experiments.EXPERIMENTS["large_vocab"].report_section == "large_vocabularies"


def test_unknown_head_is_a_clear_error():
  with pytest.raises(ValueError, match="unknown head 'tied'"):
    experiments.head_loss("tied")
