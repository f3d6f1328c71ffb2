"""Test set-up: 8 CPU devices for sharding tests, float64 everywhere, one compilation cache.

x64 is on for the whole suite so that float64 references and ``check_grads`` run in
float64; float32 tests pass float32 arrays explicitly, which also checks that no
default-dtype constant promotes a float32 loss to float64.

Nearly all of the suite's time is XLA compiling small functions, and many tests compile the
same program (a fresh ``jax.jit`` of the same computation, or the same function in the other
xdist worker). A persistent compilation cache, fresh for each run and shared by its workers,
compiles each program once: the controller makes the folder and removes it at the end. Set
``XENTAX_TEST_JAX_CACHE`` to a folder yourself to keep the cache between runs (it is then
never removed), or to an empty string to turn the cache off.

The ``slow`` marker (registered in ``pyproject.toml``; ``--strict-markers`` refuses any
other name) tags what is not needed to check a change to a loss: the CLI, the experiments,
the report sections, the bench suites, training runs, multi-process runs, the gradcheck
matrix and a few long end-to-end or hypothesis tests. ``pytest -m "not slow"`` is the fast
inner loop; plain ``pytest`` (the README's command, and ``.ci/run``) still runs everything.
Every loss's value, gradient and bad-input tests stay unmarked: ``tests/test_markers.py``
fails if a module under ``tests/losses`` is marked ``slow`` as a whole.
"""

import os
import shutil
import tempfile

import jax

# LLVM's optimisation of the compiled kernels is much of a small program's compile time, and
# no test times anything: level 0 took 11% off the categorical and sparse loss tests (95 ->
# 85 s). Set before the first computation initialises the CPU backend.
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0"
jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_enable_x64", True)

CACHE_ENV = "XENTAX_TEST_JAX_CACHE"
_made_cache = None  # the folder this (controller) process made and removes


def pytest_configure(config):
  global _made_cache
  if CACHE_ENV not in os.environ and not hasattr(config, "workerinput"):
    _made_cache = tempfile.mkdtemp(prefix="xentax-test-jax-cache-")
    os.environ[CACHE_ENV] = _made_cache  # xdist workers start later and inherit it
  folder = os.environ.get(CACHE_ENV)
  if folder:
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def pytest_unconfigure(config):
  if _made_cache is not None:
    shutil.rmtree(_made_cache, ignore_errors=True)
