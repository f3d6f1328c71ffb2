"""mkdocs hook: the results page's tables and charts, drawn at build time from the committed
benchmark records in ``experiments/benchmarks/`` (JSON), each under the device, versions and
command that produced it. A line ``<!-- record NAME -->`` in a page becomes that record."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from xentax import bench

RECORDS = Path(__file__).parents[1] / "experiments" / "benchmarks"
MARKER = re.compile(r"^<!-- record (?P<name>[\w.-]+) -->$", re.M)


def _bench_table(name: str) -> str:
  rows = json.loads((RECORDS / name).read_text())
  return bench.markdown([bench.BenchRecord.from_dict(row) for row in rows])


def _gpu_table(name: str) -> str:
  return bench.gpu_markdown(json.loads((RECORDS / name).read_text()))


def _memory_chart(name: str) -> str:
  """Compiled temporaries, xentax against its baseline, per loss and mode (an inline SVG)."""
  from matplotlib.figure import Figure

  rows = [r for r in json.loads((RECORDS / name).read_text()) if r["suite"] == "memory"]
  mib = {
    (r["implementation"], r["params"]["loss"], r["params"]["mode"]): r["temp_bytes"] / 2**20
    for r in rows
  }
  pairs = [(r["params"]["loss"], r["params"]["mode"], r["baseline"]) for r in rows]
  pairs = [p for p in dict.fromkeys(pairs) if ("xentax", *p[:2]) in mib]
  labels = [f"{loss} ({mode})" for loss, mode, _ in pairs]
  ours = [mib["xentax", loss, mode] for loss, mode, _ in pairs]
  base = [mib.get((baseline, loss, mode), 0.0) for loss, mode, baseline in pairs]
  rows = pairs
  fig = Figure(figsize=(8, 0.28 * len(rows) + 1))
  ax = fig.subplots()
  ys = range(len(rows))
  ax.barh([y + 0.2 for y in ys], base, height=0.4, label="baseline")
  ax.barh([y - 0.2 for y in ys], ours, height=0.4, label="xentax")
  ax.set_yticks(list(ys), labels, fontsize=7)
  ax.invert_yaxis()
  ax.set_xlabel("compiled temporaries (MiB)")
  ax.legend()
  fig.tight_layout()
  out = io.StringIO()
  fig.savefig(out, format="svg")
  return out.getvalue().split("<svg", 1)[1].join(("<svg", ""))


RENDERERS = {"gpu": _gpu_table, "chart": _memory_chart}


def _record(match: re.Match) -> str:
  name = match["name"]
  kind, _, file = name.partition(".") if name.split(".")[0] in RENDERERS else ("", "", name)
  return RENDERERS[kind](file) if kind else _bench_table(file)


def on_page_markdown(markdown: str, page, config, files) -> str:
  return MARKER.sub(_record, markdown)
