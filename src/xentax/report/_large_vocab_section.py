"""Report section: large vocabularies, fused linear cross-entropy against full logits.

The section measures the loss alone (temporaries against V, time), then trains the
next-word model with both losses (the ``large_vocab`` experiment).
"""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from xentax.bench import _fused  # noqa: E402
from xentax.training import experiments  # noqa: E402

MEMORY_TOKENS, MEMORY_DIM = 8192, 4096
MEMORY_VOCABS = (32768, 65536, 131072, 262144)
BLOCKS = (1024, 4096, 16384)
TEMP_TARGET_MB = 512
TIME_SIZE = {False: (2048, 512, 32768), True: (1024, 256, 16384)}


def _mb(nbytes) -> float:
  return nbytes / 1e6


def plot_memory(records, path: Path) -> None:
  fig, ax = plt.subplots(figsize=(6.5, 4))
  for name in dict.fromkeys(r["implementation"] for r in records):
    rows = [r for r in records if r["implementation"] == name]
    style = "o-" if name.startswith("full") else "s--"
    ax.plot(
      [r["vocab_size"] for r in rows], [_mb(r["temp_bytes"]) for r in rows], style, label=name
    )
  ax.axhline(TEMP_TARGET_MB, color="gray", lw=0.8, ls=":", label=f"{TEMP_TARGET_MB} MB target")
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xlabel("vocabulary size V")
  ax.set_ylabel("value-and-grad temporaries (MB)")
  ax.set_title(f"hidden [{MEMORY_TOKENS}, {MEMORY_DIM}] float32, compiled on CPU")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def section(out_dir: Path, quick: bool = False) -> str:
  memory = _fused.memory_sweep(MEMORY_TOKENS, MEMORY_DIM, MEMORY_VOCABS, BLOCKS)
  plot_memory(memory, out_dir / "large_vocab_memory.png")
  tokens, dim, vocab = TIME_SIZE[quick]
  timing = _fused.time_comparison(tokens, dim, vocab, (4096, 8192), repeats=3 if quick else 5)
  (out_dir / "large_vocab.json").write_text(json.dumps({"memory": memory, "time": timing}))

  names = list(dict.fromkeys(r["implementation"] for r in memory))
  lines = [
    "## Large vocabularies",
    "",
    "`xentax.fused_linear_cross_entropy(hidden, weight, labels)` against optax's",
    "`softmax_cross_entropy_with_integer_labels(hidden @ weight, labels)`. Temporaries of",
    f"`jit(value_and_grad(loss))` from `compiled.memory_analysis()`, hidden [{MEMORY_TOKENS},"
    f" {MEMORY_DIM}] float32 (MB; inputs and the gradients themselves are not temporaries):",
    "",
    "| implementation | " + " | ".join(f"V = {v}" for v in MEMORY_VOCABS) + " |",
    "|---|" + "---|" * len(MEMORY_VOCABS),
  ]
  for name in names:
    cells = []
    for vocab_size in MEMORY_VOCABS:
      row = [r for r in memory if r["implementation"] == name and r["vocab_size"] == vocab_size]
      cells.append(f"{_mb(row[0]['temp_bytes']):.0f}" if row else "-")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  target = next(
    r for r in memory if r["implementation"] == "fused (auto block)" and r["vocab_size"] == 131072
  )
  fused_temps = [
    _mb(r["temp_bytes"]) for r in memory if r["implementation"] == "fused (auto block)"
  ]
  met = _mb(target["temp_bytes"]) <= TEMP_TARGET_MB
  lines += [
    "",
    f"Target at V = 131072: fused temporaries <= {TEMP_TARGET_MB} MB: "
    f"{_mb(target['temp_bytes']):.0f} MB, **{'met' if met else 'not met'}**. Fused temporaries "
    f"from V = 32k to 256k: {min(fused_temps):.0f} to {max(fused_temps):.0f} MB (flat).",
    "",
    "![temporaries against vocabulary size](large_vocab_memory.png)",
    "",
    f"Value-and-grad time on this machine, hidden [{tokens}, {dim}] x weight [{dim}, {vocab}]"
    " float32, implementations interleaved in one process:",
    "",
    "| implementation | median s | spread | ratio to full logits | GFLOP/s (3 matmuls) |"
    " temporaries MB |",
    "|---|---|---|---|---|---|",
  ]
  for r in timing:
    lines.append(
      f"| {r['implementation']} | {r['median_s']:.3f} | {r['spread']:.0%} |"
      f" {r['ratio_to_full']:.2f} | {r['useful_gflops']:.1f} | {_mb(r['temp_bytes']):.0f} |"
    )
  lines += [
    "",
    "The fused loss does four matmuls (the backward pass recomputes each block's logits)",
    "where the full-logits loss does three, and in exchange never writes the [N, V] logits",
    "or their gradient.",
    "",
  ]
  summary = experiments.run("large_vocab", out_dir / "training", scale="quick" if quick else "full")
  lines += experiment_lines(summary)
  return "\n".join(lines)


def experiment_lines(summary: dict) -> list[str]:
  """Markdown for the ``large_vocab`` experiment's summary (figure path from the report)."""
  fused, full = summary["rows"]

  def row(label, key, fmt):
    return f"| {label} | {fmt(fused[key])} | {fmt(full[key])} |"

  def mb(x):
    return f"{_mb(x):.1f}"

  time_ratio = fused["median_step_s"] / full["median_step_s"]
  return [
    "### Training with a large vocabulary",
    "",
    f"The next-word MLP (experiment `large_vocab`, `python experiments/large_vocab.py`) with"
    f" V = {summary['vocab_size']}, trained twice for {summary['steps']} Adam steps of"
    f" {summary['batch_size']} tokens from the same parameters on the same batches: output"
    f" layer + `fused_linear_cross_entropy` (block {summary['block_size']}) against full"
    f" logits + `sparse_categorical_cross_entropy_with_logits`. Data: {summary['data']}. The"
    f" full logits are [{summary['batch_size']}, {summary['vocab_size']}] float32 ="
    f" {_mb(summary['logits_bytes']):.0f} MB.",
    "",
    "| | fused | full logits |",
    "|---|---|---|",
    row("final train loss (batch)", "final_train_loss", lambda x: f"{x:.6f}"),
    row(
      f"test loss ({summary['test_tokens']} tokens; unigram {summary['unigram_test_loss']:.3f})",
      "test_loss",
      lambda x: f"{x:.6f}",
    ),
    row("train-step temporaries (MB)", "temp_bytes", mb),
    row("loss value-and-grad temporaries (MB)", "loss_temp_bytes", mb),
    row("median step time (s)", "median_step_s", lambda x: f"{x:.3f}"),
    "",
    f"Loss curves agree: max |fused - full| over the {summary['steps']} steps ="
    f" {summary['max_abs_loss_diff']:.2g}. Step time fused / full = {time_ratio:.2f}"
    f" (spreads {fused['step_spread']:.0%} / {full['step_spread']:.0%}). Temporaries are bytes"
    " beyond the step's arguments and outputs; XLA may place the fused loss's"
    " [batch, block] slice in an output buffer of the same size, hence the second row.",
    "",
    f"![fused vs full-logits loss curves](training/{fused['curves']})",
    "",
  ]
