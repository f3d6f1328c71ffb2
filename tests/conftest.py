"""Test set-up: 8 CPU devices for sharding tests, float64 everywhere, one compilation cache.

x64 is on for the whole suite so that float64 references and ``check_grads`` run in
float64; float32 tests pass float32 arrays explicitly, which also checks that no
default-dtype constant promotes a float32 loss to float64.

Nearly all of the suite's time is XLA compiling small functions, and many tests compile the
same program (a fresh ``jax.jit`` of the same computation, or the same function in the other
xdist worker). A persistent compilation cache, shared by the workers and kept between runs
in ``.pytest_cache/xentax-jax`` (cleared when it grows past 1 GiB),
compiles each program once: a rerun after a change to one loss compiles only that loss's
programs again. Its keys are the programs themselves (HLO, compile options, jax and jaxlib
versions), so an entry never stands in for changed code. Set ``XENTAX_TEST_JAX_CACHE`` to
another folder, or to an empty string to turn the cache off (a clean clone, as in CI, starts
with none).

The ``slow`` marker (registered in ``pyproject.toml``; ``--strict-markers`` refuses any
other name) tags what is not needed to check a change to a loss: the CLI, the experiments,
the report sections, the bench suites, training runs, multi-process runs, the gradcheck
matrix, the documentation's examples, the packaging subprocesses and a few long end-to-end
or hypothesis tests. ``pytest -m "not slow"`` is the fast
inner loop; plain ``pytest`` (the README's command, and ``.ci/run``) still runs everything.
Every loss's value, gradient and bad-input tests stay unmarked: ``tests/test_markers.py``
fails if a module under ``tests/losses`` is marked ``slow`` as a whole.

Parametrised tests run every combination of their parameters (loss x reduction x traced,
say) in the full suite. The fast loop keeps an *each-choice* subset of each one
(:func:`each_choice`): every value of every parameter in at least one case, so every loss,
every reduction and both the traced and the concrete path still meet every test; the other
combinations are marked ``slow`` at collection.
"""

import collections
import os
import shutil

import jax
import pytest

# Compiling is most of the suite's time, and no test times anything: LLVM's optimisation level
# 0, and XLA:CPU's classic fusion emitters, which compile a small program faster than the MLIR
# ones. Both are code generation only: the programs (HLO) are the ones users run. Set before
# the first computation initialises the CPU backend.
os.environ["XLA_FLAGS"] = (
  f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0"
  " --xla_cpu_use_fusion_emitters=false"
)
jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_enable_x64", True)

CACHE_ENV = "XENTAX_TEST_JAX_CACHE"
CACHE_MAX_BYTES = 1 << 30


def pytest_configure(config):
  folder = os.environ.get(CACHE_ENV, str(config.rootpath / ".pytest_cache" / "xentax-jax"))
  if not folder:
    return
  if not hasattr(config, "workerinput") and _size(folder) > CACHE_MAX_BYTES:
    # Cleared whole, before the workers start: JAX's own size limit (an LRU index kept
    # under a file lock) slows every compilation.
    shutil.rmtree(folder, ignore_errors=True)
  jax.config.update("jax_compilation_cache_dir", folder)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _size(folder) -> int:
  """Bytes in the files directly under ``folder`` (0 when it does not exist)."""
  try:
    return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file())
  except FileNotFoundError:
    return 0


def each_choice(cases: list, optional: frozenset = frozenset()) -> set:
  """Indices of a small subset of ``cases`` covering every ``(parameter, value)`` pair.

  ``cases`` are ``{parameter: value key}`` dicts; greedy set cover, the case covering the
  most uncovered pairs first (ties: the earliest), so the choice is the same in every worker.
  Cases in ``optional`` (expected failures, skips) are never chosen: their pairs count only
  where another case has them too.
  """
  pairs = [set(case.items()) for case in cases]
  candidates = [i for i in range(len(cases)) if i not in optional]
  if not candidates:
    return set()
  uncovered = set().union(*(pairs[i] for i in candidates))
  chosen = {candidates[0]}  # at least one case, also when no case has parameters
  uncovered -= pairs[candidates[0]]
  while uncovered:
    best = max(candidates, key=lambda i: (len(pairs[i] & uncovered), -i))
    chosen.add(best)
    uncovered -= pairs[best]
  return chosen


def _value_key(value) -> tuple:
  """A parameter value's identity across the cases of one test: its type and repr."""
  return (type(value).__qualname__, repr(value))


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(config, items):
  groups = collections.defaultdict(list)
  for item in items:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and item.get_closest_marker("slow") is None:
      groups[item.nodeid.split("[")[0]].append(item)
  for group in groups.values():
    cases = [{k: _value_key(v) for k, v in item.callspec.params.items()} for item in group]
    optional = frozenset(
      i
      for i, item in enumerate(group)
      if any(item.get_closest_marker(m) for m in ("xfail", "skip", "skipif"))
    )
    keep = each_choice(cases, optional)
    for i, item in enumerate(group):
      if i not in keep:
        item.add_marker(pytest.mark.slow)


@pytest.fixture
def movielens_cache(tmp_path, monkeypatch):
  """A small generated MovieLens-format wheel in a fresh ``$XDG_CACHE_HOME`` (40 users, 60
  items, 15 ratings each), so ``xentax.data.movielens_100k()`` and the recommender
  experiment run offline; returns the wheel's path."""
  import zipfile

  import numpy as np

  rng = np.random.default_rng(0)
  lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
  for user in range(1, 41):
    for k, item in enumerate(rng.choice(np.arange(1, 61), 15, replace=False)):
      lines.append(f"{user}\t{item}\t{rng.integers(1, 6)}\t{1000 * user + k}")
  wheel = tmp_path / "cache" / "xentax" / "recbole-1.2.1-py3-none-any.whl"
  wheel.parent.mkdir(parents=True)
  with zipfile.ZipFile(wheel, "w") as archive:
    archive.writestr("recbole/dataset_example/ml-100k/ml-100k.inter", "\n".join(lines) + "\n")
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
  return wheel
