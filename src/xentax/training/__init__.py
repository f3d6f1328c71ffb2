"""Models as pure functions, one Optax training loop, the deck's reference loop."""

from xentax.training._config import DEFAULT_LR as DEFAULT_LR
from xentax.training._config import OPTIMIZERS as OPTIMIZERS
from xentax.training._config import TrainConfig as TrainConfig
from xentax.training._config import default_lr as default_lr
from xentax.training._config import validate_config as validate_config
from xentax.training._deck import deck_sgd as deck_sgd
from xentax.training._deck import with_bias_column as with_bias_column
from xentax.training._loop import TrainingDiverged as TrainingDiverged
from xentax.training._loop import TrainResult as TrainResult
from xentax.training._loop import epoch_order as epoch_order
from xentax.training._loop import make_multi_step as make_multi_step
from xentax.training._loop import make_optimizer as make_optimizer
from xentax.training._loop import make_train_step as make_train_step
from xentax.training._loop import place_batch as place_batch
from xentax.training._loop import resolve_device as resolve_device
from xentax.training._loop import train as train
from xentax.training._models import MODELS as MODELS
from xentax.training._models import Model as Model
from xentax.training._models import build_model as build_model
from xentax.training._models import cnn as cnn
from xentax.training._models import logistic_regression as logistic_regression
from xentax.training._models import matrix_factorisation as matrix_factorisation
from xentax.training._models import mlp as mlp
from xentax.training._models import next_word_hidden as next_word_hidden
from xentax.training._models import next_word_mlp as next_word_mlp
from xentax.training._models import num_parameters as num_parameters
from xentax.training._models import softmax_regression as softmax_regression
from xentax.training._objectives import LOSSES as LOSSES
from xentax.training._objectives import accuracy as accuracy
from xentax.training._objectives import balanced_class_weights as balanced_class_weights
from xentax.training._objectives import evaluate as evaluate
from xentax.training._objectives import make_loss as make_loss
from xentax.training._records import RunWriter as RunWriter
from xentax.training._records import check_run_dir as check_run_dir

__all__ = [
  "DEFAULT_LR",
  "LOSSES",
  "MODELS",
  "OPTIMIZERS",
  "Model",
  "RunWriter",
  "TrainConfig",
  "TrainResult",
  "TrainingDiverged",
  "accuracy",
  "balanced_class_weights",
  "build_model",
  "check_run_dir",
  "cnn",
  "deck_sgd",
  "default_lr",
  "epoch_order",
  "evaluate",
  "logistic_regression",
  "make_loss",
  "make_multi_step",
  "make_optimizer",
  "make_train_step",
  "matrix_factorisation",
  "mlp",
  "next_word_hidden",
  "next_word_mlp",
  "num_parameters",
  "place_batch",
  "resolve_device",
  "softmax_regression",
  "train",
  "validate_config",
  "with_bias_column",
]
