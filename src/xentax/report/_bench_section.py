"""Report section: ``xentax bench --quick`` on this machine, its targets and a sweep over classes.

It renders :func:`xentax.bench.run` records (the suites other than ``fused``, which the
large-vocabulary section shows) and checks them against :data:`xentax.bench.TARGETS`.
"""

from __future__ import annotations

from pathlib import Path

from xentax import bench, plots

SUITES = ("losses", "memory", "classes", "training", "parallel")


def target_lines(records: list[bench.BenchRecord]) -> list[str]:
  """The CPU targets of :data:`xentax.bench.TARGETS` ``["losses"]``, measured."""
  t = bench.TARGETS["losses"]
  rows = {
    (r.get("mode"), r.implementation): r
    for r in records
    if r.suite == "losses"
    and r.get("loss") == t["loss"]
    and (r.get("batch"), r.get("classes")) == (t["batch"], t["classes"])
  }
  if not rows:
    return []
  lines = [
    f"CPU targets for `{t['loss']}`, float32 [{t['batch']}, {t['classes']}] (ratios measured"
    " side by side):",
    "",
    "| check | measured | target | met |",
    "|---|---|---|---|",
  ]
  for mode in ("forward", "value_and_grad"):
    plain = rows[(mode, "xentax")]
    ratio = plain.ratio
    lines.append(
      f"| {mode}: xentax / optax | {ratio:.2f} | <= {t['xentax_over_optax']} |"
      f" {'yes' if ratio <= t['xentax_over_optax'] else 'no'} |"
    )
    options = rows[(mode, t["options_implementation"])].median_s / plain.median_s  # type: ignore[operator]  # a row of this table has it
    lines.append(
      f"| {mode}: all options / plain | {options:.2f} | <= {t['options_over_plain']} |"
      f" {'yes' if options <= t['options_over_plain'] else 'no'} |"
    )
  return lines + [""]


def classes_figure(records: list[bench.BenchRecord]):
  rows = [r for r in records if r.suite == "classes"]
  if not rows:
    return None
  series = {}
  for name in dict.fromkeys(r.implementation for r in rows):
    mine = [r for r in rows if r.implementation == name]
    series[name] = (
      [r.get("classes") for r in mine],
      [r.median_s * 1e3 for r in mine],  # type: ignore[operator]  # a row of this table has it
      [(r.temp_bytes or 0) / 1e6 for r in mine],
    )
  return plots.time_and_memory_vs_classes(
    series, title=f"sparse CE with logits, batch {rows[0].get('batch')}, float32"
  )


def render(records: list[bench.BenchRecord], figure: str | None) -> str:
  return "\n".join(
    [
      "## Benchmarks",
      "",
      f"`xentax bench --suite {' '.join(SUITES)} --quick` on the machine that ran this report"
      " (records in `benchmarks.json`; the `fused` suite is in the large-vocabulary section).",
      "",
      *target_lines(records),
      *([f"![time and memory against number of classes]({figure})", ""] if figure else []),
      bench.markdown(records),
    ]
  )


def section(out_dir: Path, scale: str = "full") -> str:
  """Run the quick benchmark suites (every scale uses the quick sizes) and render them."""
  del scale
  records = bench.run(list(SUITES), quick=True, progress=True)
  bench.write_json(records, out_dir / "benchmarks.json")
  figure = classes_figure(records)
  if figure is not None:
    plots.save(figure, out_dir / "bench_classes.png")
  return render(records, "bench_classes.png" if figure is not None else None)
