"""Report section: every training experiment, its final test metrics, bars, curves and speed.

It renders :class:`xentax.experiments.ExperimentResult` records; :func:`section` runs the
experiments of this section (those whose ``report_section`` is ``"training"``) first.
"""

from __future__ import annotations

from pathlib import Path

from xentax import experiments


def _fmt(value, digits: int = 4) -> str:
  return "-" if value is None else f"{value:.{digits}f}"


def _results_table(results: dict[str, experiments.ExperimentResult]) -> list[str]:
  lines = [
    "| experiment | run | model | dataset | loss | optimizer | epochs | test accuracy |"
    " test loss | bar | met | seconds |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
  ]
  for name, result in results.items():
    for row in result.rows:
      met = "-" if row.bar_met is None else ("yes" if row.bar_met else "**no**")
      lines.append(
        f"| {name} | {row.run} | {row.model} | {row.dataset} | {row.loss} |"
        f" {row.optimizer} | {row.epochs} | {_fmt(row.test_accuracy)} |"
        f" {_fmt(row.test_loss)} | {row.bar or '-'} | {met} | {row.seconds:.1f} |"
      )
  return lines


def _imbalance_lines(result: experiments.ExperimentResult) -> list[str]:
  rows = result.rows
  seeds = rows[0].extra["seeds"]
  minority = rows[0].extra["minority_test_examples"]
  lines = [
    f"### Class imbalance (2-class blobs, 1:20, {seeds} seeds)",
    "",
    f"Each objective trained on {seeds} seeds (each its own blobs, split and initialisation;"
    f" {min(minority)} to {max(minority)} minority examples per test set): mean and standard"
    " deviation over seeds.",
    "",
    "| objective | minority-class test recall | test accuracy |",
    "|---|---|---|",
  ]
  for r in rows:
    lines.append(
      f"| {r.loss} | {r.extra['minority_recall_mean']:.3f} ± {r.extra['minority_recall_std']:.3f}"
      f" | {r.test_accuracy:.4f} ± {r.extra['accuracy_std']:.4f} |"
    )
  plain = rows[0]
  lines += [
    "",
    f"Bar ({plain.bar}): {'met' if plain.bar_met else '**not met**'}.",
    "",
    f"![per-class recall by objective](training/{result.figures['recall']})",
    "",
  ]
  return lines


def _language_lines(words: experiments.ExperimentResult) -> list[str]:
  w = words.rows[0]
  corpus = words.info["corpus"]
  return [
    "### Next-word prediction",
    "",
    f"Standard-library docstrings: {corpus['docstrings']} docstrings, {corpus['words']} words,"
    f" {corpus['distinct_words']} distinct words; {w.extra['train_examples']} training windows."
    f" Test cross-entropy: model {_fmt(w.test_loss)} nats vs unigram baseline"
    f" {_fmt(w.extra['unigram_test_loss'])} nats (bar met: {'yes' if w.bar_met else 'no'}).",
    "",
  ]


def _recommender_lines(result: experiments.ExperimentResult) -> list[str]:
  info = result.info
  lines = [
    "### The recommender (MovieLens 100K)",
    "",
    f"{info['num_users']} users, {info['num_items']} items, {info['train_interactions']}"
    " training interactions; each user's latest rating held out and ranked against the whole"
    " catalogue with the user's training items excluded. Mean ± standard deviation over seeds"
    " (the most-popular ranking has no seed). The last column is the mean training count of"
    " each method's top 10; the held-out items' is"
    f" {info['test_item_popularity']:.1f}: an uncorrected in-batch or sampled softmax pushes"
    " popular items down.",
    "",
    "| training loss | recall@10 | NDCG@10 | MRR | top-10 popularity |",
    "|---|---|---|---|---|",
  ]
  for r in result.rows:
    x = r.extra

    def cell(key, x=x):
      std = x.get(f"{key}_std")
      return f"{x[key]:.4f}" + ("" if std is None else f" ± {std:.4f}")

    pop = x.get("top_popularity")
    lines.append(
      f"| {r.run} | {cell('recall_at_10')} | {cell('ndcg_at_10')} | {cell('mrr')} |"
      f" {'-' if pop is None else f'{pop:.1f}'} |"
    )
  return [*lines, "", f"![recommender](training/{result.rows[0].curves})", ""]


def _deck_lines(result: experiments.ExperimentResult) -> list[str]:
  d = result.rows[0]
  x = d.extra
  return [
    "### The deck's per-example loop vs the compiled loop",
    "",
    f"Softmax regression on digits (bias as a column of ones), {d.epochs} passes of"
    " per-example SGD from the same random theta: the deck's pseudocode run as written"
    " (eager JAX, one example at a time) and `xentax.training.train` (one compiled `lax.scan`"
    " per epoch, batch size 1, no shuffling, `optax.sgd`).",
    "",
    "| | final train loss | seconds per epoch |",
    "|---|---|---|",
    f"| deck, per example | {x['deck_final_train_loss']:.6f} | {x['deck_seconds_per_epoch']:.4f} |",
    f"| compiled | {x['compiled_final_train_loss']:.6f} | {x['compiled_seconds_per_epoch']:.4f} |",
    "",
    f"Same final loss: {'yes' if x['same_final_loss'] else '**no**'} (largest theta"
    f" difference {x['max_abs_theta_diff']:.2e}). Speed ratio (deck / compiled time per"
    f" epoch): **{x['speed_ratio']:.0f}x**.",
    "",
  ]


def render(results: dict[str, experiments.ExperimentResult], scale: str) -> str:
  """The section's Markdown from the experiments' results (figure paths under training/)."""
  lines = [
    "## Training",
    "",
    f"Every training experiment of `xentax.experiments` at {scale} scale (`xentax experiment"
    " NAME`), float32, on the device JAX found. Test loss is the unweighted cross-entropy on"
    " the test set, whatever the training objective; for the recommender, test accuracy is"
    " recall@10 and test loss the full-softmax cross-entropy of the held-out items. Each run's"
    " folder holds `config.json`, `metrics.jsonl`, `summary.json` and `curves.png`.",
    "",
    *_results_table(results),
    "",
  ]
  if "class_imbalance" in results:
    lines += _imbalance_lines(results["class_imbalance"])
  if "next_word" in results:
    lines += _language_lines(results["next_word"])
  if "recommender" in results:
    lines += _recommender_lines(results["recommender"])
  if "deck_vs_compiled" in results:
    lines += _deck_lines(results["deck_vs_compiled"])
  lines += ["### Curves", ""]
  for result in results.values():
    for name, path in result.figures.items():
      lines += [f"![{result.name}: {name}](training/{path})", ""]
    for row in result.rows:
      lines += [f"![{result.name}: {row.run}](training/{row.curves})", ""]
  return "\n".join(lines)


def section(out_dir: Path, scale: str = "full") -> str:
  """Run this section's experiments at ``scale`` and render them."""
  root = Path(out_dir) / "training"
  results = {}
  for name, experiment in experiments.EXPERIMENTS.items():
    if experiment.report_section == "training":
      print(f"  experiment {name} ...", flush=True)
      results[name] = experiments.run(name, root, scale=scale)
  return render(results, scale)
