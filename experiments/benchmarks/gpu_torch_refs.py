"""Reference rows from the PyTorch kernels on the same GPU: Liger-Kernel and Cut Cross-Entropy.

  PYTHONPATH=/tmp/site python3 experiments/benchmarks/gpu_torch_refs.py OUT.json

Same shapes as ``xentax bench --suite gpu``, bf16 unless stated:
  * sparse cross-entropy over ``[8192, 131072]`` logits (bf16, f32), forward and forward +
    backward: ``torch.nn.functional.cross_entropy`` and Liger's ``LigerCrossEntropyFunction``
    (which writes the gradient into the logits' buffer during its forward pass);
  * linear + cross-entropy at ``8192 x 4096 x 131072`` bf16, forward + backward of hidden and
    weight: full logits (``F.cross_entropy`` of ``h @ W^T`` in float32), Cut Cross-Entropy's
    ``linear_cross_entropy`` (default, which filters small gradient blocks, and
    ``filter_eps=None``), Liger's fused linear cross-entropy. Peak memory minus inputs from
    ``torch.cuda.max_memory_allocated``.
Times are medians of ``triton.testing.do_bench`` (CUDA events, L2 flushed between calls).
Liger and Cut Cross-Entropy are carried as wheels (``pip download --no-deps``).
"""

from __future__ import annotations

import json
import sys
import traceback

import torch
import torch.nn.functional as F
import triton

OUT = sys.argv[1] if len(sys.argv) > 1 else "torch.json"
RECORDS: list[dict] = []


def _save():
  info = {
    "device": torch.cuda.get_device_name(),
    "torch": torch.__version__,
    "triton": triton.__version__,
  }
  with open(OUT, "w") as f:
    json.dump({"info": info, "records": RECORDS}, f, indent=1)


def bench(name, fn, reset=None, **fields):
  try:
    if reset is not None:  # the previous case's buffers freed before the base is read
      reset()
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    ms = triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")
    rec = {"impl": name, "median_ms": ms, "peak_minus_inputs_mib": peak / 2**20, **fields}
  except Exception as err:
    traceback.print_exc()
    rec = {"impl": name, "error": f"{type(err).__name__}: {err}"[:1000], **fields}
  RECORDS.append(rec)
  print(json.dumps(rec), flush=True)
  _save()
  return rec


def sparse(dtype):
  n, c = 8192, 131072
  x = (torch.randn(n, c, device="cuda", dtype=torch.float32) * 2).to(dtype)
  y = torch.randint(0, c, (n,), device="cuda")
  nbytes = x.numel() * x.element_size()
  copy = bench("copy (x * c)", lambda: x * 1.0000001, kind="copy", dtype=str(dtype))
  if "median_ms" in copy:
    copy["gbps"] = 2 * nbytes / copy["median_ms"] / 1e6
  from liger_kernel.ops.cross_entropy import LigerCrossEntropyFunction

  xg = x.clone().requires_grad_(True)
  for mode in ("forward", "forward_backward"):
    moved = nbytes * (1 if mode == "forward" else 2)

    def torch_ce(mode=mode):
      if mode == "forward":
        with torch.no_grad():
          return F.cross_entropy(x, y)
      F.cross_entropy(xg, y).backward()

    def liger_ce(mode=mode):
      if mode == "forward":
        with torch.no_grad():
          return LigerCrossEntropyFunction.apply(x, y, None)
      LigerCrossEntropyFunction.apply(xg, y, None)[0].backward()

    for name, fn in (("torch F.cross_entropy", torch_ce), ("liger", liger_ce)):
      rec = bench(name, fn, kind="sparse", mode=mode, dtype=str(dtype), shape=[n, c])
      if "median_ms" in rec:
        rec["gbps"] = moved / rec["median_ms"] / 1e6
        if "gbps" in copy:
          rec["pct_of_copy"] = 100 * rec["gbps"] / copy["gbps"]
      xg.grad = None
  _save()


def fused():
  n, d, v = 8192, 4096, 131072
  h = torch.randn(n, d, device="cuda").to(torch.bfloat16).requires_grad_(True)
  w = (torch.randn(v, d, device="cuda") / d**0.5).to(torch.bfloat16).requires_grad_(True)
  y = torch.randint(0, v, (n,), device="cuda")
  fields = {
    "kind": "fused",
    "shape": [n, d, v],
    "dtype": "bfloat16",
    "d_hidden_plus_d_weight_mib": (n * d + v * d) * 2 / 2**20,
  }

  def full():
    F.cross_entropy((h @ w.T).float(), y).backward()

  def cce(**kw):
    from cut_cross_entropy import linear_cross_entropy

    linear_cross_entropy(h, w, y, **kw).backward()

  def liger():
    from liger_kernel.ops.fused_linear_cross_entropy import LigerFusedLinearCrossEntropyFunction

    LigerFusedLinearCrossEntropyFunction.apply(h, w, y)[0].backward()

  def clear():
    h.grad = w.grad = None

  def fresh(fn):  # each call allocates its own gradients, as a training step does
    def run():
      clear()
      fn()

    return run

  base = bench("full logits (torch)", fresh(full), reset=clear, **fields)
  for name, fn in (
    ("cut cross-entropy (default)", cce),
    ("cut cross-entropy (filter_eps=None)", lambda: cce(filter_eps=None)),
    ("liger fused linear CE", liger),
  ):
    rec = bench(name, fresh(fn), reset=clear, **fields)
    if "median_ms" in rec and "median_ms" in base:
      rec["x_full_logits"] = rec["median_ms"] / base["median_ms"]
  _save()


if __name__ == "__main__":
  print(torch.cuda.get_device_name(), torch.__version__, triton.__version__, flush=True)
  for step in (lambda: sparse(torch.bfloat16), lambda: sparse(torch.float32), fused):
    try:
      step()
    except Exception:
      traceback.print_exc()
