"""Report section: large vocabularies, fused linear cross-entropy against full logits.

It renders the ``fused`` benchmark suite's records (temporaries against V, time) and the
``large_vocab`` experiment's result (the next-word model trained with both losses).
"""

from __future__ import annotations

from pathlib import Path

from xentax import bench, experiments, plots


def _mb(nbytes) -> float:
  return nbytes / 1e6


def memory_lines(memory: list[bench.BenchRecord], figure: str) -> list[str]:
  """The temporaries table against V, and the target at V = 131072."""
  target = bench.TARGETS["fused_memory"]
  vocabs = sorted({r.get("vocab_size") for r in memory})
  tokens, dim = memory[0].get("num_tokens"), memory[0].get("dim")
  lines = [
    "`xentax.fused_linear_cross_entropy(hidden, weight, labels)` against optax's",
    "`softmax_cross_entropy_with_integer_labels(hidden @ weight, labels)`. Temporaries of",
    f"`jit(value_and_grad(loss))` from `compiled.memory_analysis()`, hidden [{tokens},"
    f" {dim}] float32 (MB; inputs and the gradients themselves are not temporaries):",
    "",
    "| implementation | " + " | ".join(f"V = {v}" for v in vocabs) + " |",
    "|---|" + "---|" * len(vocabs),
  ]
  for name in dict.fromkeys(r.implementation for r in memory):
    cells = []
    for vocab in vocabs:
      row = [r for r in memory if r.implementation == name and r.get("vocab_size") == vocab]
      cells.append(f"{_mb(row[0].temp_bytes):.0f}" if row else "-")
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  fused = [r for r in memory if r.implementation == target["implementation"]]
  at_target = [r for r in fused if r.get("vocab_size") == target["vocab_size"]]
  if at_target:
    mb = _mb(at_target[0].temp_bytes)
    met = mb <= target["temp_mb"]
    temps = [_mb(r.temp_bytes) for r in fused]
    lines += [
      "",
      f"Target at V = {target['vocab_size']}: fused temporaries <= {target['temp_mb']} MB:"
      f" {mb:.0f} MB, **{'met' if met else 'not met'}**. Fused temporaries from V ="
      f" {vocabs[0]} to {vocabs[-1]}: {min(temps):.0f} to {max(temps):.0f} MB.",
    ]
  return lines + ["", f"![temporaries against vocabulary size]({figure})", ""]


def timing_lines(timing: list[bench.BenchRecord]) -> list[str]:
  lines = [
    "Value-and-grad time on this machine, float32, implementations interleaved in one process:",
    "",
    "| implementation | tokens x dim x V | median s | spread | ratio to full logits |"
    " GFLOP/s (3 matmuls) | temporaries MB |",
    "|---|---|---|---|---|---|---|",
  ]
  for r in timing:
    lines.append(
      f"| {r.implementation} | {r.get('num_tokens')} x {r.get('dim')} x {r.get('vocab_size')} |"
      f" {r.median_s:.3f} | {r.spread:.0%} | {r.ratio:.2f} | {r.get('useful_gflops'):.1f} |"
      f" {_mb(r.temp_bytes):.0f} |"
    )
  return lines + [
    "",
    "The vocabulary-blocked schedule (`fused (...block...)`) does four matmuls (its backward",
    "pass recomputes each block's logits) where the full-logits loss does three; the tokens",
    "schedule (`fused tokens`) does three, computing the gradients in the forward pass. Both",
    "never write the [N, V] logits or their gradient.",
    "",
  ]


def experiment_lines(result: experiments.ExperimentResult) -> list[str]:
  """Markdown for the ``large_vocab`` experiment (figure paths under training/)."""
  info = result.info
  fused, full = result.row("fused").extra, result.row("full").extra
  tests = (result.row("fused").test_loss, result.row("full").test_loss)

  def row(label, key, fmt):
    return f"| {label} | {fmt(fused[key])} | {fmt(full[key])} |"

  def mb(x):
    return f"{_mb(x):.1f}"

  return [
    "### Training with a large vocabulary",
    "",
    f"The next-word MLP (`xentax experiment large_vocab`) with V = {info['vocab_size']},"
    f" trained twice for {info['steps']} Adam steps of {info['batch_size']} tokens from the"
    " same parameters on the same batches: output layer + `fused_linear_cross_entropy`"
    f" (block {info['block_size']}) against full logits +"
    f" `sparse_categorical_cross_entropy_with_logits`. Data: {info['data']}. The full logits"
    f" are [{info['batch_size']}, {info['vocab_size']}] float32 ="
    f" {_mb(info['logits_bytes']):.0f} MB.",
    "",
    "| | fused | full logits |",
    "|---|---|---|",
    row("final train loss (batch)", "final_train_loss", lambda x: f"{x:.6f}"),
    f"| test loss ({info['test_tokens']} tokens; unigram {info['unigram_test_loss']:.3f}) |"
    f" {tests[0]:.6f} | {tests[1]:.6f} |",
    row("train-step temporaries (MB)", "temp_bytes", mb),
    row("loss value-and-grad temporaries (MB)", "loss_temp_bytes", mb),
    row("median step time (s)", "median_step_s", lambda x: f"{x:.3f}"),
    "",
    f"Loss curves agree: max |fused - full| over the {info['steps']} steps ="
    f" {info['max_abs_loss_diff']:.2g}. Step time fused / full ="
    f" {info['step_time_ratio']:.2f} (spreads {fused['step_spread']:.0%} /"
    f" {full['step_spread']:.0%}). Temporaries are bytes beyond the step's arguments and"
    " outputs; XLA may place the fused loss's [batch, block] slice in an output buffer of"
    " the same size, hence the second row.",
    "",
    f"![fused vs full-logits loss curves](training/{result.figures['loss_curves']})",
    "",
  ]


def many_classes_lines(result: experiments.ExperimentResult) -> list[str]:
  """Markdown for the ``many_classes`` experiment (figure path under training/)."""
  lines = [
    "### Many classes: sampled and adaptive softmax",
    "",
    "Softmax regression on a Zipfian task whose Bayes posterior is known (`xentax experiment"
    " many_classes`): each method trains from the same start on the same batches; its test"
    " cross-entropy is its own normalised model's (the full softmax of the learned weights, or"
    " the adaptive softmax's); step times are compiled steps timed side by side.",
    "",
    "| V | method | test cross-entropy | test accuracy | step ms | step / full | temporaries MB |",
    "|---|---|---|---|---|---|---|",
  ]
  for row in result.rows:
    e = row.extra
    lines.append(
      f"| {e['vocab_size']} | {row.loss} | {row.test_loss:.3f} | {row.test_accuracy:.3f} |"
      f" {e['median_step_s'] * 1e3:.1f} | {e['step_time_ratio']:.3f} | {_mb(e['temp_bytes']):.1f} |"
    )
  floors = ", ".join(
    f"{v}: teacher {d['teacher_test_loss']:.3f}, class prior {d['prior_test_loss']:.3f}"
    for v, d in result.info.items()
  )
  return lines + [
    "",
    f"Test cross-entropy of the known teacher and of the class prior alone ({floors}).",
    "",
    f"![test cross-entropy against step time](training/{result.figures['frontier']})",
    "",
  ]


def render(
  records: list[bench.BenchRecord],
  result: experiments.ExperimentResult,
  many: experiments.ExperimentResult | None = None,
) -> str:
  memory = [r for r in records if r.suite == "fused_memory"]
  timing = [r for r in records if r.suite == "fused"]
  return "\n".join(
    [
      "## Large vocabularies",
      "",
      *(memory_lines(memory, "large_vocab_memory.png") if memory else []),
      *timing_lines(timing),
      *experiment_lines(result),
      *(many_classes_lines(many) if many is not None else []),
    ]
  )


def section(out_dir: Path, scale: str = "full") -> str:
  """``xentax bench --suite fused --quick`` and the ``large_vocab`` and ``many_classes``
  experiments, rendered."""
  records = bench.run(["fused"], quick=True, progress=True)
  bench.write_json(records, out_dir / "large_vocab_bench.json")
  memory = [r for r in records if r.suite == "fused_memory"]
  series = {}
  for name in dict.fromkeys(r.implementation for r in memory):
    rows = [r for r in memory if r.implementation == name]
    series[name] = ([r.get("vocab_size") for r in rows], [_mb(r.temp_bytes) for r in rows])
  if memory:
    figure = plots.memory_vs_vocabulary(
      series,
      target_mb=bench.TARGETS["fused_memory"]["temp_mb"],
      title=f"hidden [{memory[0].get('num_tokens')}, {memory[0].get('dim')}] float32, compiled",
    )
    plots.save(figure, out_dir / "large_vocab_memory.png")
  result = experiments.run("large_vocab", out_dir / "training", scale=scale)
  many = experiments.run("many_classes", out_dir / "training", scale=scale)
  return render(records, result, many)
