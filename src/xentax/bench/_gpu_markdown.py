"""Markdown tables of the ``gpu`` suite's records (see :mod:`xentax.bench._gpu`)."""

from __future__ import annotations

import json


def _f(value, spec) -> str:
  return "-" if value is None else format(value, spec)


def _mb(value) -> str:
  return "-" if value is None else f"{value / 2**20:.0f}"


_COLUMNS = {
  "reference": "| measurement | median ms | spread | rate |",
  "fused": (
    "| implementation | tokens x dim x V | median ms | spread | matmuls | TFLOP/s |"
    " % of matmul rate | useful TFLOP/s (3 matmuls) | x full logits | temp MiB |"
    " peak - inputs MiB | d h + d W bound MiB |"
  ),
  "sparse": (
    "| implementation | mode | batch x classes | dtype | median ms | spread | GB/s |"
    " % of copy | x optax | temp MiB |"
  ),
  "other": "| case | implementation | status |",
}


def _row(r: dict) -> str:
  kind = r.get("kind")
  if r.get("status", "ok") != "ok" or kind not in _COLUMNS:
    error = f" {r['error']}" if "error" in r else ""
    return f"| {r.get('case')} | {r.get('implementation', '-')} | {r.get('status')}{error} |"
  if kind == "reference":
    rate = f"{r['tflops']:.3g} TFLOP/s" if "tflops" in r else f"{r['gbps']:.4g} GB/s"
    return f"| {r['implementation']} | {r['median_s'] * 1e3:.3f} | {r['spread']:.0%} | {rate} |"
  if kind == "fused":
    peak = _mb(r.get("peak_over_inputs"))
    if not r.get("peak_is_this_case", True):
      peak += " (an earlier case's peak)"
    return (
      f"| {r['implementation']} | {r['num_tokens']} x {r['dim']} x {r['vocab_size']}"
      f" {r['dtype']} | {r['median_s'] * 1e3:.2f} | {r['spread']:.0%} | {r['matmuls']:.2f} |"
      f" {r['tflops']:.3g} | {_f(r['pct_of_matmul_rate'], '.0f')} | {r['useful_tflops']:.3g} |"
      f" {_f(r['ratio_to_full'], '.2f')} | {_mb(r['temp_bytes'])} | {peak} |"
      f" {_mb(r['grad_bound_bytes'])} |"
    )
  return (
    f"| {r['implementation']} | {r['mode']} | {r['batch']} x {r['classes']} | {r['dtype']} |"
    f" {r['median_s'] * 1e3:.3f} | {r['spread']:.0%} | {r['gbps']:.4g} |"
    f" {_f(r['pct_of_copy'], '.0f')} | {r['ratio_to_optax']:.2f} | {_mb(r['temp_bytes'])} |"
  )


def _table(rows: list[dict]) -> list[str]:
  kind = str(rows[0].get("kind")) if rows[0].get("status", "ok") == "ok" else "other"
  head = _COLUMNS.get(kind, _COLUMNS["other"])
  lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
  for r in rows:
    try:
      lines.append(_row(r))
    except (KeyError, TypeError, ValueError):  # a partial record: show its raw fields
      lines.append(f"| {r.get('case')} | {json.dumps(r, default=str)} |")
  return lines


def markdown(records: list[dict], *, header: bool = True) -> str:
  """The records as Markdown tables (the run's device and versions above them)."""
  lines = []
  if header and records and records[0].get("kind") == "run":
    h = records[0]
    lines += [
      f"Device: {h['device_kind']} ({h['platform']}), jax {h['jax']}, jaxlib {h['jaxlib']},"
      f" python {h['python']}; {h['status']} in {_f(h.get('elapsed_s'), '.0f')} s.",
      "",
    ]
  groups: dict = {}
  for r in records:
    if r.get("kind") == "summary":
      continue
    if r.get("kind") != "run":
      ok = r.get("status", "ok") == "ok" and r.get("kind") in _COLUMNS
      groups.setdefault(r["kind"] if ok else "other", []).append(r)
  for kind in ("reference", "fused", "sparse", "other"):
    if kind in groups:
      lines += [*_table(groups[kind]), ""]
  for r in records:
    if r.get("kind") == "summary":
      lines += [
        "Summary (targets: "
        + ", ".join(f"{k} >= {v:.0f}" for k, v in r.get("targets", {}).items())
        + "):",
        "",
        *[
          f"- {k}: {_f(v, '.3g') if isinstance(v, float) else v}"
          for k, v in r.items()
          if k not in ("suite", "case", "status", "kind", "targets")
        ],
      ]
  return "\n".join(lines).rstrip()
