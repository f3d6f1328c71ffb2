"""The ``losses`` suite (``xentax.bench._losses``) at tiny sizes: records, not speed."""

import jax
import jax.numpy as jnp
import pytest

from xentax.bench import _losses

pytestmark = pytest.mark.slow  # runs the losses bench suite


def test_losses_suite_runs_bfloat16_inputs():
  name = "sparse_categorical_cross_entropy_with_logits"
  records = _losses.run([(8, 16)], [jnp.bfloat16], losses=[name], repeats=1)
  assert {r["dtype"] for r in records} == {"bfloat16"}
  assert {r["implementation"] for r in records} == set(_losses.LOSSES[name][1])


def test_losses_suite_covers_every_loss_in_both_modes():
  records = _losses.run([(8, 16)], [jnp.float32], repeats=1)
  assert {r["loss"] for r in records} == set(_losses.LOSSES)
  assert {r["mode"] for r in records} == {"forward", "value_and_grad"}
  for r in records:
    assert r["median_s"] > 0 and r["gbps"] > 0 and r["temp_bytes"] is not None
    assert r["baseline"] == next(iter(_losses.LOSSES[r["loss"]][1]))
  baselines = [r for r in records if r["implementation"] == r["baseline"]]
  assert all(r["ratio"] == 1.0 for r in baselines)


def test_losses_suite_implementations_agree_on_the_value():
  for name, (kind, impls) in _losses.LOSSES.items():
    args = _losses.make_inputs(kind, 6, 5, jnp.float32, copies=1)[0]
    # "xentax (...)" rows turn options on: their values differ (and are checked below);
    # "naive (checked)" adds range checks to the naive formula, so its value is the same.
    values = {
      impl: float(fn(*args)) for impl, fn in impls.items() if not impl.startswith("xentax (")
    }
    first = next(iter(values.values()))
    for impl, value in values.items():
      assert value == pytest.approx(first, rel=1e-4), (name, impl)


def test_make_inputs_gives_independent_copies():
  first, second = _losses.make_inputs("sparse", 4, 3, jnp.float32, copies=2)
  assert first[0].shape == (4, 3) and first[0].dtype == jnp.float32
  assert not jnp.array_equal(first[0], second[0])


def test_losses_suite_option_rows_are_finite_and_differentiable():
  for name, (kind, impls) in _losses.LOSSES.items():
    args = _losses.make_inputs(kind, 6, 5, jnp.float32, copies=1)[0]
    for impl, fn in impls.items():
      if impl.startswith("xentax ("):
        value, grad = jax.value_and_grad(fn)(*args)
        assert jnp.isfinite(value) and jnp.all(jnp.isfinite(grad)), (name, impl)


def test_naive_rows_are_skipped_only_where_optax_is_the_baseline():
  names = ["sparse_categorical_cross_entropy_with_logits", "jensen_shannon_divergence_with_logits"]
  records = _losses.run(
    [(4, 8)], [jnp.float32], losses=names, repeats=1, modes=("forward",), naive=False
  )
  impls = {name: {r["implementation"] for r in records if r["loss"] == name} for name in names}
  assert impls[names[0]] == set(_losses.LOSSES[names[0]][1]) - {"naive"}
  assert impls[names[1]] == set(_losses.LOSSES[names[1]][1])  # naive is its baseline
  assert {r["mode"] for r in records} == {"forward"}
