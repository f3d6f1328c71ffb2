"""Old against new defaults of the fused loss: value-and-grad time, interleaved in one process.

Usage (from the repository root)::

  git worktree add /tmp/xentax-old 1f127d6
  python experiments/benchmarks/fused_defaults_speed.py /tmp/xentax-old [rounds]

At shapes ``(tokens, dim, vocab)`` (among them the CPU target of ``xentax bench --suite
fused``), the old and new ``fused_linear_cross_entropy`` (``schedule="auto"``) and the
full-logits loss (xentax's sparse loss on ``hidden @ weight``) are timed in the same rounds;
the ratios are medians of per-round ratios to full logits. The record is written next to
this script.
"""

import json
import pathlib
import statistics
import sys

import jax

import xentax
from xentax.bench import _fused, _measure

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from engine_speed import load_old  # noqa: E402

SHAPES = [
  (256, 512, 32768),
  (1024, 512, 32768),
  (1024, 64, 32768),
  (128, 2048, 131072),
  (2048, 512, 32768),
  # The hidden size outweighs the vocabulary: the automatic chunk is every token.
  (4096, 4096, 1000),
  (1024, 4096, 8192),
]


def main(tree, rounds="7"):
  old = load_old(tree)
  rows = []
  for shape in SHAPES:
    fns = {
      "full logits": _fused.sparse_full_logits_loss,
      "old": lambda h, w, y: old.fused_linear_cross_entropy(h, w, y),
      "new": lambda h, w, y: xentax.fused_linear_cross_entropy(h, w, y),
    }
    args = _fused.random_inputs(*shape)
    compiled = {
      k: _measure.compile_ahead(jax.value_and_grad(f, argnums=(0, 1)), *args[0])[0]
      for k, f in fns.items()
    }
    memory = {k: _measure.memory_bytes(c)["temp_bytes"] for k, c in compiled.items()}
    timing = _measure.time_side_by_side(compiled, args, repeats=int(rounds))
    base = timing["full logits"].samples
    ratio = {
      k: statistics.median(s / b for s, b in zip(timing[k].samples, base, strict=True))
      for k in ("old", "new")
    }
    row = {
      "tokens_dim_vocab": shape,
      "new_over_full": ratio["new"],
      "old_over_full": ratio["old"],
      "rise": ratio["new"] - ratio["old"],
      "spread": max(t.spread for t in timing.values()),
      "temp_mib": {k: v / 2**20 for k, v in memory.items()},
      "rounds": int(rounds),
    }
    rows.append(row)
    print(json.dumps(row), flush=True)
    out = pathlib.Path(__file__).with_name("fused-defaults-speed.json")
    out.write_text(json.dumps({"old_tree": tree, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
  main(*sys.argv[1:])
