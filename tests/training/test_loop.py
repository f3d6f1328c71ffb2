"""The compiled loop: determinism, the NaN stop, optimizers, losses, evaluation, devices."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.metrics import recall_score

import xentax
from xentax import data, training
from xentax.training import TrainConfig

pytestmark = pytest.mark.slow  # trains models


@pytest.fixture(scope="module")
def small_digits():
  return data.digits(seed=0).subset(256, 128)


def test_same_seed_gives_bitwise_identical_params(small_digits):
  config = TrainConfig(
    model="mlp", epochs=2, batch_size=64, seed=5, model_options={"hidden": (32,)}
  )
  a = training.train(config, dataset=small_digits, progress=False)
  b = training.train(config, dataset=small_digits, progress=False)
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
    assert x.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  assert a.history == [
    {**r, "epoch_seconds": h["epoch_seconds"]} for r, h in zip(b.history, a.history, strict=True)
  ]
  other = training.build_model("mlp", small_digits, hidden=(32,)).init(jax.random.key(6))
  assert not np.array_equal(np.asarray(jax.tree.leaves(a.params)[0]), jax.tree.leaves(other)[0])


def test_nan_loss_stops_with_a_message_naming_the_step(small_digits, tmp_path):
  x = small_digits.x_train.copy()
  x[70] = np.inf  # example 70 is in the third batch of 32 when not shuffled
  ds = dataclasses.replace(small_digits, x_train=x)
  config = TrainConfig(epochs=2, batch_size=32, shuffle=False)
  with pytest.raises(
    training.TrainingDiverged, match=r"at step 3 \(epoch 1, batch 3 of 8\)"
  ) as err:
    training.train(config, dataset=ds, progress=False, out_dir=tmp_path)
  assert err.value.step == 3
  assert "step 3" in (tmp_path / "summary.json").read_text()


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "adam"])
def test_train_step_with_any_optimizer_lowers_the_loss(small_digits, optimizer):
  model = training.softmax_regression(64, 10)
  params = model.init(jax.random.key(0))
  opt = training.make_optimizer(optimizer, 0.05)
  step = training.make_train_step(model.apply, training.make_loss("cross_entropy"), opt)
  batch = {"x": jnp.asarray(small_digits.x_train), "y": jnp.asarray(small_digits.y_train)}
  state = opt.init(params)
  losses = []
  for _ in range(5):
    params, state, metrics = step(params, state, batch)
    losses.append(float(metrics["loss"]))
  assert losses[-1] < losses[0]
  assert metrics["loss"].dtype == jnp.float32


def test_any_xentax_loss_can_be_the_objective(small_digits):
  loss_fn = functools.partial(
    xentax.sparse_categorical_cross_entropy_with_logits, label_smoothing=0.1
  )
  model = training.softmax_regression(64, 10)
  params = model.init(jax.random.key(0))
  step = training.make_train_step(model.apply, loss_fn, optax.sgd(0.1))
  batch = {"x": jnp.asarray(small_digits.x_train[:8]), "y": jnp.asarray(small_digits.y_train[:8])}
  _, _, metrics = step(params, optax.sgd(0.1).init(params), batch)
  expected = loss_fn(model.apply(params, batch["x"]), batch["y"])
  assert float(metrics["loss"]) == pytest.approx(float(expected), rel=1e-6)


def test_named_losses_pick_binary_or_sparse_by_logit_shape():
  labels = np.array([0, 0, 0, 1], np.int32)
  logits_n = jnp.array([0.5, -1.0, 2.0, 0.3], jnp.float32)
  weighted = training.make_loss("weighted_cross_entropy", labels=labels, num_classes=2)
  expected = xentax.binary_cross_entropy_with_logits(
    logits_n, labels.astype(np.float32), pos_weight=3.0
  )
  assert float(weighted(logits_n, jnp.asarray(labels))) == pytest.approx(float(expected), rel=1e-6)
  logits_nx2 = jnp.stack([jnp.zeros(4), logits_n], axis=-1)
  focal = training.make_loss("focal")
  expected = xentax.sparse_categorical_focal_loss_with_logits(
    logits_nx2, jnp.asarray(labels), gamma=2.0
  )
  assert float(focal(logits_nx2, jnp.asarray(labels))) == pytest.approx(float(expected), rel=1e-6)
  with pytest.raises(ValueError, match="unknown loss"):
    training.make_loss("hinge")


def test_evaluate_matches_sklearn_recall_and_chunks_exactly():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(1000, 5)).astype(np.float32)
  y = rng.integers(0, 3, 1000).astype(np.int32)
  model = training.softmax_regression(5, 3)
  params = model.init(jax.random.key(1))
  whole = training.evaluate(model.apply, params, x, y, num_classes=3, chunk_size=4096)
  chunked = training.evaluate(model.apply, params, x, y, num_classes=3, chunk_size=300)
  pred = np.argmax(np.asarray(model.apply(params, x)), axis=-1)
  np.testing.assert_allclose(whole["recall"], recall_score(y, pred, average=None), rtol=1e-12)
  assert whole["accuracy"] == pytest.approx(np.mean(pred == y))
  assert chunked["loss"] == pytest.approx(whole["loss"], rel=1e-5)
  assert chunked["recall"] == whole["recall"]


def test_place_batch_and_devices():
  batch = training.place_batch({"x": np.ones((2, 3), np.float32)}, jax.devices("cpu")[1])
  assert batch["x"].devices() == {jax.devices("cpu")[1]}
  assert training.resolve_device("cpu").platform == "cpu"
  with pytest.raises(ValueError, match="'cpu' or 'gpu'"):
    training.resolve_device("tpu9")
  if not any(d.platform == "gpu" for d in jax.devices()):
    with pytest.raises(ValueError, match="no gpu device"):
      training.resolve_device("gpu")


def test_bad_config_is_a_clear_error(small_digits):
  with pytest.raises(ValueError, match="unknown optimizer"):
    training.train(TrainConfig(optimizer="lbfgs9"), dataset=small_digits, progress=False)
  with pytest.raises(ValueError, match="does not fit"):
    training.train(TrainConfig(model="logistic_regression"), dataset=small_digits, progress=False)
