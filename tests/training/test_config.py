"""TrainConfig: its names match the builders, defaults per (model, optimizer), validation."""

import dataclasses

import pytest

from xentax import data, training
from xentax.training import TrainConfig, _config, default_lr, validate_config


def test_the_cheap_name_tables_match_the_builders():
  assert training.MODELS == _config.MODEL_NAMES
  assert training.LOSSES == _config.LOSS_NAMES
  assert set(data.DATASET_TASKS) == set(data.DATASETS)
  for name in ("digits", "iris", "breast_cancer", "cat_not_cat", "blobs", "blobs_imbalanced"):
    ds = data.load(name)
    assert ds.task == data.DATASET_TASKS[name], name
    assert ("image_shape" in ds.info) == (name in _config.IMAGE_DATASETS), name


def test_learning_rate_defaults_depend_on_model_and_optimizer():
  assert default_lr("mlp", "adam") == 1e-3
  assert default_lr("mlp", "sgd") == 0.1
  assert default_lr("mlp", "momentum") == pytest.approx(0.02)
  assert TrainConfig(model="mlp", optimizer="sgd").resolved().lr == 0.1
  assert TrainConfig(model="mlp", optimizer="sgd", lr=0.3).resolved().lr == 0.3
  assert set(training.DEFAULT_LR) == {(m, o) for m in training.MODELS for o in training.OPTIMIZERS}


@pytest.mark.parametrize(
  ("changes", "message"),
  [
    ({"model": "svm"}, "unknown model 'svm'; choose from logistic_regression"),
    ({"dataset": "mnist"}, "unknown dataset 'mnist'; choose from blobs"),
    ({"loss": "hinge"}, "unknown loss 'hinge'"),
    ({"optimizer": "lbfgs"}, "unknown optimizer 'lbfgs'"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"epochs": 0}, "epochs must be an integer >= 1"),
    ({"batch_size": 2.5}, "batch_size must be an integer >= 1"),
    ({"lr": -1.0}, "lr (learning rate) must be a finite number > 0"),
    ({"steps_per_call": 0}, "steps_per_call must be an integer >= 1 or unset"),
    ({"model": "matrix_factorisation"}, "does not fit dataset 'digits'"),
  ],
)
def test_validate_config_names_the_field(changes, message):
  with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
    validate_config(dataclasses.replace(TrainConfig(), **changes))


def test_every_flag_field_has_help_and_a_single_default():
  for field in dataclasses.fields(TrainConfig):
    if field.name.endswith("_options"):
      assert "help" not in field.metadata
      continue
    assert field.metadata["help"], field.name
    assert field.default is not dataclasses.MISSING, field.name
