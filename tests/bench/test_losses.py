"""The ``losses`` suite (``xentax.bench._losses``) at tiny sizes: records, not speed."""

import jax.numpy as jnp
import pytest

from xentax.bench import _losses


def test_losses_suite_covers_every_loss_in_both_modes():
  records = _losses.run([(8, 16)], [jnp.float32, jnp.bfloat16], repeats=1)
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
    # Rows with options on ("xentax (option, ...)") compute a different loss.
    values = {impl: float(fn(*args)) for impl, fn in impls.items() if "(" not in impl}
    first = next(iter(values.values()))
    for impl, value in values.items():
      assert value == pytest.approx(first, rel=1e-4), (name, impl)


def test_make_inputs_gives_independent_copies():
  first, second = _losses.make_inputs("sparse", 4, 3, jnp.float32, copies=2)
  assert first[0].shape == (4, 3) and first[0].dtype == jnp.float32
  assert not jnp.array_equal(first[0], second[0])
