"""Report section: the ``--quick`` benchmark run on this machine, and a sweep over classes."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from xentax import bench  # noqa: E402
from xentax.bench import _losses  # noqa: E402

SWEEP_BATCH = 1024
SWEEP_CLASSES = (1024, 4096, 16384, 32768)
TARGET = ("sparse_categorical_cross_entropy_with_logits", 4096, 32768)


def plot_sweep(records, path: Path) -> None:
  fig, (ax_time, ax_mem) = plt.subplots(1, 2, figsize=(10, 4))
  for impl in dict.fromkeys(r["implementation"] for r in records):
    rows = [r for r in records if r["implementation"] == impl]
    classes = [r["classes"] for r in rows]
    ax_time.plot(classes, [r["median_s"] * 1e3 for r in rows], "o-", label=impl)
    ax_mem.plot(classes, [max(r["temp_bytes"], 1) / 1e6 for r in rows], "o-", label=impl)
  for ax in (ax_time, ax_mem):
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("number of classes")
  ax_time.set_ylabel("value-and-grad median time (ms)")
  ax_mem.set_ylabel("temporaries (MB)")
  ax_time.set_title(f"sparse CE with logits, batch {SWEEP_BATCH}, float32")
  ax_time.legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def _target_lines(records) -> list[str]:
  name, batch, classes = TARGET
  rows = {
    (r["mode"], r["implementation"]): r
    for r in records
    if r["suite"] == "losses"
    and r["loss"] == name
    and (r["batch"], r["classes"]) == (batch, classes)
  }
  if not rows:
    return []
  lines = [
    f"CPU targets for `{name}`, float32 [{batch}, {classes}] (ratios measured side by side):",
    "",
    "| check | measured | target | met |",
    "|---|---|---|---|",
  ]
  all_options = "xentax (ignore_index, class_weights, smoothing)"
  for mode in ("forward", "value_and_grad"):
    xentax_ratio = rows[(mode, "xentax")]["ratio"]
    lines.append(
      f"| {mode}: xentax / optax | {xentax_ratio:.2f} | <= 1.0 |"
      f" {'yes' if xentax_ratio <= 1.0 else 'no'} |"
    )
    options_ratio = rows[(mode, all_options)]["median_s"] / rows[(mode, "xentax")]["median_s"]
    lines.append(
      f"| {mode}: all options / plain | {options_ratio:.2f} | <= 1.3 |"
      f" {'yes' if options_ratio <= 1.3 else 'no'} |"
    )
  return lines + [""]


def section(out_dir: Path, quick: bool = False) -> str:
  del quick  # the report always runs the --quick benchmark sizes
  records = bench.run(list(bench.SUITES), quick=True)
  bench.write_json(records, out_dir / "benchmarks.json")
  sweep = _losses.run(
    [(SWEEP_BATCH, c) for c in SWEEP_CLASSES],
    [jnp.float32],
    losses=["sparse_categorical_cross_entropy_with_logits"],
    repeats=3,
  )
  sweep = [r for r in sweep if r["mode"] == "value_and_grad"]
  plot_sweep(sweep, out_dir / "bench_classes.png")
  return "\n".join(
    [
      "## Benchmarks",
      "",
      "`xentax bench --suite all --quick` on the machine that ran this report "
      "(records in `benchmarks.json`).",
      "",
      *_target_lines(records),
      "![time and memory against number of classes](bench_classes.png)",
      "",
      bench.markdown(records),
    ]
  )
