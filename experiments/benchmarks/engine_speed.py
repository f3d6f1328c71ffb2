"""Old against new: every loss's forward and value-and-grad time, interleaved in one process.

Usage (from the repository root)::

  git worktree add /tmp/xentax-old 001fec4
  python experiments/benchmarks/engine_speed.py /tmp/xentax-old 4096x32768 [rounds] [names]
  python experiments/benchmarks/engine_speed.py /tmp/xentax-old 64x128 0   # programs only

The old tree's ``src/xentax`` is copied to a temporary folder as the package ``xentax_old``
(its imports rewritten), so both versions run side by side on the same inputs. For each
loss and mode, ``old``, ``new`` and the baseline (optax, or the naive ``jnp`` formula) are
timed in the same interleaved rounds (``xentax.bench._measure.time_side_by_side``); the
table gives the medians of the per-round ratios new/baseline and old/baseline, their
difference, the spread of each timing, and whether old and new compile to the same program
(the optimised HLO at ``[64, 128]``, metadata stripped). Rows are appended to a JSON record
next to the script, one per loss and mode, as they are measured.
"""

import json
import pathlib
import re
import shutil
import statistics
import sys
import tempfile

import jax
import jax.numpy as jnp
import optax

import xentax
from xentax.bench import _measure


def load_old(tree: str):
  folder = pathlib.Path(tempfile.mkdtemp(prefix="xentax-old-"))
  shutil.copytree(pathlib.Path(tree) / "src" / "xentax", folder / "xentax_old")
  for path in (folder / "xentax_old").rglob("*.py"):
    text = path.read_text()
    path.write_text(re.sub(r"\bxentax\b(?=[.\s])", "xentax_old", text))
  sys.path.insert(0, str(folder))
  import xentax_old

  return xentax_old


def baselines(n, c):
  eps = 1e-12

  def naive_probs_bce(p, y):
    return -jnp.mean(y * jnp.log(p + eps) + (1 - y) * jnp.log(1 - p + eps))

  def naive_kl(s, t):
    return jnp.mean(
      jnp.sum(jax.nn.softmax(t) * (jax.nn.log_softmax(t) - jax.nn.log_softmax(s)), -1)
    )

  def naive_jsd(s, t):
    ls, lt = jax.nn.log_softmax(s), jax.nn.log_softmax(t)
    m = jnp.log(0.5 * jnp.exp(ls) + 0.5 * jnp.exp(lt))
    return jnp.mean(
      0.5 * jnp.sum(jnp.exp(ls) * (ls - m), -1) + 0.5 * jnp.sum(jnp.exp(lt) * (lt - m), -1)
    )

  def sparse(x, y):
    return optax.softmax_cross_entropy_with_integer_labels(x, y).mean()

  def dense(x, t):
    return optax.softmax_cross_entropy(x, t).mean()

  return naive_probs_bce, naive_kl, naive_jsd, sparse, dense


def cases(pkg, n, c):
  """name -> (loss of (x, other), baseline of (x, other), kind of other)."""
  naive_bce, naive_kl, naive_jsd, sparse, dense = baselines(n, c)
  return {
    "sparse_logits": (
      lambda x, y: pkg.sparse_categorical_cross_entropy_with_logits(x, y),
      sparse,
      "labels",
    ),
    "sparse_smooth_z": (
      lambda x, y: pkg.sparse_categorical_cross_entropy_with_logits(
        x, y, label_smoothing=0.1, z_loss=1e-4
      ),
      sparse,
      "labels",
    ),
    "sparse_focal": (
      lambda x, y: pkg.sparse_categorical_focal_loss_with_logits(x, y),
      sparse,
      "labels",
    ),
    "sparse_probs": (
      lambda p, y: pkg.sparse_categorical_cross_entropy(jax.nn.softmax(p), y),
      sparse,
      "labels",
    ),
    "nll": (lambda x, y: pkg.nll_loss(jax.nn.log_softmax(x), y), sparse, "labels"),
    "poly1": (lambda x, y: pkg.poly1_cross_entropy_with_logits(x, y), sparse, "labels"),
    "dense_logits": (lambda x, t: pkg.categorical_cross_entropy_with_logits(x, t), dense, "onehot"),
    "dense_smooth": (
      lambda x, t: pkg.categorical_cross_entropy_with_logits(x, t, label_smoothing=0.1),
      dense,
      "onehot",
    ),
    "dense_probs": (
      lambda p, t: pkg.categorical_cross_entropy(jax.nn.softmax(p), t),
      dense,
      "onehot",
    ),
    "dense_focal": (lambda x, t: pkg.categorical_focal_loss_with_logits(x, t), dense, "onehot"),
    "kl": (lambda s, t: pkg.kl_divergence_with_logits(s, t), naive_kl, "logits"),
    "jsd": (lambda s, t: pkg.jensen_shannon_divergence_with_logits(s, t), naive_jsd, "logits"),
    "bce_logits": (
      lambda x, y: pkg.binary_cross_entropy_with_logits(x, y),
      lambda x, y: optax.sigmoid_binary_cross_entropy(x, y).mean(),
      "binary",
    ),
    "bce_probs": (
      lambda p, y: pkg.binary_cross_entropy(jax.nn.sigmoid(p), y),
      lambda p, y: naive_bce(jax.nn.sigmoid(p), y),
      "binary",
    ),
    "binary_focal": (
      lambda x, y: pkg.binary_focal_loss_with_logits(x, y),
      lambda x, y: optax.sigmoid_focal_loss(x, y).mean(),
      "binary",
    ),
  }


def inputs(kind, n, c, seed):
  kx, ky = jax.random.split(jax.random.key(seed))
  x = jax.random.normal(kx, (n, c), jnp.float32) * 3
  labels = jax.random.randint(ky, (n,), 0, c)
  other = {
    "labels": labels,
    "onehot": jax.nn.one_hot(labels, c, dtype=jnp.float32),
    "logits": jax.random.normal(ky, (n, c), jnp.float32) * 3,
    "binary": (jax.random.uniform(ky, (n, c)) < 0.5).astype(jnp.float32),
  }[kind]
  return x, other


def same_program(new_fn, old_fn, args) -> bool:
  """Whether ``new_fn`` and ``old_fn`` compile to the same optimised HLO (metadata aside)."""

  def text(fn):
    hlo = jax.jit(fn).lower(*args).compile().as_text()
    hlo = re.sub(r", metadata=\{.*?\}(?=[,\n]|$)", "", hlo, flags=re.M)
    return [line for line in hlo.splitlines() if not re.match(r"^\s*\d+ [{\"]", line)]

  return text(new_fn) == text(old_fn)


def main():
  tree, shape = sys.argv[1], sys.argv[2]
  rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 7
  only = set(sys.argv[4].split(",")) if len(sys.argv) > 4 else None
  n, c = (int(v) for v in shape.split("x"))
  old = load_old(tree)
  new_cases, old_cases = cases(xentax, n, c), cases(old, n, c)
  suffix = f"{n}x{c}" if rounds else f"programs-{pathlib.Path(tree).name}"
  out = pathlib.Path(__file__).with_name(f"engine-speed-{suffix}.json")
  rows = json.loads(out.read_text())["rows"] if only and out.exists() else []
  rows = [row for row in rows if not only or row["loss"] not in only]
  record = dict(shape=[n, c], rounds=rounds, old_tree=tree, device=_measure.device_info())
  for name, (new_fn, base_fn, kind) in new_cases.items():
    if only and name not in only:
      continue
    for mode in ("fwd", "vg"):
      fns = {"new": new_fn, "old": old_cases[name][0], "base": base_fn}
      if mode == "vg":
        fns = {k: jax.value_and_grad(f) for k, f in fns.items()}
      row = dict(loss=name, mode=mode)
      if rounds:  # 0 rounds: only compare the programs
        row.update(_time(fns, [inputs(kind, n, c, seed) for seed in (0, 1)], rounds))
      row["same_hlo"] = same_program(fns["new"], fns["old"], inputs(kind, 64, 128, 0))
      rows.append(row)
      print(
        " ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
      )
      out.write_text(json.dumps({**record, "rows": rows}, indent=1) + "\n")


def _time(fns, args, rounds) -> dict:
  """Median per-round ratios of new and old to the baseline, and the largest spread."""
  compiled = {k: _measure.compile_ahead(f, *args[0])[0] for k, f in fns.items()}
  timing = _measure.time_side_by_side(compiled, args, repeats=rounds)
  new = statistics.median(timing["new"].ratios_to(timing["base"]))
  old = statistics.median(timing["old"].ratios_to(timing["base"]))
  spread = max(t.spread for t in timing.values())
  return dict(new=new, old=old, rise=new - old, spread=spread)


if __name__ == "__main__":
  main()
