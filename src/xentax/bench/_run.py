"""``xentax bench``: run suites, print Markdown tables, write JSON records.

Design notes:
  * ``--quick`` sizes finish in minutes on a 2-core CPU; the default sizes are for a GPU
    (up to 8192 x 131072 logits).
  * Every run starts with two reference measurements on the device at hand, a copy of a
    logits-sized array (GB/s) and a bfloat16 matmul (TFLOP/s), so losses can be judged
    against what the card can actually do.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp

from xentax.bench import _fused, _gpu, _losses, _measure, _parallel, _training

SUITES = ("losses", "fused", "training", "parallel")
# Suites that run alone (not part of "all"), with their own reference rates and records.
STANDALONE_SUITES = ("gpu",)

CONFIG = {
  True: {  # --quick
    "losses_grid": [(256, 4096)],
    "losses_dtypes": [jnp.float32, jnp.bfloat16],
    "losses_target": [(4096, 32768)],
    # (2048, 512, 32768): the CPU target shape of the fused loss against full logits.
    "fused_time": [(1024, 256, 8192), (2048, 512, 32768)],
    "fused_blocks": (1024, 4096),
    "fused_memory": (8192, 4096, (32768, 131072)),
    "parallel": (512, 8192),
    "training_epochs": 1,
    "training_examples": 200,
    "repeats": 3,
    "reference": (4096, 32768),
  },
  False: {
    "losses_grid": [(4096, 32768), (8192, 131072)],
    "losses_dtypes": [jnp.float32, jnp.bfloat16],
    "losses_target": [],
    "fused_time": [(8192, 4096, 32768), (8192, 4096, 131072)],
    "fused_blocks": (2048, 8192, 32768),
    "fused_memory": (8192, 4096, (32768, 131072, 262144)),
    "parallel": (8192, 131072),
    "training_epochs": 2,
    "training_examples": 1000,
    "repeats": 10,
    "reference": (8192, 131072),
  },
}


def reference(batch: int, classes: int, *, repeats: int) -> list[dict]:
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
    {
      "suite": "reference",
      "implementation": f"copy float32 [{batch}, {classes}] (read + write)",
      "median_s": t_copy.median_s,
      "spread": t_copy.spread,
      "gbps": 2 * x.nbytes / t_copy.median_s / 1e9,
      **device,
    },
    {
      "suite": "reference",
      "implementation": f"matmul bfloat16 [{n}, {n}] x [{n}, {n}]",
      "median_s": t_matmul.median_s,
      "spread": t_matmul.spread,
      "gflops": 2 * n**3 / t_matmul.median_s / 1e9,
      **device,
    },
  ]


def run(suites, *, quick: bool, out=None) -> list[dict]:
  """Run the named suites; returns their records (the reference measurements first).

  ``out``: where the ``gpu`` suite rewrites its JSON after each case (others ignore it).
  """
  unknown = [s for s in suites if s not in SUITES + STANDALONE_SUITES]
  if unknown:
    raise ValueError(
      f"unknown suite(s) {unknown}; choose from {list(SUITES + STANDALONE_SUITES)} or 'all'"
    )
  if "gpu" in suites:
    if len(suites) > 1:
      raise ValueError(f"the gpu suite runs alone; got suites {list(suites)}")
    return _gpu.run(quick=quick, out=out)
  config = CONFIG[quick]
  repeats = config["repeats"]
  records = reference(*config["reference"], repeats=repeats)
  if "losses" in suites:
    records += _losses.run(config["losses_grid"], config["losses_dtypes"], repeats=repeats)
    if config["losses_target"]:
      records += _losses.run(
        config["losses_target"],
        [jnp.float32],
        losses=["sparse_categorical_cross_entropy_with_logits"],
        repeats=max(repeats, 9),  # the CPU targets are judged on this configuration
      )
  if "fused" in suites:
    for tokens, dim, vocab in config["fused_time"]:
      for record in _fused.time_comparison(
        tokens, dim, vocab, config["fused_blocks"], repeats=repeats, tokens=True
      ):
        records.append({"suite": "fused", **record, **_measure.device_info()})
    tokens, dim, vocabs = config["fused_memory"]
    for dtype in (jnp.float32, jnp.bfloat16):
      for record in _fused.memory_sweep(
        tokens, dim, vocabs, config["fused_blocks"], dtype, tokens=True
      ):
        records.append({"suite": "fused_memory", **record})
  if "training" in suites:
    records += _training.run(
      epochs=config["training_epochs"], examples=config["training_examples"], repeats=repeats
    )
  if "parallel" in suites:
    records += _parallel.run(*config["parallel"], repeats=repeats)
  return records


def _fmt(value, spec) -> str:
  return "-" if value is None else format(value, spec)


def markdown(records: list[dict]) -> str:
  """One Markdown table per suite."""
  if not records:
    return ""
  if records[0]["suite"] == "gpu":
    return _gpu.markdown(records)
  device = records[0]
  lines = [
    f"Device: {device['platform']} {device['device_kind']} x {device['device_count']}, "
    f"jax {device['jax']}, jaxlib {device['jaxlib']}.",
    "",
  ]
  for suite in dict.fromkeys(r["suite"] for r in records):
    rows = [r for r in records if r["suite"] == suite]
    lines += [f"### {suite}", ""]
    if suite == "reference":
      lines += ["| measurement | median ms | GB/s | GFLOP/s |", "|---|---|---|---|"]
      for r in rows:
        lines.append(
          f"| {r['implementation']} | {r['median_s'] * 1e3:.2f} | {_fmt(r.get('gbps'), '.1f')} |"
          f" {_fmt(r.get('gflops'), '.0f')} |"
        )
    elif suite == "fused_memory":
      lines += [
        "| implementation | tokens x dim x V | dtype | temporaries MB |",
        "|---|---|---|---|",
      ]
      for r in rows:
        lines.append(
          f"| {r['implementation']} | {r['num_tokens']} x {r['dim']} x {r['vocab_size']} |"
          f" {r['dtype']} | {r['temp_bytes'] / 1e6:.0f} |"
        )
    elif suite == "fused":
      lines += [
        "| implementation | tokens x dim x V | median ms | spread | ratio | GFLOP/s | temp MB |",
        "|---|---|---|---|---|---|---|",
      ]
      for r in rows:
        lines.append(
          f"| {r['implementation']} | {r['num_tokens']} x {r['dim']} x {r['vocab_size']} |"
          f" {r['median_s'] * 1e3:.1f} | {r['spread']:.0%} | {r['ratio_to_full']:.2f} |"
          f" {r['useful_gflops']:.1f} | {r['temp_bytes'] / 1e6:.0f} |"
        )
    elif suite == "losses":
      lines += [
        "| loss | mode | shape | dtype | implementation | median ms | spread | ratio | GB/s |"
        " temp MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
      ]
      for r in rows:
        lines.append(
          f"| {r['loss']} | {r['mode']} | {r['batch']} x {r['classes']} | {r['dtype']} |"
          f" {r['implementation']} | {r['median_s'] * 1e3:.2f} | {r['spread']:.0%} |"
          f" {r['ratio']:.2f} (vs {r['baseline']}) | {r['gbps']:.1f} |"
          f" {_fmt(r['temp_bytes'] and r['temp_bytes'] / 1e6, '.0f')} |"
        )
    else:
      lines += ["| implementation | median ms | spread | ratio | detail |", "|---|---|---|---|---|"]
      for r in rows:
        keys = ("batch", "classes", "devices", "examples", "batch_size", "steps_per_s")
        detail = ", ".join(
          f"{k}={v:.0f}" if isinstance(v, float) else f"{k}={v}" for k, v in r.items() if k in keys
        )
        lines.append(
          f"| {r['implementation']} | {r['median_s'] * 1e3:.2f} | {r['spread']:.0%} |"
          f" {r['ratio']:.2f} | {detail} |"
        )
    lines.append("")
  return "\n".join(lines)


def write_json(records: list[dict], path: str | Path) -> None:
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(records, indent=1, default=str) + "\n")
