"""The :class:`Dataset` container and the deterministic train/test split every loader uses.

Design notes:
  Datasets are NumPy arrays with explicit dtypes (features float32, class labels int32,
  token ids int32), so they are unaffected by ``jax_enable_x64`` and can be placed on any
  device by the training loop. Splits are stratified where labels are classes, and depend
  only on ``seed``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

TASKS = ("binary", "multiclass", "next_word", "implicit_feedback")


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A train/test split with its task.

  Attributes:
    name: short name, e.g. ``"digits"``.
    task: one of ``"binary"`` (labels 0/1, one logit per example), ``"multiclass"``
      (labels in ``[0, num_classes)``), ``"next_word"`` (``x`` holds ``[N, context]`` token
      ids, ``y`` the next token id) or ``"implicit_feedback"`` (``x`` holds ``[N, 2]``
      ``(user, item)`` ids, ``y`` is 1 for an interaction and 0 otherwise).
    x_train, y_train, x_test, y_test: NumPy arrays; features float32, ids and labels int32.
    num_classes: number of classes (2 for binary, the vocabulary size for next-word).
    info: extra facts (feature names, vocabulary, sizes) for reports.
  """

  name: str
  task: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray
  num_classes: int
  info: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def num_features(self) -> int:
    """Size of one example's feature vector (or its context length / id pair)."""
    return int(np.prod(self.x_train.shape[1:]))

  def class_counts(self) -> np.ndarray:
    """Training examples per class (``[num_classes]``, int64)."""
    return np.bincount(self.y_train, minlength=self.num_classes)

  def subset(self, num_train: int, num_test: int) -> Dataset:
    """The first ``num_train`` / ``num_test`` examples (for smoke tests)."""
    return dataclasses.replace(
      self,
      x_train=self.x_train[:num_train],
      y_train=self.y_train[:num_train],
      x_test=self.x_test[:num_test],
      y_test=self.y_test[:num_test],
    )


def split(
  name: str,
  task: str,
  x: np.ndarray,
  y: np.ndarray,
  *,
  num_classes: int,
  test_fraction: float,
  seed: int,
  standardize: bool = False,
  stratify: bool = True,
  info: dict[str, Any] | None = None,
) -> Dataset:
  """Split ``x, y`` into train and test deterministically from ``seed``.

  Args:
    name, task, num_classes, info: see :class:`Dataset`.
    x: ``[N, ...]`` features.
    y: ``[N]`` labels.
    test_fraction: fraction of examples held out, in ``(0, 1)``.
    seed: the split depends only on this.
    standardize: scale each feature to zero mean and unit variance using training
      statistics only (constant features are left centred).
    stratify: keep class proportions in both halves.

  Returns:
    The :class:`Dataset`.

  Raises:
    ValueError: ``test_fraction`` outside ``(0, 1)`` or an unknown ``task``.
  """
  if not 0 < test_fraction < 1:
    raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction}")
  if task not in TASKS:
    raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
  x_train, x_test, y_train, y_test = train_test_split(
    x, y, test_size=test_fraction, random_state=seed, stratify=y if stratify else None
  )
  if standardize:
    mean = x_train.mean(axis=0)
    std = x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    x_train = (x_train - mean) / std
    x_test = (x_test - mean) / std
  is_float = np.issubdtype(np.asarray(x).dtype, np.floating) or standardize
  xdtype = np.float32 if is_float else np.int32
  return Dataset(
    name=name,
    task=task,
    x_train=np.ascontiguousarray(x_train, dtype=xdtype),
    y_train=np.ascontiguousarray(y_train, dtype=np.int32),
    x_test=np.ascontiguousarray(x_test, dtype=xdtype),
    y_test=np.ascontiguousarray(y_test, dtype=np.int32),
    num_classes=num_classes,
    info=dict(info or {}),
  )
