"""Models as pure functions: shapes, parameters and float64 NumPy references."""

import jax
import numpy as np
import pytest

from xentax import data, training

pytestmark = pytest.mark.slow  # compiles the Flax models

RNG = np.random.default_rng(0)


def _np(params):
  return {k: np.asarray(v, np.float64) for k, v in params.items()}


def test_linear_models_match_numpy():
  x = RNG.normal(size=(5, 4)).astype(np.float32)
  model = training.softmax_regression(4, 3)
  params = model.init(jax.random.key(0))
  params["b"] = np.arange(3, dtype=np.float32)
  p = _np(params)
  np.testing.assert_allclose(model.apply(params, x), x @ p["w"] + p["b"], rtol=1e-5, atol=1e-6)
  assert training.num_parameters(params) == 4 * 3 + 3
  logistic = training.logistic_regression(4)
  params = {"w": np.ones(4, np.float32), "b": np.float32(0.5)}
  np.testing.assert_allclose(logistic.apply(params, x), x.sum(1) + 0.5, rtol=1e-5)


def test_next_word_and_matrix_factorisation_match_numpy():
  model = training.next_word_mlp(50, 3, embed_dim=4, hidden=6)
  params = model.init(jax.random.key(1))
  ids = RNG.integers(0, 50, size=(7, 3)).astype(np.int32)
  p = _np(params)
  h = np.tanh(p["embed"][ids].reshape(7, -1) @ p["w_hidden"] + p["b_hidden"])
  np.testing.assert_allclose(
    model.apply(params, ids), h @ p["w_out"] + p["b_out"], rtol=1e-4, atol=1e-6
  )
  np.testing.assert_allclose(training.next_word_hidden(params, ids), h, rtol=1e-4, atol=1e-6)

  mf = training.matrix_factorisation(4, 5, dim=2)
  params = mf.init(jax.random.key(2))
  pairs = np.array([[0, 1], [3, 4]], np.int32)
  p = _np(params)
  expected = [
    p["user"][u] @ p["item"][i] + p["user_bias"][u] + p["item_bias"][i] + p["bias"]
    for u, i in pairs
  ]
  np.testing.assert_allclose(mf.apply(params, pairs), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_flax_models_are_pure_and_deterministic(name):
  ds = data.digits(seed=0).subset(8, 8)
  model = training.build_model(name, ds)
  a, b = model.init(jax.random.key(0)), model.init(jax.random.key(0))
  assert jax.tree.all(jax.tree.map(lambda u, v: bool((u == v).all()), a, b))
  logits = model.apply(a, ds.x_train)
  assert logits.shape == (8, 10) and logits.dtype == np.float32
  np.testing.assert_array_equal(logits, model.apply(a, ds.x_train))


def test_a_model_that_does_not_fit_the_dataset_is_a_clear_error():
  with pytest.raises(ValueError, match="model 'next_word_mlp' does not fit dataset 'digits'"):
    training.build_model("next_word_mlp", data.digits(seed=0))
  with pytest.raises(ValueError, match="unknown model 'svm'"):
    training.build_model("svm", data.digits(seed=0))
