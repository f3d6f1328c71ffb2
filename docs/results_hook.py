"""mkdocs hook: the results page's tables and charts, drawn at build time from committed
records (JSON): the benchmark records in ``experiments/benchmarks/``, each under the device,
versions and command that produced it, and the records of one full ``xentax reproduce`` in
``experiments/reproduce/``. A line ``<!-- record NAME -->`` in a page becomes that record;
``<!-- reproduce PART -->`` a part of the reproduction (``runs``, ``curves``)."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from xentax import bench

RECORDS = Path(__file__).parents[1] / "experiments" / "benchmarks"
REPRODUCE = Path(__file__).parents[1] / "experiments" / "reproduce"
MARKER = re.compile(r"^<!-- record (?P<name>[\w.-]+) -->$", re.M)
REPRODUCE_MARKER = re.compile(r"^<!-- reproduce (?P<part>\w+) -->$", re.M)


def _bench_table(name: str) -> str:
  rows = json.loads((RECORDS / name).read_text())
  return bench.markdown([bench.BenchRecord.from_dict(row) for row in rows])


def _gpu_table(name: str) -> str:
  return bench.gpu_markdown(json.loads((RECORDS / name).read_text()))


def _svg(fig) -> str:
  out = io.StringIO()
  fig.savefig(out, format="svg")
  return "<svg" + out.getvalue().split("<svg", 1)[1]


def _experiments() -> list[dict]:
  paths = sorted((REPRODUCE / "training").glob("*/summary.json"))
  return [json.loads(p.read_text()) for p in paths]


def _num(value, spec: str = ".4f") -> str:
  return "-" if value is None else format(value, spec)


def _runs_table() -> str:
  """Every run of the reproduction: what was trained, its test metrics and its bar."""
  lines = [
    "| experiment | run | model | dataset | loss | optimizer | epochs | test accuracy |"
    " test loss | bar |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  for result in _experiments():
    for r in result["rows"]:
      bar = "" if r["bar"] is None else f"{r['bar']} ({'met' if r['bar_met'] else 'not met'})"
      lines.append(
        f"| {result['name']} | {r['run']} | {r['model']} | {r['dataset']} | {r['loss']} |"
        f" {r['optimizer']} | {r['epochs']} | {_num(r['test_accuracy'])} | {_num(r['test_loss'])} |"
        f" {bar} |"
      )
  return "\n".join(lines)


def _curves() -> str:
  """Train and test loss per epoch, one chart per experiment, one line per run."""
  from matplotlib.figure import Figure

  charts = []
  for folder in sorted(p.parent for p in (REPRODUCE / "training").glob("*/summary.json")):
    runs = sorted(folder.glob("*/metrics.jsonl"))
    if not runs:
      continue
    fig = Figure(figsize=(8, 2.8))
    train, test = fig.subplots(1, 2, sharey=True)
    for path in runs:
      epochs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
      x = [e["epoch"] for e in epochs]
      train.plot(x, [e["train_loss"] for e in epochs], label=path.parent.name)
      test.plot(x, [e["test_loss"] for e in epochs], label=path.parent.name)
    train.set_title(f"{folder.name}: train loss", fontsize=9)
    test.set_title("test loss", fontsize=9)
    for ax in (train, test):
      ax.set_xlabel("epoch")
      ax.set_yscale("log")
    test.legend(fontsize=7)
    fig.tight_layout()
    charts.append(f"### {folder.name}\n\n" + _svg(fig))
  return "\n\n".join(charts)


def _memory_against_vocabulary() -> str:
  """Compiled temporaries of value-and-grad against ``V``: the fused schedules, full logits."""
  from matplotlib.figure import Figure

  rows = json.loads((REPRODUCE / "large_vocab_bench.json").read_text())
  rows = [r for r in rows if r["suite"] == "fused_memory" and r["temp_bytes"] is not None]
  names = ["full logits (optax)", "fused (auto block)", "fused tokens (auto chunk)"]
  fig = Figure(figsize=(6.5, 3.4))
  ax = fig.subplots()
  for dtype, style in (("float32", "-"), ("bfloat16", "--")):
    for color, name in enumerate(names):
      mine = sorted(
        (r["params"]["vocab_size"], r["temp_bytes"] / 2**20)
        for r in rows
        if r["implementation"] == name and r["params"]["dtype"] == dtype
      )
      if mine:
        ax.plot(*zip(*mine, strict=True), style, color=f"C{color}", marker="o",
                label=f"{name}, {dtype}")  # fmt: skip
  shape = rows[0]["params"] if rows else {}
  ax.set_title(f"hidden [{shape.get('num_tokens')}, {shape.get('dim')}]", fontsize=9)
  ax.set_xscale("log", base=2)
  ax.set_yscale("log")
  ax.set_xlabel("vocabulary V")
  ax.set_ylabel("temporaries (MiB)")
  ax.legend(fontsize=7)
  fig.tight_layout()
  return _svg(fig)


def _calibration() -> str:
  """Test ECE before and after temperature scaling, per training objective (mean over seeds)."""
  from matplotlib.figure import Figure

  result = json.loads((REPRODUCE / "training" / "calibration" / "summary.json").read_text())
  rows = result["rows"]
  labels = [r["run"] for r in rows]
  before = [r["extra"]["ece_before_mean"] for r in rows]
  after = [r["extra"]["ece_after_mean"] for r in rows]
  fig = Figure(figsize=(6, 3))
  ax = fig.subplots()
  xs = range(len(rows))
  ax.bar([x - 0.2 for x in xs], before, width=0.4, label="raw logits")
  ax.bar([x + 0.2 for x in xs], after, width=0.4, label="after temperature scaling")
  ax.set_xticks(list(xs), labels, fontsize=8)
  ax.set_ylabel("test ECE")
  ax.legend(fontsize=7)
  fig.tight_layout()
  lines = [
    "| objective | test accuracy | ECE raw | fitted T | ECE after scaling |",
    "|---|---|---|---|---|",
  ]
  for r in rows:
    e = r["extra"]
    lines.append(
      f"| {r['run']} | {r['test_accuracy']:.4f} | {e['ece_before_mean']:.4f} |"
      f" {e['temperature_mean']:.3f} | {e['ece_after_mean']:.4f} |"
    )
  return _svg(fig) + "\n\n" + "\n".join(lines)


REPRODUCE_PARTS = {
  "runs": _runs_table,
  "curves": _curves,
  "memory": _memory_against_vocabulary,
  "calibration": _calibration,
}


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
  return _svg(fig)


def _masked_table(name: str) -> str:
  """Masked over unmasked time per loss and mode (``experiments/benchmarks/masked_vocab.py``)."""
  rows = json.loads((RECORDS / name).read_text())
  first = rows[0]
  lines = [
    f"Device: {first['platform']} ({first['device_kind']}), jax {first['jax']}; "
    f"`[{first['batch']}, {first['classes']}]` float32, {first['masked_share']:.0%} of the "
    f"non-target columns `-inf`, {first['rounds']} interleaved rounds.",
    "",
    "| loss | mode | masked / unmasked | range | unmasked ms | masked ms |",
    "|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
      f"| {r['loss']} | {r['mode']} | {r['ratio_masked_over_unmasked']:.2f} |"
      f" {r['ratio_min']:.2f}-{r['ratio_max']:.2f} | {r['unmasked_ms']:.1f} |"
      f" {r['masked_ms']:.1f} |"
    )
  return "\n".join(lines)


RENDERERS = {"gpu": _gpu_table, "chart": _memory_chart, "masked": _masked_table}


def _record(match: re.Match) -> str:
  name = match["name"]
  kind, _, file = name.partition(".") if name.split(".")[0] in RENDERERS else ("", "", name)
  return RENDERERS[kind](file) if kind else _bench_table(file)


def on_page_markdown(markdown: str, page, config, files) -> str:
  markdown = MARKER.sub(_record, markdown)
  return REPRODUCE_MARKER.sub(lambda m: REPRODUCE_PARTS[m["part"]](), markdown)
