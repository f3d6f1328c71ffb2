"""Report section: every training experiment, its final test metrics, bars, curves and speed."""

from __future__ import annotations

from pathlib import Path

from xentax.training import experiments


def _fmt(value, digits: int = 4) -> str:
  return "-" if value is None else f"{value:.{digits}f}"


def section(out_dir: Path, quick: bool = False) -> str:
  """Run the experiments (``quick``: fewer epochs, smaller sets) and describe them."""
  scale = "quick" if quick else "full"
  root = Path(out_dir) / "training"
  summaries = {
    name: experiments.run(name, root, scale=scale)
    for name, experiment in experiments.EXPERIMENTS.items()
    if experiment.report_section == "training"
  }
  lines = [
    "## Training",
    "",
    f"Every experiment of `experiments/` at {scale} scale (`xentax.training.experiments`),"
    " float32, on the device JAX found. Test loss is the unweighted cross-entropy on the test"
    " set, whatever the training objective; accuracy for the recommender is interaction"
    " prediction (logit > 0). Each run's folder holds `config.json`, `metrics.jsonl`,"
    " `summary.json` and `curves.png`.",
    "",
    "| experiment | run | model | dataset | loss | optimizer | epochs | test accuracy |"
    " test loss | bar | met | seconds |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for name, summary in summaries.items():
    for row in summary["rows"]:
      met = "-" if "bar_met" not in row else ("yes" if row["bar_met"] else "**no**")
      lines.append(
        f"| {name} | {row['run']} | {row['model']} | {row['dataset']} | {row['loss']} |"
        f" {row['optimizer']} | {row['epochs']} | {_fmt(row['test_accuracy'])} |"
        f" {_fmt(row['test_loss'])} | {row.get('bar', '-')} | {met} |"
        f" {row.get('seconds', 0.0):.1f} |"
      )
  imbalance = summaries["class_imbalance"]["rows"]
  words = summaries["next_word"]["rows"][0]
  corpus = summaries["next_word"]["corpus"]
  recommender = summaries["recommender"]["rows"][0]
  deck = summaries["deck_vs_compiled"]["rows"][0]
  lines += [
    "",
    "### Class imbalance (2-class blobs, 1:20)",
    "",
    "| objective | minority-class test recall | test accuracy |",
    "|---|---|---|",
    *[
      f"| {r['loss']} | {_fmt(r['minority_recall'], 3)} | {_fmt(r['test_accuracy'])} |"
      for r in imbalance
    ],
    "",
    "### Next-word prediction and the recommender",
    "",
    f"Standard-library docstrings: {corpus['docstrings']} docstrings, {corpus['words']} words,"
    f" {corpus['distinct_words']} distinct words; {words['train_examples']} training windows."
    f" Test cross-entropy: model {_fmt(words['test_loss'])} nats vs unigram baseline"
    f" {_fmt(words['unigram_test_loss'])} nats (bar met: {'yes' if words['bar_met'] else 'no'}).",
    "",
    f"Matrix factorisation: test cross-entropy {_fmt(recommender['test_loss'])} vs"
    f" {_fmt(recommender['constant_test_loss'])} for the constant base-rate prediction;"
    f" test accuracy {_fmt(recommender['test_accuracy'])}.",
    "",
    "### The deck's per-example loop vs the compiled loop",
    "",
    f"Softmax regression on digits (bias as a column of ones), {deck['epochs']} passes of"
    " per-example SGD from the same random theta: the deck's pseudocode run as written"
    " (eager JAX, one example at a time) and `xentax.training.train` (one compiled `lax.scan`"
    " per epoch, batch size 1, no shuffling, `optax.sgd`).",
    "",
    "| | final train loss | seconds per epoch |",
    "|---|---|---|",
    f"| deck, per example | {deck['deck_final_train_loss']:.6f} |"
    f" {deck['deck_seconds_per_epoch']:.4f} |",
    f"| compiled | {deck['compiled_final_train_loss']:.6f} |"
    f" {deck['compiled_seconds_per_epoch']:.4f} |",
    "",
    f"Same final loss: {'yes' if deck['same_final_loss'] else '**no**'} (largest theta"
    f" difference {deck['max_abs_theta_diff']:.2e}). Speed ratio (deck / compiled time per"
    f" epoch): **{deck['speed_ratio']:.0f}x**.",
    "",
    "### Curves",
    "",
    f"![SGD vs momentum vs Adam](training/{summaries['sgd_vs_adam']['figure']})",
    "",
  ]
  for name, summary in summaries.items():
    for row in summary["rows"]:
      lines += [f"![{name}: {row['run']}](training/{row['curves']})", ""]
  return "\n".join(lines)
