"""The ``gpu`` suite: every accelerator figure of the fused and sparse losses in one command.

``xentax bench --suite gpu --out gpu.json`` measures, on the device at hand and in one run:

  * reference rates: a bfloat16 matmul (TFLOP/s) and a device copy (GB/s, read + write);
  * fused linear cross-entropy, bfloat16 value-and-grad: time, TFLOP/s counting the matmuls
    it really executes (as a share of the measured matmul rate), memory against the
    ``d hidden + d weight`` bound, and the ratio to full logits (optax on ``h @ W``);
  * sparse cross-entropy over bfloat16 / float32 logits, forward and value-and-grad: GB/s
    as a share of the measured copy bandwidth, and the ratio to optax.

Design notes:
  * Each case runs inside ``try``: a failing case records its error and the rest still run.
    A time budget skips the cases left when the run nears it, and the JSON (and Markdown)
    are rewritten after every case, so a killed run still leaves its results.
  * Matmul FLOPs are counted from the jaxpr of the differentiated function (every
    ``dot_general``, times the trip count of the ``scan`` around it), so the count follows
    whatever schedule the fused loss uses (3 matmuls tokens-chunked, 4 vocabulary-blocked).
  * Device memory: ``memory_analysis()`` gives exact temporaries. ``peak_bytes_in_use`` is a
    high-water mark since start-up that cannot be reset, so the big fused case runs first,
    with one copy of its inputs live, and each record says whether the peak rose during it
    (``peak_is_this_case``); ``peak_over_inputs`` is that peak minus the bytes live before.
  * ``--quick`` runs the same code at CPU-sized shapes (seconds), for tests.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import re
import time
import traceback
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import optax

import xentax
from xentax.bench import _measure
from xentax.bench._gpu_markdown import markdown

CONFIG: dict[bool, dict[str, Any]] = {
  False: {
    "matmul": (4 * 8192, 8192, 8192),  # [M, K] x [K, N], bfloat16
    "copy": (8192, 131072),  # float32
    "fused": [(8192, 4096, 131072), (8192, 4096, 32768)],  # tokens, dim, vocab; biggest first
    "fused_dtype": "bfloat16",
    "sparse": (8192, 131072),
    "sparse_dtypes": ("bfloat16", "float32"),
    "repeats": 10,
    "budget_s": 270.0,  # run_gpu.sh: the smoke run and kernel tests first, 8 minutes in all
    "full_logits_max_fraction": 0.4,  # of device memory, for the full-logits float32 logits
  },
  True: {  # --quick: the same cases at CPU sizes
    "matmul": (512, 512, 512),
    "copy": (512, 8192),
    "fused": [(256, 128, 4096), (128, 64, 1024)],
    "fused_dtype": "bfloat16",
    "sparse": (512, 8192),
    "sparse_dtypes": ("bfloat16", "float32"),
    "repeats": 3,
    "budget_s": 50.0,
    "full_logits_max_fraction": 0.4,
  },
}

TARGETS = {"fused_pct_of_matmul": 45.0, "sparse_forward_pct_of_copy": 70.0}


def _say(message: str) -> None:
  print(message, flush=True)


# ------------------------------------------------------------------ counting and memory


def matmul_flops(fn, *args) -> tuple[int, bool]:
  """``(FLOPs of every dot_general in fn's jaxpr, exact)``; exact is False under a while loop."""
  jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
  exact = [True]

  def walk(jaxpr, times):
    total = 0
    for eqn in jaxpr.eqns:
      name = eqn.primitive.name
      if name == "dot_general":
        (contract, _), _ = eqn.params["dimension_numbers"]
        lhs = eqn.invars[0].aval.shape
        out = eqn.outvars[0].aval.shape
        total += times * 2 * math.prod(out) * math.prod(lhs[d] for d in contract)
      inner = times * eqn.params["length"] if name == "scan" else times
      if name == "while":
        exact[0] = False  # trip count unknown here: the body is counted once
      subs = [s for s in _sub_jaxprs(eqn.params)]
      counts = [walk(s, inner) for s in subs]
      total += max(counts, default=0) if name == "cond" else sum(counts)
    return total

  return walk(jaxpr, 1), exact[0]


def _sub_jaxprs(params):
  for value in params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      inner = getattr(item, "jaxpr", item)
      if hasattr(inner, "eqns"):
        yield inner


def _memory_stats() -> dict | None:
  try:
    stats = jax.devices()[0].memory_stats()
  except Exception:  # some backends raise instead of returning None
    return None
  return stats or None


def device_memory_bytes() -> int | None:
  """Memory the runtime may use on the first device (None where the backend does not say)."""
  stats = _memory_stats()
  return None if stats is None else stats.get("bytes_limit")


def run_once_for_peak(fn, args) -> dict:
  """Run ``fn`` once; the device's peak bytes and whether this call raised it."""
  before = _memory_stats()
  jax.block_until_ready(fn(*args))
  after = _memory_stats()
  if before is None or after is None or "peak_bytes_in_use" not in after:
    return {"peak_bytes_in_use": None}
  peak = after["peak_bytes_in_use"]
  return {
    "bytes_in_use_before": before.get("bytes_in_use"),
    "peak_bytes_in_use": peak,
    "peak_is_this_case": peak > before.get("peak_bytes_in_use", 0),
    "peak_over_inputs": peak - before.get("bytes_in_use", 0),
  }


# ------------------------------------------------------------------ inputs and functions


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _normal(key, shape, dtype, scale=1.0):
  # Under jit the random bits fuse into the output: no temporaries to raise the peak.
  return (jax.random.normal(key, shape, dtype) * jnp.asarray(scale, dtype)).astype(dtype)


def fused_inputs(num_tokens, dim, vocab_size, dtype, seed):
  k_h, k_w, k_y = jax.random.split(jax.random.key(seed), 3)
  hidden = _normal(k_h, (num_tokens, dim), dtype)
  weight = _normal(k_w, (dim, vocab_size), dtype, 1 / math.sqrt(dim))
  labels = jax.random.randint(k_y, (num_tokens,), 0, vocab_size, dtype=jnp.int32)
  return jax.block_until_ready((hidden, weight, labels))


def sparse_inputs(batch, classes, dtype, seed):
  k_x, k_y = jax.random.split(jax.random.key(seed))
  logits = _normal(k_x, (batch, classes), dtype, 2.0)
  labels = jax.random.randint(k_y, (batch,), 0, classes, dtype=jnp.int32)
  return jax.block_until_ready((logits, labels))


def _full_logits(hidden, weight, labels):
  logits = jnp.dot(hidden, weight, preferred_element_type=jnp.float32)
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def fused_schedules() -> list[str]:
  """The non-default ``schedule=`` values of the fused loss ([] if it has no such option)."""
  parameter = inspect.signature(xentax.fused_linear_cross_entropy).parameters.get("schedule")
  if parameter is None:
    return []
  names = re.findall(r"['\"](\w+)['\"]", str(parameter.annotation))
  return [n for n in names if n != "auto"] or ["tokens", "vocab"]


def fused_implementations() -> dict:
  """Name -> loss(hidden, weight, labels): the fused loss (default, each schedule and, on a
  GPU, the Pallas kernels)."""
  impls = {"fused (default)": xentax.fused_linear_cross_entropy}
  for schedule in fused_schedules():
    impls[f"fused (schedule={schedule})"] = lambda h, w, y, s=schedule: (
      xentax.fused_linear_cross_entropy(h, w, y, schedule=s)
    )
  if jax.default_backend() == "gpu":  # the Pallas kernels, unfiltered and filtered
    for eps in (None, 2.0**-12):
      impls[f"fused (pallas, filter_eps={eps})"] = functools.partial(
        xentax.fused_linear_cross_entropy, implementation="pallas", filter_eps=eps
      )
  return impls


def _value_and_grad(fn):
  return jax.value_and_grad(fn, argnums=(0, 1))


# ------------------------------------------------------------------ cases


def _timing_fields(timing) -> dict:
  return {
    "median_s": timing.median_s,
    "min_s": timing.min_s,
    "spread": timing.spread,
    "repeats": timing.repeats,
    "compile_s": timing.compile_s,
  }


def matmul_reference(m, k, n, *, repeats) -> list[dict]:
  """bfloat16 matmul rate, with bfloat16 and float32 outputs; the faster is the reference."""
  k_a, k_b = jax.random.split(jax.random.key(1))
  args = [(_normal(k_a, (m, k), jnp.bfloat16), _normal(k_b, (k, n), jnp.bfloat16))]
  args.append((args[0][0] + 1, args[0][1]))
  fns = {
    "bfloat16 out": lambda a, b: jnp.dot(a, b),
    "float32 out": lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32),
  }
  compiled, seconds = {}, {}
  for name, fn in fns.items():
    compiled[name], seconds[name] = _measure.compile_ahead(fn, *args[0])
  timings = _measure.time_side_by_side(compiled, args, repeats=repeats, compile_seconds=seconds)
  return [
    {
      "kind": "reference",
      "implementation": f"matmul bfloat16 [{m}, {k}] x [{k}, {n}], {name}",
      "tflops": 2 * m * k * n / t.median_s / 1e12,
      **_timing_fields(t),
    }
    for name, t in timings.items()
  ]


def copy_reference(rows, cols, *, repeats) -> list[dict]:
  """Device copy bandwidth (``x * c`` over float32), counting read + write."""
  x = _normal(jax.random.key(2), (rows, cols), jnp.float32)
  compiled, seconds = _measure.compile_ahead(lambda x: x * 1.0000001, x)
  t = _measure.time_side_by_side(
    {"copy": compiled}, [(x,), (x + 1,)], repeats=repeats, compile_seconds={"copy": seconds}
  )["copy"]
  return [
    {
      "kind": "reference",
      "implementation": f"copy float32 [{rows}, {cols}] (read + write)",
      "gbps": 2 * x.nbytes / t.median_s / 1e9,
      **_timing_fields(t),
    }
  ]


def fused_case(num_tokens, dim, vocab_size, dtype, *, repeats, max_fraction):
  """Fused (each schedule) and full logits, bfloat16 value-and-grad: time, FLOPs, memory."""
  dtype = jnp.dtype(dtype)
  shape = {"num_tokens": num_tokens, "dim": dim, "vocab_size": vocab_size, "dtype": dtype.name}
  impls = fused_implementations()
  limit = device_memory_bytes()
  logits_bytes = num_tokens * vocab_size * 4
  skipped = limit is not None and logits_bytes > max_fraction * limit
  if not skipped:
    impls["full logits (optax)"] = _full_logits  # last: its peak is the largest
  first = fused_inputs(num_tokens, dim, vocab_size, dtype, seed=0)
  bound = first[0].nbytes + first[1].nbytes  # d hidden + d weight, in the inputs' dtype
  records, compiled, seconds = {}, {}, {}
  for name, fn in impls.items():
    try:
      vg = _value_and_grad(fn)
      compiled[name], seconds[name] = _measure.compile_ahead(vg, *first)
      flops, exact = matmul_flops(vg, *first)
      memory = _measure.memory_bytes(compiled[name])
      records[name] = {
        "implementation": name,
        **shape,
        "matmuls": flops / (2 * num_tokens * dim * vocab_size) if exact else _rule(name),
        "matmul_count_from": "jaxpr" if exact else "rule (a while loop hid the trip count)",
        **memory,
        "grad_bound_bytes": bound,
        "temp_over_bound": memory["temp_bytes"] / bound if memory["temp_bytes"] else None,
        **run_once_for_peak(compiled[name], first),
      }
    except Exception as err:  # one implementation failing leaves the others measured
      records[name] = {"implementation": name, **shape, **_error(err)}
      compiled.pop(name, None)
  if compiled:
    second = fused_inputs(num_tokens, dim, vocab_size, dtype, seed=1)
    timings = _time_or_drop_full(compiled, [first, second], repeats, seconds, records)
    baseline = timings.get("full logits (optax)")
    for name, t in timings.items():
      r = records[name]
      r.update(_timing_fields(t))
      r["tflops"] = r["matmuls"] * 2 * num_tokens * dim * vocab_size / t.median_s / 1e12
      r["useful_tflops"] = 3 * 2 * num_tokens * dim * vocab_size / t.median_s / 1e12
      r["ratio_to_full"] = t.median_s / baseline.median_s if baseline else None
  out = [{"kind": "fused", **r} for r in records.values()]
  if skipped:
    out.append(
      {
        "kind": "fused",
        "implementation": "full logits (optax)",
        **shape,
        "status": "skipped (memory)",
        "logits_bytes": logits_bytes,
        "device_memory_bytes": limit,
      }
    )
  return out


def _rule(name: str) -> float:
  """Matmuls by design: 3 for full logits and the tokens-chunked schedule, else 4."""
  return 3.0 if "full" in name or "token" in name else 4.0


def _time_or_drop_full(compiled, arg_sets, repeats, seconds, records):
  """Time side by side; if that fails (full logits out of memory), time the fused ones."""
  try:
    return _measure.time_side_by_side(compiled, arg_sets, repeats=repeats, compile_seconds=seconds)
  except Exception as err:
    if "full logits (optax)" not in compiled:
      raise
    records["full logits (optax)"].update(_error(err))
    compiled = {k: v for k, v in compiled.items() if k != "full logits (optax)"}
    return _measure.time_side_by_side(compiled, arg_sets, repeats=repeats, compile_seconds=seconds)


# On a GPU the Pallas kernel and XLA, plain and with label smoothing, z-loss and softcap.
KERNEL_OPTIONS = {"label_smoothing": 0.1, "z_loss": 1e-4, "softcap": 30.0}


def sparse_implementations() -> dict:
  """The sparse losses timed: xentax's default (``"auto"``) and optax; on a GPU also each
  ``implementation=``, plain and with :data:`KERNEL_OPTIONS` (the options' cost)."""
  loss = xentax.sparse_categorical_cross_entropy_with_logits
  impls = {
    "xentax": loss,
    "optax": lambda x, y: optax.softmax_cross_entropy_with_integer_labels(x, y).mean(),
  }
  if jax.default_backend() == "gpu":  # the interpreter's time on a CPU means nothing
    for impl in ("xla", "pallas"):
      impls[f"xentax ({impl})"] = functools.partial(loss, implementation=impl)
      impls[f"xentax ({impl}, options)"] = functools.partial(
        loss, implementation=impl, **KERNEL_OPTIONS
      )
  return impls


def sparse_case(batch, classes, dtype, *, repeats) -> list[dict]:
  """Sparse CE over logits, forward and value-and-grad, against optax and copy bandwidth."""
  dtype = jnp.dtype(dtype)
  args = [sparse_inputs(batch, classes, dtype, seed) for seed in (0, 1)]
  shape = {"batch": batch, "classes": classes, "dtype": dtype.name}
  records = []
  for mode in ("forward", "value_and_grad"):
    try:
      records += _sparse_mode(mode, args, shape, repeats=repeats)
    except Exception as err:  # the other mode still runs
      records.append({"kind": "sparse", "mode": mode, **shape, **_error(err)})
  return records


def _sparse_mode(mode, args, shape, *, repeats) -> list[dict]:
  compiled, seconds, memory = {}, {}, {}
  for name, fn in sparse_implementations().items():
    fn = fn if mode == "forward" else jax.value_and_grad(fn)
    compiled[name], seconds[name] = _measure.compile_ahead(fn, *args[0])
    memory[name] = _measure.memory_bytes(compiled[name])
  timings = _measure.time_side_by_side(compiled, args, repeats=repeats, compile_seconds=seconds)
  nbytes = args[0][0].nbytes
  moved = nbytes if mode == "forward" else 2 * nbytes  # read logits (and write d logits)
  return [
    {
      "kind": "sparse",
      "implementation": name,
      "mode": mode,
      **shape,
      **_timing_fields(t),
      "bytes_moved": moved,
      "gbps": moved / t.median_s / 1e9,
      "ratio_to_optax": t.median_s / timings["optax"].median_s,
      **memory[name],
    }
    for name, t in timings.items()
  ]


def _error(err: BaseException) -> dict:
  traceback.print_exc()
  return {"status": "error", "error": f"{type(err).__name__}: {err}"[:2000]}


# ------------------------------------------------------------------ the run


def _cases(config):
  """(name, thunk) in run order, most wanted first.

  The big fused case runs first so the device's peak memory is its own; the percentages
  of the reference rates are filled in once those are measured (:func:`attach_rates`).
  """
  repeats = config["repeats"]

  def fused(tokens, dim, vocab):
    name = f"fused {tokens} x {dim} x {vocab} {config['fused_dtype']}"
    return name, lambda: fused_case(
      tokens,
      dim,
      vocab,
      config["fused_dtype"],
      repeats=repeats,
      max_fraction=config["full_logits_max_fraction"],
    )

  first, *rest = config["fused"]
  yield fused(*first)
  yield "matmul reference", lambda: matmul_reference(*config["matmul"], repeats=repeats)
  yield "copy reference", lambda: copy_reference(*config["copy"], repeats=repeats)
  batch, classes = config["sparse"]
  for dtype in config["sparse_dtypes"]:
    yield (
      f"sparse {batch} x {classes} {dtype}",
      lambda d=dtype: sparse_case(batch, classes, d, repeats=repeats),
    )
  for shape in rest:
    yield fused(*shape)


def attach_rates(records: list[dict]) -> None:
  """Fill in each fused and sparse record's share of the measured reference rates."""
  reference = [r for r in records if r.get("kind") == "reference"]
  matmul = max((r["tflops"] for r in reference if "tflops" in r), default=None)
  copy = next((r["gbps"] for r in reference if "gbps" in r), None)
  for r in records:
    if r.get("kind") == "fused" and "tflops" in r:
      r["matmul_reference_tflops"] = matmul
      r["pct_of_matmul_rate"] = 100 * r["tflops"] / matmul if matmul else None
    if r.get("kind") == "sparse" and "gbps" in r:
      r["copy_reference_gbps"] = copy
      r["pct_of_copy"] = 100 * r["gbps"] / copy if copy else None


def summary(records: list[dict]) -> dict:
  """Best fused share of the matmul rate and sparse forward share of copy bandwidth."""
  fused = [
    r
    for r in records
    if r.get("kind") == "fused" and r.get("pct_of_matmul_rate") and "fused" in r["implementation"]
  ]
  sparse = [
    r
    for r in records
    if r.get("kind") == "sparse" and r.get("implementation") == "xentax" and r.get("pct_of_copy")
  ]
  out: dict[str, object] = {"kind": "summary", "targets": TARGETS}
  if fused:
    biggest = max(r["num_tokens"] * r["dim"] * r["vocab_size"] for r in fused)
    best = max(
      (r for r in fused if r["num_tokens"] * r["dim"] * r["vocab_size"] == biggest),
      key=lambda r: r["pct_of_matmul_rate"],
    )
    out["fused_best"] = best["implementation"]
    out["fused_shape"] = f"{best['num_tokens']} x {best['dim']} x {best['vocab_size']}"
    out["fused_tflops"] = best["tflops"]
    out["fused_pct_of_matmul"] = best["pct_of_matmul_rate"]
    out["fused_ratio_to_full"] = best.get("ratio_to_full")
    out["fused_temp_over_bound"] = best.get("temp_over_bound")
    out["fused_meets_target"] = best["pct_of_matmul_rate"] >= TARGETS["fused_pct_of_matmul"]
  for r in sparse:
    out[f"sparse_{r['mode']}_{r['dtype']}_ratio_to_optax"] = r["ratio_to_optax"]
    if r["mode"] == "forward":
      out[f"sparse_forward_{r['dtype']}_pct_of_copy"] = r["pct_of_copy"]
      out[f"sparse_forward_{r['dtype']}_meets_target"] = (
        r["pct_of_copy"] >= TARGETS["sparse_forward_pct_of_copy"]
      )
  return out


def run(*, quick: bool, out: str | Path | None = None, budget_s: float | None = None):
  """Run every case; returns the records (a header first), writing them after each case."""
  config = CONFIG[quick]
  budget_s = config["budget_s"] if budget_s is None else budget_s
  start = time.perf_counter()
  header = {
    "suite": "gpu",
    "kind": "run",
    "quick": quick,
    "config": config,
    "budget_s": budget_s,
    "status": "running",
    **_measure.device_info(),
    "device_memory_bytes": device_memory_bytes(),
  }
  _say(f"[gpu] {header['device_kind']} ({header['platform']}), jax {header['jax']}")
  records = [header]
  for name, thunk in _cases(config):
    elapsed = time.perf_counter() - start
    if elapsed > budget_s:
      _say(f"[gpu {elapsed:5.0f}s] {name}: skipped (time budget {budget_s:.0f}s)")
      records.append({"suite": "gpu", "kind": "skipped", "case": name, "status": "skipped (time)"})
      continue
    _say(f"[gpu {elapsed:5.0f}s] {name} ...")
    try:
      new = thunk()
    except Exception as err:  # record it and go on with the next case
      new = [{"kind": "error", **_error(err)}]
    new = [{"suite": "gpu", "case": name, "status": "ok", **r} for r in new]
    records += new
    attach_rates(records)
    _say(markdown(new, header=False))
    header["elapsed_s"] = time.perf_counter() - start
    _write(records, out)
  records.append({"suite": "gpu", "case": "summary", "status": "ok", **summary(records)})
  header["status"] = "complete"
  header["elapsed_s"] = time.perf_counter() - start
  _write(records, out)
  return records


def _write(records, out):
  if out is None:
    return
  path = Path(out)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(records, indent=1, default=str) + "\n")
  path.with_suffix(".md").write_text(markdown(records) + "\n")
