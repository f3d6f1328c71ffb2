"""A training run's configuration: :class:`TrainConfig`, its names and its defaults.

Design notes:
  Every default of ``xentax train`` is written once, here: the command line builds its
  flags from :class:`TrainConfig`'s fields (their type, default and ``metadata["help"]``),
  so ``--help`` shows exactly what a run uses. The learning rate depends on the model
  *and* the optimizer (Adam's 1e-3 leaves SGD at chance accuracy on an MLP), so ``lr=None``
  means :func:`default_lr` of the pair, a table measured on the deck's datasets.

  This module imports no JAX, so the command line can read the names cheaply.
"""

from __future__ import annotations

import dataclasses
from typing import Any

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "rmsprop")

# Names of :data:`xentax.training.MODELS` and :data:`xentax.training.LOSSES`, for the command
# line (``tests/training/test_config.py`` checks they match the builders).
MODEL_NAMES = (
  "logistic_regression",
  "softmax_regression",
  "mlp",
  "cnn",
  "next_word_mlp",
  "matrix_factorisation",
)
LOSS_NAMES = ("cross_entropy", "weighted_cross_entropy", "focal", "categorical_cross_entropy")

# The learning rate by model and optimizer family: "adam" covers adam, adamw and rmsprop
# (per-parameter step sizes, so lr is a step length), "sgd" plain SGD (lr multiplies the
# gradient). SGD with momentum 0.9 takes steps about 10x longer than SGD's, so it uses a
# fifth of SGD's rate. Measured with the defaults (20 epochs, batch 32, digits), test
# accuracy: sgd softmax_regression 0.961, mlp 0.972, cnn 0.958; momentum mlp 0.967;
# adam mlp 0.972; rmsprop mlp 0.972 (Adam's 1e-3 left SGD on the MLP near chance).
_LR_BY_FAMILY = {
  "logistic_regression": {"adam": 1e-2, "sgd": 0.5},
  "softmax_regression": {"adam": 1e-2, "sgd": 0.5},
  "mlp": {"adam": 1e-3, "sgd": 0.1},
  "cnn": {"adam": 2e-3, "sgd": 0.1},
  "next_word_mlp": {"adam": 2e-3, "sgd": 0.5},
  "matrix_factorisation": {"adam": 1e-2, "sgd": 0.5},
}
_FAMILY = {"sgd": "sgd", "momentum": "sgd", "adam": "adam", "adamw": "adam", "rmsprop": "adam"}
_FAMILY_SCALE = {"momentum": 0.2}

DEFAULT_LR: dict[tuple[str, str], float] = {
  (model, optimizer): rates[_FAMILY[optimizer]] * _FAMILY_SCALE.get(optimizer, 1.0)
  for model, rates in _LR_BY_FAMILY.items()
  for optimizer in OPTIMIZERS
}


def default_lr(model: str, optimizer: str) -> float:
  """The learning rate a run of ``model`` with ``optimizer`` uses when ``lr`` is None."""
  return DEFAULT_LR.get((model, optimizer), 1e-2)


# The tasks each model can learn (a dataset's task is :data:`xentax.data.DATASET_TASKS`).
MODEL_TASKS = {
  "logistic_regression": ("binary",),
  "softmax_regression": ("binary", "multiclass"),
  "mlp": ("binary", "multiclass"),
  "cnn": ("binary", "multiclass"),
  "next_word_mlp": ("next_word",),
  "matrix_factorisation": ("implicit_feedback",),
}

# Datasets whose examples are images (``info["image_shape"]``), which the CNN needs.
IMAGE_DATASETS = ("digits", "cat_not_cat")


def _help(text: str, **extra) -> dict:
  return {"help": text, **extra}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """One training run, declaratively (what ``config.json`` records).

  Attributes:
    model: a name in :data:`xentax.training.MODELS`.
    dataset: a name in :data:`xentax.data.DATASETS`.
    loss: a name in :data:`xentax.training.LOSSES`.
    optimizer: ``"sgd"``, ``"momentum"`` (SGD with momentum 0.9), ``"adam"``, ``"adamw"``
      or ``"rmsprop"``.
    epochs: passes over the training set.
    batch_size: examples per step; an epoch has ``ceil(N / batch_size)`` steps, the last
      batch filled with the first examples of the epoch's order.
    lr: learning rate; None uses :func:`default_lr` of ``(model, optimizer)``.
    seed: drives initialisation, shuffling and the dataset split.
    shuffle: reshuffle the training set every epoch.
    device: ``"cpu"``, ``"gpu"`` or None (JAX's default device).
    devices: data parallelism over the first ``devices`` devices of that platform: each
      batch is split along its examples, parameters are replicated and XLA all-reduces
      the gradients. None or 1: one device. ``batch_size`` must be divisible by it.
    steps_per_call: steps per compiled call (None: a whole epoch).
    model_options, dataset_options, loss_options: keyword options for the builders.
  """

  model: str = dataclasses.field(
    default="softmax_regression", metadata=_help("model to train", choices=MODEL_NAMES)
  )
  dataset: str = dataclasses.field(default="digits", metadata=_help("dataset to train on"))
  loss: str = dataclasses.field(
    default="cross_entropy", metadata=_help("training objective", choices=LOSS_NAMES)
  )
  optimizer: str = dataclasses.field(
    default="adam", metadata=_help("optax optimizer", choices=OPTIMIZERS)
  )
  epochs: int = dataclasses.field(default=20, metadata=_help("passes over the training set"))
  batch_size: int = dataclasses.field(default=32, metadata=_help("examples per step"))
  lr: float | None = dataclasses.field(
    default=None, metadata=_help("learning rate (unset: per model and optimizer, see below)")
  )
  seed: int = dataclasses.field(
    default=0, metadata=_help("seed of initialisation, shuffling and split")
  )
  shuffle: bool = dataclasses.field(default=True, metadata=_help("reshuffle every epoch"))
  device: str | None = dataclasses.field(
    default=None, metadata=_help("cpu or gpu (unset: JAX's default)", choices=("cpu", "gpu"))
  )
  devices: int | None = dataclasses.field(
    default=None,
    metadata=_help("data-parallel over N devices (on CPU: N virtual devices)", metavar="N"),
  )
  steps_per_call: int | None = dataclasses.field(
    default=None, metadata=_help("steps per compiled call (unset: a whole epoch)")
  )
  model_options: dict[str, Any] = dataclasses.field(default_factory=dict)
  dataset_options: dict[str, Any] = dataclasses.field(default_factory=dict)
  loss_options: dict[str, Any] = dataclasses.field(default_factory=dict)

  def resolved(self) -> TrainConfig:
    """This config with ``lr`` filled in from :func:`default_lr` when it is None."""
    if self.lr is not None:
      return self
    return dataclasses.replace(self, lr=default_lr(self.model, self.optimizer))

  def to_json(self) -> dict:
    """A JSON-ready dict (NumPy values become lists)."""
    from xentax import records

    return records.jsonable(self)


def _choose(field: str, value, choices) -> None:
  if value not in choices:
    raise ValueError(f"unknown {field} {value!r}; choose from {', '.join(map(str, choices))}")


def validate_config(config: TrainConfig, *, check_dataset: bool = True) -> TrainConfig:
  """``config`` if every field is in its domain, else a ValueError naming the field.

  Checks names (model, loss, optimizer, device and, with ``check_dataset``, dataset and
  whether the model fits the dataset's task), positive sizes and a positive finite
  learning rate, without loading data or starting JAX. Returns ``config`` unchanged.

  Raises:
    ValueError: the first field out of its domain, with the valid choices.
  """
  import math

  _choose("model", config.model, MODEL_NAMES)
  _choose("loss", config.loss, LOSS_NAMES)
  _choose("optimizer", config.optimizer, OPTIMIZERS)
  _choose("device", config.device, (None, "cpu", "gpu"))
  for name in ("epochs", "batch_size"):
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
  for name in ("devices", "steps_per_call"):
    value = getattr(config, name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
      raise ValueError(f"{name} must be an integer >= 1 or unset; got {value!r}")
  if config.lr is not None and not (
    isinstance(config.lr, int | float) and math.isfinite(config.lr) and config.lr > 0
  ):
    raise ValueError(f"lr (learning rate) must be a finite number > 0; got {config.lr!r}")
  if check_dataset:
    from xentax.data import DATASET_TASKS

    _choose("dataset", config.dataset, sorted(DATASET_TASKS))
    task = DATASET_TASKS[config.dataset]
    if config.model == "cnn" and config.dataset not in IMAGE_DATASETS:
      raise ValueError(
        f"model 'cnn' needs an image dataset; {config.dataset!r} is not one: choose from"
        f" {', '.join(IMAGE_DATASETS)}"
      )
    if task not in MODEL_TASKS[config.model]:
      fitting = sorted(d for d, t in DATASET_TASKS.items() if t in MODEL_TASKS[config.model])
      raise ValueError(
        f"model {config.model!r} does not fit dataset {config.dataset!r} (a {task} task);"
        f" {config.model} takes {', '.join(fitting)}"
      )
  return config
