"""Data-parallel training over a ("data",) mesh: same result as one device, batches split."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

import xentax
from tests._tolerances import tol
from xentax import data, training
from xentax.training import TrainConfig, _data_parallel, _loop

pytestmark = pytest.mark.slow  # trains on 4 devices and in a fresh process

CONFIG = TrainConfig(model="mlp", epochs=2, batch_size=64, seed=3, model_options={"hidden": (32,)})


@pytest.fixture(scope="module")
def small_digits():
  return data.digits(seed=0).subset(256, 64)


def test_four_devices_match_one_device_and_split_every_batch(small_digits, monkeypatch):
  placed, real_place_batch = [], _loop.place_batch

  def recording_place_batch(batch, device):
    placed.append(real_place_batch(batch, device))
    return placed[-1]

  one = training.train(CONFIG, dataset=small_digits, progress=False)
  monkeypatch.setattr(_loop, "place_batch", recording_place_batch)
  four = training.train(
    TrainConfig(**{**CONFIG.__dict__, "devices": 4}), dataset=small_digits, progress=False
  )

  # every chunk the loop placed is [steps, 64, ...] split into four [steps, 16, ...] shards
  assert len(placed) == CONFIG.epochs
  for batch in placed:
    x = batch["x"]
    assert x.sharding.spec == jax.sharding.PartitionSpec(None, "data")
    assert len(x.sharding.device_set) == 4
    shards = x.addressable_shards
    assert sorted(s.device.id for s in shards) == [d.id for d in jax.devices()[:4]]
    assert {s.data.shape for s in shards} == {(x.shape[0], 16, 64)}
    assert {s.data.shape for s in batch["y"].addressable_shards} == {(x.shape[0], 16)}

  # the same training up to float reassociation of the batch sums; parameters replicated
  for a, b in zip(jax.tree.leaves(one.params), jax.tree.leaves(four.params), strict=True):
    assert b.dtype == np.float32 and b.sharding.is_fully_replicated
    assert len(b.sharding.device_set) == 4
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), **tol(np.float32, "value"))
  assert not np.array_equal(  # it trained: the parameters moved from their start
    np.asarray(jax.tree.leaves(four.params)[0]),
    np.asarray(jax.tree.leaves(four.model.init(jax.random.key(CONFIG.seed)))[0]),
  )
  for r1, r4 in zip(one.history, four.history, strict=True):
    assert r4["train_loss"] == pytest.approx(r1["train_loss"], rel=1e-5)
    assert r4["test_accuracy"] == r1["test_accuracy"]
  assert four.summary["devices"] == 4 and one.summary["devices"] == 1


def test_batch_sharding_splits_the_leading_axis():
  mesh = _data_parallel.data_mesh(8)
  x = training.place_batch(np.arange(32.0).reshape(16, 2), _data_parallel.batch_sharding(mesh))
  assert [s.data.shape for s in x.addressable_shards] == [(2, 2)] * 8
  np.testing.assert_array_equal(np.asarray(x.addressable_shards[1].data), [[4.0, 5.0], [6.0, 7.0]])


def test_the_partitioned_step_all_reduces_the_gradients(small_digits):
  # GSPMD splits the step by example; the batch sums then need an all-reduce, which a
  # step run whole on every device (no partitioning) would not contain.
  mesh = _data_parallel.data_mesh(4)
  model = training.build_model("softmax_regression", small_digits)
  opt = training.make_optimizer("sgd", 0.1)
  params = jax.device_put(model.init(jax.random.key(0)), _data_parallel.replicated(mesh))
  step = training.make_train_step(model.apply, training.make_loss("cross_entropy"), opt)
  batch = {"x": small_digits.x_train[:64], "y": small_digits.y_train[:64]}
  sharded = training.place_batch(batch, _data_parallel.batch_sharding(mesh))
  assert "all-reduce" in step.lower(params, opt.init(params), sharded).compile().as_text()
  assert "all-reduce" not in step.lower(params, opt.init(params), batch).compile().as_text()


def test_more_devices_than_exist_is_a_clear_error(small_digits):
  config = TrainConfig(**{**CONFIG.__dict__, "devices": 16})
  with pytest.raises(ValueError, match=r"devices=16 needs 16 cpu devices.*has 8.*jax_num_cpu"):
    training.train(config, dataset=small_digits, progress=False)


def test_batch_size_not_divisible_by_devices_is_a_clear_error(small_digits):
  config = TrainConfig(**{**CONFIG.__dict__, "batch_size": 30, "devices": 4})
  with pytest.raises(ValueError, match="batch_size 30 is not divisible by devices=4"):
    training.train(config, dataset=small_digits, progress=False)


def test_xentax_train_devices_from_a_fresh_process(tmp_path):
  # a fresh interpreter has one CPU device until the CLI asks for more
  src = str(Path(xentax.__file__).resolve().parents[1])
  env = {**os.environ, "PYTHONPATH": src, "JAX_PLATFORMS": "cpu"}
  env.pop("XLA_FLAGS", None)
  argv = ["train", "--model", "softmax_regression", "--dataset", "iris", "--epochs", "1"]
  out = subprocess.run(
    [sys.executable, "-m", "xentax.cli", *argv, "--devices", "4", "--out", str(tmp_path)],
    capture_output=True,
    text=True,
    env=env,
  )
  assert out.returncode == 0, out.stderr
  assert json.loads((tmp_path / "summary.json").read_text())["devices"] == 4
  assert json.loads((tmp_path / "config.json").read_text())["devices"] == 4
