"""``xentax bench``: a registry of suites, one runner, Markdown tables and JSON.

Design notes:
  * A suite is a function ``fn(sizes, repeats) -> rows`` (dicts or :class:`BenchRecord`)
    plus one line in :data:`SUITES`; its sizes come from :data:`xentax.bench.SIZES`.
    ``cpu_devices`` says how many (virtual) CPU devices it wants; the command line creates
    them only when such a suite runs.
  * Every run starts with two reference measurements on the device at hand, a copy of a
    logits-sized array (GB/s) and a bfloat16 matmul (TFLOP/s), so losses can be judged
    against what the card can actually do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path

import jax
import jax.numpy as jnp

from xentax import records as xrecords
from xentax.bench import (
  _fused,
  _losses,
  _many_classes,
  _measure,
  _parallel,
  _retrieval,
  _training,
)
from xentax.bench._records import BenchRecord
from xentax.bench._sizes import sizes as sizes_for
from xentax.progress import progress_bar


@dataclasses.dataclass(frozen=True)
class Suite:
  """A benchmark suite: ``run(sizes, repeats) -> rows``."""

  name: str
  run: Callable[[dict, int], list]
  description: str
  cpu_devices: int = 1
  in_all: bool = True  # run by ``--suite all`` (False: its rows are part of another suite)


# The CPU targets (float32) are judged on the median of this many interleaved rounds.
TARGET_REPEATS = 5


def _target_rows(sizes: dict) -> list:
  return _losses.run(
    sizes["losses_target"],
    [jnp.float32],
    losses=sizes["losses"],
    repeats=TARGET_REPEATS,
    naive=sizes["losses_naive"],
  )


def _losses_suite(sizes: dict, repeats: int) -> list:
  dtypes = [jnp.dtype(d) for d in sizes["losses_dtypes"]]
  names, naive = sizes["losses"], sizes["losses_naive"]
  rows = _losses.run(sizes["losses_grid"], dtypes, losses=names, repeats=repeats, naive=naive)
  return rows + _target_rows(sizes)


def _targets_suite(sizes: dict, repeats: int) -> list:
  del repeats  # always TARGET_REPEATS
  return [{**r, "suite": "targets"} for r in _target_rows(sizes)]


def _classes_suite(sizes: dict, repeats: int) -> list:
  batch, classes = sizes["classes"]
  rows = _losses.run(
    [(batch, c) for c in classes],
    [jnp.float32],
    losses=["sparse_categorical_cross_entropy_with_logits"],
    repeats=repeats,
    modes=("value_and_grad",),
  )
  return [{**r, "suite": "classes"} for r in rows]


def _fused_suite(sizes: dict, repeats: int) -> list:
  device = _measure.device_info()
  rows = []
  for tokens, dim, vocab in sizes["fused_time"]:
    for r in _fused.time_comparison(
      tokens, dim, vocab, sizes["fused_blocks"], repeats=repeats, tokens=True
    ):
      ratio = r.pop("ratio_to_full")
      rows.append(
        {"suite": "fused", **r, "ratio": ratio, "baseline": "full logits (optax)", **device}
      )
  tokens, dim, vocabs = sizes["fused_memory"]
  for dtype in (jnp.float32, jnp.bfloat16):
    for r in _fused.memory_sweep(tokens, dim, vocabs, sizes["fused_blocks"], dtype, tokens=True):
      rows.append({"suite": "fused_memory", **r, **device})
  return rows


def _many_classes_suite(sizes: dict, repeats: int) -> list:
  return _many_classes.run(
    *sizes["many_classes"], sampled=sizes["many_classes_sampled"], repeats=repeats
  )


def _retrieval_suite(sizes: dict, repeats: int) -> list:
  return _retrieval.run(*sizes["retrieval"], repeats=repeats)


def _memory_suite(sizes: dict, repeats: int) -> list:
  del repeats  # compiled only
  return _losses.memory_table(*sizes["memory"]) + _fused.memory_grid(sizes["fused_grid"])


def _training_suite(sizes: dict, repeats: int) -> list:
  return _training.run(
    epochs=sizes["training_epochs"], examples=sizes["training_examples"], repeats=repeats
  )


def _parallel_suite(sizes: dict, repeats: int) -> list:
  return _parallel.run(*sizes["parallel"], repeats=repeats) + _parallel.fused_layouts(
    *sizes["parallel_fused"]
  )


# Suites that run alone (not part of "all"): ``gpu`` takes its own reference rates, sizes
# and time budget, and rewrites its JSON after every case (:func:`xentax.bench.run_gpu`).
STANDALONE_SUITES = ("gpu",)

# A new suite is one line here (and, if it has sizes, its keys in ``_sizes.SIZES``).
SUITES: dict[str, Suite] = {
  s.name: s
  for s in [
    Suite("losses", _losses_suite, "every loss vs optax and a naive version"),
    Suite(
      "targets",
      _targets_suite,
      "the losses suite at the float32 CPU target shapes only (a CPU-sized full run)",
      in_all=False,
    ),
    Suite("classes", _classes_suite, "sparse CE value-and-grad against the number of classes"),
    Suite("memory", _memory_suite, "every loss's temporaries vs its baseline (compiled only)"),
    Suite("fused", _fused_suite, "fused linear CE vs full logits: time and temporaries"),
    Suite(
      "many_classes",
      _many_classes_suite,
      "sampled and adaptive softmax vs the fused full softmax: time and temporaries",
    ),
    Suite(
      "retrieval",
      _retrieval_suite,
      "chunked in-batch softmax, CLIP and SigLIP vs the [B, B] formula: time and temporaries",
    ),
    Suite("training", _training_suite, "the deck's per-example loop vs the compiled loop"),
    Suite(
      "parallel",
      _parallel_suite,
      "vocab-parallel CE on N devices vs dense; fused CE per-device memory and collectives",
      cpu_devices=8,
    ),
  ]
}


def check_suites(suites: Iterable[str]) -> list[str]:
  """The suite names, ``"all"`` expanded; ValueError for an unknown one."""
  suites = list(suites)
  unknown = [s for s in suites if s not in SUITES and s not in STANDALONE_SUITES and s != "all"]
  if unknown:
    raise ValueError(
      f"unknown suite(s) {', '.join(unknown)}; choose from "
      f"{', '.join([*SUITES, *STANDALONE_SUITES])} or all"
    )
  # Checked before "all" is expanded: "gpu all" is two requests, not "all".
  standalone = [s for s in suites if s in STANDALONE_SUITES]
  if standalone and len(suites) > 1:
    raise ValueError(f"the {standalone[0]} suite runs alone; got suites {', '.join(suites)}")
  return [name for name, suite in SUITES.items() if suite.in_all] if "all" in suites else suites


def reference(batch: int, classes: int, *, repeats: int) -> list[BenchRecord]:
  """Copy bandwidth of a logits-sized array and a bfloat16 matmul rate on this device."""
  x = jax.random.normal(jax.random.key(0), (batch, classes), jnp.float32)
  copy, copy_s = _measure.compile_ahead(lambda x: x * 1.0000001, x)
  n = 4096 if jax.default_backend() != "cpu" else 1024
  a = jax.random.normal(jax.random.key(1), (n, n), jnp.bfloat16)
  matmul, matmul_s = _measure.compile_ahead(
    lambda a: jnp.dot(a, a, preferred_element_type=jnp.float32), a
  )
  t_copy = _measure.time_side_by_side(
    {"copy": copy}, [(x,), (x + 1,)], repeats=repeats, compile_seconds={"copy": copy_s}
  )["copy"]
  t_matmul = _measure.time_side_by_side(
    {"matmul": matmul}, [(a,), (a + 1,)], repeats=repeats, compile_seconds={"matmul": matmul_s}
  )["matmul"]
  device = _measure.device_info()
  return [
    BenchRecord(
      suite="reference",
      implementation=f"copy float32 [{batch}, {classes}] (read + write)",
      median_s=t_copy.median_s,
      spread=t_copy.spread,
      repeats=t_copy.repeats,
      rates={"gbps": 2 * x.nbytes / t_copy.median_s / 1e9},
      device=device,
    ),
    BenchRecord(
      suite="reference",
      implementation=f"matmul bfloat16 [{n}, {n}] x [{n}, {n}]",
      median_s=t_matmul.median_s,
      spread=t_matmul.spread,
      repeats=t_matmul.repeats,
      rates={"gflops": 2 * n**3 / t_matmul.median_s / 1e9},
      device=device,
    ),
  ]


def run(suites: Iterable[str], *, quick: bool, progress: bool = False) -> list[BenchRecord]:
  """Run the named suites (or ``["all"]``) at the ``quick`` or full sizes of ``SIZES``.

  Returns:
    Their records, the two reference measurements first.

  Raises:
    ValueError: an unknown suite name (before anything runs).
  """
  names = check_suites(suites)
  sizes = sizes_for(quick)
  repeats = sizes["repeats"]
  with progress_bar(len(names) + 1, enabled=progress, label="bench", unit="suites") as bar:
    bar.update_text("reference")
    out = reference(*sizes["reference"], repeats=repeats)
    bar.advance(1)
    for name in names:
      bar.update_text(name)
      out += [BenchRecord.from_dict(row) for row in SUITES[name].run(sizes, repeats)]
      bar.advance(1)
  return out


def _fmt(value, spec) -> str:
  return "-" if value is None else format(value, spec)


def _mb(nbytes) -> str:
  return "-" if nbytes is None else f"{nbytes / 1e6:.0f}"


def _shape(r: BenchRecord) -> str:
  if r.get("num_tokens") is not None:
    return f"{r.get('num_tokens')} x {r.get('dim')} x {r.get('vocab_size')}"
  return f"{r.get('batch')} x {r.get('classes')}"


def _ratio_range(r: BenchRecord) -> str:
  low, high = r.get("ratio_min"), r.get("ratio_max")
  return "" if low is None or high is None else f" [{low:.2f}-{high:.2f}]"


def _table(suite: str, rows: list[BenchRecord]) -> list[str]:
  if suite == "reference":
    lines = ["| measurement | median ms | GB/s | GFLOP/s |", "|---|---|---|---|"]
    for r in rows:
      lines.append(
        f"| {r.implementation} | {r.median_s * 1e3:.2f} | {_fmt(r.get('gbps'), '.1f')} |"  # type: ignore[operator]  # a row of this table has it
        f" {_fmt(r.get('gflops'), '.0f')} |"
      )
  elif suite == "fused_memory":
    lines = ["| implementation | tokens x dim x V | dtype | temporaries MB |", "|---|---|---|---|"]
    lines += [
      f"| {r.implementation} | {_shape(r)} | {r.get('dtype')} | {_mb(r.temp_bytes)} |" for r in rows
    ]
  elif suite == "memory":
    lines = memory_lines(rows)
  elif suite == "fused_grid":
    lines = [
      "| tokens x dim x V | mode | full logits MiB | fused (auto) MiB | within |",
      "|---|---|---|---|---|",
    ]
    lines += [
      f"| {_shape(r)} | {r.get('mode')} | {r.get('baseline_temp_bytes') / 2**20:.1f} |"
      f" {r.temp_bytes / 2**20:.1f} | {'yes' if r.get('over_baseline_bytes') <= 0 else '**no**'} |"  # type: ignore[operator]  # a row of this table has it
      for r in rows
    ]
  elif suite in ("losses", "classes", "targets"):
    lines = [
      "| loss | mode | shape | dtype | implementation | median ms | spread | ratio | GB/s |"
      " temp MB |",
      "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
      lines.append(
        f"| {r.get('loss')} | {r.get('mode')} | {_shape(r)} | {r.get('dtype')} |"
        f" {r.implementation} | {r.median_s * 1e3:.2f} | {r.spread:.0%} |"  # type: ignore[operator]  # a row of this table has it
        f" {r.ratio:.2f}{_ratio_range(r)} (vs {r.baseline}) | {_fmt(r.get('gbps'), '.1f')} |"
        f" {_mb(r.temp_bytes)} |"
      )
  else:
    lines = [
      "| implementation | shape | median ms | spread | ratio | detail |",
      "|---|---|---|---|---|---|",
    ]
    keys = ("dtype", "devices", "examples", "batch_size", "steps_per_s", "useful_gflops")
    for r in rows:
      detail = ", ".join(
        f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}"
        for k in keys
        if (v := r.get(k)) is not None
      )
      shape = _shape(r) if r.get("batch") or r.get("num_tokens") else "-"
      lines.append(
        f"| {r.implementation} | {shape} | {_fmt(r.median_s and r.median_s * 1e3, '.2f')} |"
        f" {_fmt(r.spread, '.0%')} | {_fmt(r.ratio, '.2f')} | {detail} |"
      )
  return lines


def memory_lines(records: list[BenchRecord]) -> list[str]:
  """The memory table: per loss and mode, temporaries (MiB) of xentax and its baseline."""
  allowance = _losses.MEMORY_ALLOWANCE_BYTES
  lines = [
    f"| loss | mode | baseline | baseline MiB | xentax MiB | within +{allowance >> 20} MiB |",
    "|---|---|---|---|---|---|",
  ]
  base = {(r.get("loss"), r.get("mode")): r for r in records if r.implementation != "xentax"}
  for r in records:
    if r.implementation != "xentax":
      continue
    b = base[(r.get("loss"), r.get("mode"))]
    within = r.get("over_baseline_bytes") <= allowance
    lines.append(
      f"| {r.get('loss')} | {r.get('mode')} | {b.implementation} | {b.temp_bytes / 2**20:.0f} |"  # type: ignore[operator]  # a row of this table has it
      f" {r.temp_bytes / 2**20:.0f} | {'yes' if within else '**no**'} |"  # type: ignore[operator]  # a row of this table has it
    )
  return lines


def targets_summary(records: list[BenchRecord]) -> list[str]:
  """The issue-11 table: xentax with default options over its baseline, one row per loss
  and one column per (shape, mode), bold above 1.0. A loss with a "naive (checked)" row
  (the naive formula with xentax's range checks) gets a second row: xentax's median time
  over that one's, the yardstick of equal work."""
  cells: dict[tuple, dict[str, BenchRecord]] = {}
  for r in records:
    key = (r.get("loss"), (r.get("batch"), r.get("classes")), r.get("mode"))
    cells.setdefault(key, {})[r.implementation] = r
  shapes = list(dict.fromkeys(shape for _, shape, _ in cells))
  columns = [(shape, mode) for shape in shapes for mode in ("forward", "value_and_grad")]
  names = {"forward": "fwd", "value_and_grad": "v&g"}
  lines = [
    "| loss (vs) | " + " | ".join(f"[{b}, {c}] {names[mode]}" for (b, c), mode in columns) + " |",
    "|---" * (len(columns) + 1) + "|",
  ]

  def cell(loss, shape, mode, ratio):
    group = cells.get((loss, shape, mode), {})
    value = ratio(group) if "xentax" in group else None
    if value is None:
      return "-"
    return f"**{value:.2f}**" if value > 1.0 else f"{value:.2f}"

  for loss in dict.fromkeys(loss for loss, _, _ in cells):
    first = next(g for (name, _, _), g in cells.items() if name == loss)
    baseline = next(iter(first.values())).baseline
    row = [cell(loss, shape, mode, lambda g: g["xentax"].ratio) for shape, mode in columns]
    lines.append(f"| `{loss}` ({baseline}) | " + " | ".join(row) + " |")
    if "naive (checked)" in first:
      row = [
        cell(loss, shape, mode, lambda g: g["xentax"].median_s / g["naive (checked)"].median_s)
        for shape, mode in columns
      ]
      lines.append(f"| `{loss}` (naive (checked), time over time) | " + " | ".join(row) + " |")
  return lines


def many_classes_summary(records: list[BenchRecord]) -> list[str]:
  """One value-and-grad step of each: time and temporaries against the fused full softmax."""
  lines = [
    "| implementation | tokens x D x V | median ms | ratio to fused | temporaries MiB |",
    "|---|---|---|---|---|",
  ]
  for r in records:
    lines.append(
      f"| {r.implementation} | {r.get('num_tokens')} x {r.get('dim')} x {r.get('vocab_size')} |"
      f" {_step_cells(r)} |"
    )
  return lines


def _step_cells(r: BenchRecord) -> str:
  """``median ms | ratio | temporaries MiB`` of one timed step ("-" where unknown)."""
  temp = "-" if r.temp_bytes is None else f"{r.temp_bytes / 2**20:.1f}"
  ms = "-" if r.median_s is None else f"{r.median_s * 1e3:.1f}"
  ratio = "-" if r.ratio is None else f"{r.ratio:.3f}"
  return f"{ms} | {ratio} | {temp}"


def retrieval_summary(records: list[BenchRecord]) -> list[str]:
  """One value-and-grad step over ``B`` pairs: time and temporaries against the formula."""
  lines = [
    "| implementation | B x D | median ms | ratio to formula | temporaries MiB | formula's MiB |",
    "|---|---|---|---|---|---|",
  ]
  for r in records:
    base = r.get("baseline_temp_bytes")
    base = "-" if base is None else f"{base / 2**20:.1f}"
    lines.append(
      f"| {r.implementation} | {r.get('num_tokens')} x {r.get('dim')} | {_step_cells(r)} | {base} |"
    )
  return lines


def layouts_summary(records: list[BenchRecord]) -> list[str]:
  """The fused loss on sharded inputs: per-device temporaries and collectives, by layout."""
  lines = [
    "| layout | axes | devices | mesh (data, model) | tokens x D x V | temporaries per device MiB"
    " | all-reduces (count, MiB, largest MiB) | gathers MiB |",
    "|---|---|---|---|---|---|---|---|",
  ]
  mib = 2**20
  for r in records:
    moved = r.get("collectives")
    if moved is None:
      continue
    count, total, largest = moved.get("all-reduce", (0, 0, 0))
    gathered = sum(moved.get(kind, (0, 0, 0))[1] for kind in ("all-gather", "all-to-all"))
    lines.append(
      f"| {r.get('layout')} | {r.get('axis_types', 'Explicit')} | {r.get('devices')} |"
      f" {tuple(r.get('mesh'))} |"
      f" {r.get('num_tokens')} x {r.get('dim')} x {r.get('vocab_size')} |"
      f" {r.temp_bytes / mib:.2f} | {count}, {total / mib:.3f}, {largest / mib:.3f} |"  # type: ignore[operator]  # compiled rows have temporaries
      f" {gathered / mib:.3f} |"
    )
  return lines


def markdown(records: list[BenchRecord]) -> str:
  """One Markdown table per suite, after a line naming the device and versions."""
  if not records:
    return ""
  device = records[0].device
  lines = [
    f"Device: {device.get('platform')} {device.get('device_kind')} x"
    f" {device.get('device_count')}, jax {device.get('jax')}, jaxlib {device.get('jaxlib')}.",
    "",
  ]
  for suite in dict.fromkeys(r.suite for r in records):
    lines += [f"### {suite}", ""]
    rows = [r for r in records if r.suite == suite]
    if suite == "targets":
      lines += targets_summary(rows) + [""]
    if suite == "many_classes":
      lines += many_classes_summary(rows) + [""]
    if suite == "retrieval":
      lines += retrieval_summary(rows) + [""]
      continue
    if suite == "parallel" and any(r.get("collectives") for r in rows):
      lines += layouts_summary(rows) + [""]
      rows = [r for r in rows if r.get("collectives") is None]
    lines += _table(suite, rows)
    lines.append("")
  return "\n".join(lines)


def write_json(records: list[BenchRecord], path: str | Path) -> Path:
  """Write the records as a JSON list (atomically; the folder must exist)."""
  return xrecords.write_json(path, records)
