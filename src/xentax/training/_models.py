"""The deck's models as pure functions of parameter pytrees.

Design notes:
  A :class:`Model` is a pair of pure functions: ``init(key) -> params`` and
  ``apply(params, x) -> logits``. ``params`` is a plain nested dict of float32 arrays, so
  any Optax optimizer, ``jax.tree`` utility or sharding rule applies. The MLP and the CNN
  are written with ``flax.nnx`` and turned into this form with ``nnx.split`` /
  ``nnx.merge``: the graph definition is fixed when the model is built and only the
  parameter dict travels through ``jit``. Binary models return one logit per example
  (``[N]``); multiclass models return ``[N, C]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from xentax.training._config import MODEL_NAMES, MODEL_TASKS

Params = Any
F32 = jnp.float32


@dataclasses.dataclass(frozen=True)
class Model:
  """A model as two pure functions.

  Attributes:
    name: e.g. ``"softmax_regression"``.
    init: ``init(key) -> params``, a nested dict of float32 arrays.
    apply: ``apply(params, x) -> logits``; ``[N]`` for binary models, ``[N, C]`` otherwise.
  """

  name: str
  init: Callable[[jax.Array], Params]
  apply: Callable[[Params, jax.Array], jax.Array]


def num_parameters(params: Params) -> int:
  """Total number of scalars in a parameter pytree."""
  return sum(int(leaf.size) for leaf in jax.tree.leaves(params))


def logistic_regression(num_features: int) -> Model:
  """``logit = x . w + b``, one logit per example, for binary cross-entropy with logits."""

  def init(key):
    del key  # a convex model: start at zero, as the deck's analysis allows
    return {"w": jnp.zeros((num_features,), F32), "b": jnp.zeros((), F32)}

  def apply(params, x_NxD):
    return x_NxD.reshape(x_NxD.shape[0], -1) @ params["w"] + params["b"]

  return Model("logistic_regression", init, apply)


def softmax_regression(num_features: int, num_classes: int, *, use_bias: bool = True) -> Model:
  """``logits = x @ theta (+ b)``; the deck's ``z = X_j * theta``.

  Args:
    num_features: ``D``.
    num_classes: ``C``.
    use_bias: add a bias ``b`` of shape ``[C]``; the deck's pseudocode has none (append a
      column of ones to ``x`` instead).
  """

  def init(key):
    params = {"w": 0.01 * jax.random.normal(key, (num_features, num_classes), F32)}
    if use_bias:
      params["b"] = jnp.zeros((num_classes,), F32)
    return params

  def apply(params, x_NxD):
    logits_NxC = x_NxD.reshape(x_NxD.shape[0], -1) @ params["w"]
    return logits_NxC + params["b"] if use_bias else logits_NxC

  return Model("softmax_regression", init, apply)


def _from_nnx(name: str, build: Callable[[nnx.Rngs], nnx.Module]) -> Model:
  """Wrap an ``nnx`` module constructor as a :class:`Model` of pure functions."""
  graphdef, _ = nnx.split(nnx.eval_shape(lambda: build(nnx.Rngs(params=0))))

  def init(key):
    return nnx.to_pure_dict(nnx.state(build(nnx.Rngs(params=key))))

  def apply(params, x):
    return nnx.merge(graphdef, params)(x)

  return Model(name, init, apply)


class _MLP(nnx.Module):
  def __init__(self, sizes: list[int], *, rngs: nnx.Rngs):
    self.layers = nnx.List(
      [
        nnx.Linear(a, b, rngs=rngs, param_dtype=F32, dtype=F32)
        for a, b in zip(sizes[:-1], sizes[1:], strict=True)
      ]
    )

  def __call__(self, x):
    x = x.reshape(x.shape[0], -1)
    for layer in self.layers[:-1]:
      x = nnx.relu(layer(x))
    return self.layers[-1](x)


def mlp(num_features: int, num_classes: int, *, hidden: tuple[int, ...] = (256, 128)) -> Model:
  """A ReLU multilayer perceptron (``flax.nnx``), logits ``[N, C]``."""
  sizes = [num_features, *hidden, num_classes]
  return _from_nnx("mlp", lambda rngs: _MLP(sizes, rngs=rngs))


def _patches_3x3(x_NxHxWxC: jax.Array) -> jax.Array:
  """Each pixel's 3x3 neighbourhood (zero-padded), ``[N, H, W, 9 C]``."""
  height, width = x_NxHxWxC.shape[1:3]
  padded = jnp.pad(x_NxHxWxC, ((0, 0), (1, 1), (1, 1), (0, 0)))
  shifts = [padded[:, i : i + height, j : j + width] for i in range(3) for j in range(3)]
  return jnp.concatenate(shifts, axis=-1)


class _Conv3x3(nnx.Module):
  """A 3x3 'SAME' convolution written as patches @ kernel.

  On CPU, XLA's convolution inside a scanned training step ran about 25 times slower than
  this matrix product for 8x8 images, and the two are the same linear map.
  """

  def __init__(self, in_channels: int, out_channels: int, *, rngs: nnx.Rngs):
    fan_in = 9 * in_channels
    init = nnx.initializers.lecun_normal()
    self.kernel = nnx.Param(init(rngs.params(), (fan_in, out_channels), F32))
    self.bias = nnx.Param(jnp.zeros((out_channels,), F32))

  def __call__(self, x_NxHxWxC):
    return _patches_3x3(x_NxHxWxC) @ self.kernel[...] + self.bias[...]


class _CNN(nnx.Module):
  def __init__(self, image_shape, num_classes: int, channels: tuple[int, int], *, rngs):
    height, width = image_shape
    c1, c2 = channels
    self.image_shape = tuple(image_shape)
    self.conv1 = _Conv3x3(1, c1, rngs=rngs)
    self.conv2 = _Conv3x3(c1, c2, rngs=rngs)
    kw = {"rngs": rngs, "param_dtype": F32, "dtype": F32}
    self.dense = nnx.Linear((height // 2) * (width // 2) * c2, 128, **kw)
    self.out = nnx.Linear(128, num_classes, **kw)

  def __call__(self, x):
    x = x.reshape(x.shape[0], *self.image_shape, 1)
    x = nnx.relu(self.conv1(x))
    x = nnx.relu(self.conv2(x))
    x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
    x = nnx.relu(self.dense(x.reshape(x.shape[0], -1)))
    return self.out(x)


def cnn(
  num_classes: int = 10, *, image_shape: tuple[int, int] = (8, 8), channels=(32, 64)
) -> Model:
  """A small CNN for 8x8 digits (``flax.nnx``): two 3x3 convs, 2x2 pooling, two dense layers.

  Inputs may be flat (``[N, H*W]``) or images; logits are ``[N, C]``.
  """
  return _from_nnx(
    "cnn", lambda rngs: _CNN(tuple(image_shape), num_classes, tuple(channels), rngs=rngs)
  )


def next_word_mlp(
  vocab_size: int, context: int, *, embed_dim: int = 64, hidden: int = 256
) -> Model:
  """Bengio et al.'s neural language model: embed the context words, concatenate, MLP.

  ``x`` is ``[N, context]`` int32 token ids; logits are ``[N, vocab_size]``.

  References:
    Bengio, Ducharme, Vincent and Jauvin, "A neural probabilistic language model", JMLR 2003.
  """

  def init(key):
    k_embed, k_hidden, k_out = jax.random.split(key, 3)
    fan_in = context * embed_dim
    return {
      "embed": 0.1 * jax.random.normal(k_embed, (vocab_size, embed_dim), F32),
      "w_hidden": jax.random.normal(k_hidden, (fan_in, hidden), F32) / jnp.sqrt(F32(fan_in)),
      "b_hidden": jnp.zeros((hidden,), F32),
      "w_out": jax.random.normal(k_out, (hidden, vocab_size), F32) / jnp.sqrt(F32(hidden)),
      "b_out": jnp.zeros((vocab_size,), F32),
    }

  def apply(params, ids_NxK):
    return next_word_hidden(params, ids_NxK) @ params["w_out"] + params["b_out"]

  return Model("next_word_mlp", init, apply)


def next_word_hidden(params: Params, ids_NxK: jax.Array) -> jax.Array:
  """The hidden state of :func:`next_word_mlp`, ``[N, hidden]``: everything but the output layer.

  The logits are ``next_word_hidden(params, ids) @ params["w_out"] + params["b_out"]``; a
  fused loss (:func:`xentax.fused_linear_cross_entropy`) takes this hidden state and the
  output layer's weights instead of the logits.
  """
  e_NxKxE = params["embed"][ids_NxK]
  return jnp.tanh(e_NxKxE.reshape(ids_NxK.shape[0], -1) @ params["w_hidden"] + params["b_hidden"])


def matrix_factorisation(num_users: int, num_items: int, *, dim: int = 16) -> Model:
  """Matrix factorisation for implicit feedback: ``logit = u . v + b_u + b_i + b``.

  ``x`` is ``[N, 2]`` int32 ``(user, item)`` pairs; one logit per pair, for binary
  cross-entropy with logits.
  """

  def init(key):
    k_user, k_item = jax.random.split(key)
    return {
      "user": 0.1 * jax.random.normal(k_user, (num_users, dim), F32),
      "item": 0.1 * jax.random.normal(k_item, (num_items, dim), F32),
      "user_bias": jnp.zeros((num_users,), F32),
      "item_bias": jnp.zeros((num_items,), F32),
      "bias": jnp.zeros((), F32),
    }

  def apply(params, pairs_Nx2):
    users, items = pairs_Nx2[:, 0], pairs_Nx2[:, 1]
    dot_N = jnp.sum(params["user"][users] * params["item"][items], axis=-1)
    return dot_N + params["user_bias"][users] + params["item_bias"][items] + params["bias"]

  return Model("matrix_factorisation", init, apply)


MODELS = MODEL_NAMES


def build_model(name: str, dataset, **options) -> Model:
  """Build model ``name`` sized for ``dataset`` (a :class:`xentax.data.Dataset`).

  Raises:
    ValueError: unknown model, or one that does not fit the dataset's task.
  """
  task = dataset.task
  if name not in MODEL_TASKS:
    raise ValueError(f"unknown model {name!r}; choose from {list(MODELS)}")
  if task not in MODEL_TASKS[name]:
    raise ValueError(
      f"model {name!r} does not fit dataset {dataset.name!r} (task {task!r}); it needs a"
      f" {' or '.join(MODEL_TASKS[name])} dataset"
    )
  if name == "logistic_regression":
    return logistic_regression(dataset.num_features, **options)
  if name == "softmax_regression":
    return softmax_regression(dataset.num_features, dataset.num_classes, **options)
  if name == "mlp":
    return mlp(dataset.num_features, dataset.num_classes, **options)
  if name == "cnn":
    if "image_shape" not in dataset.info:
      raise ValueError(f"model 'cnn' needs an image dataset; {dataset.name!r} has no image_shape")
    return cnn(dataset.num_classes, image_shape=tuple(dataset.info["image_shape"]), **options)
  if name == "next_word_mlp":
    return next_word_mlp(dataset.num_classes, dataset.info["context"], **options)
  return matrix_factorisation(dataset.info["num_users"], dataset.info["num_items"], **options)
