"""The deck's classifiers: logistic and softmax regression, an MLP and a CNN, with bars.

Each function is one experiment: ``fn(root, scale) -> ExperimentResult``; ``bar`` is the
test accuracy the deck's claim needs.
"""

from __future__ import annotations

from pathlib import Path

from xentax.experiments._common import train_run
from xentax.experiments._records import ExperimentResult
from xentax.training import TrainConfig


def binary(root: Path, scale: str) -> ExperimentResult:
  """Logistic regression with binary CE: breast cancer (bar 0.95) and the deck's cat / not cat."""
  rows = [
    train_run(
      root,
      "breast_cancer",
      TrainConfig(model="logistic_regression", dataset="breast_cancer", epochs=30),
      scale,
      bar=0.95,
    ),
    train_run(
      root,
      "cat_not_cat",
      TrainConfig(
        model="logistic_regression", dataset="cat_not_cat", optimizer="sgd", lr=0.1, epochs=30
      ),
      scale,
    ),
  ]
  return ExperimentResult("binary", scale, rows)


def multiclass(root: Path, scale: str) -> ExperimentResult:
  """Softmax regression on digits (bar 0.95), iris and wine."""
  rows = [
    train_run(root, "digits", TrainConfig(dataset="digits", epochs=30), scale, bar=0.95),
    train_run(root, "iris", TrainConfig(dataset="iris", epochs=50, lr=0.05, batch_size=16), scale),
    train_run(root, "wine", TrainConfig(dataset="wine", epochs=50, lr=0.05, batch_size=16), scale),
  ]
  return ExperimentResult("multiclass", scale, rows)


def mlp_digits(root: Path, scale: str) -> ExperimentResult:
  """A ``flax.nnx`` MLP on digits (bar 0.97)."""
  rows = [train_run(root, "mlp", TrainConfig(model="mlp", epochs=40), scale, bar=0.97)]
  return ExperimentResult("mlp_digits", scale, rows)


def cnn_digits(root: Path, scale: str) -> ExperimentResult:
  """A small CNN on the 8x8 digits (bar 0.98)."""
  rows = [train_run(root, "cnn", TrainConfig(model="cnn", epochs=20), scale, bar=0.98)]
  return ExperimentResult("cnn_digits", scale, rows)
