"""Tabular and image datasets: scikit-learn's shipped sets, the deck's cat / not cat, blobs.

Design notes:
  Everything is offline: scikit-learn ships ``load_digits``, ``load_iris``, ``load_wine``
  and ``load_breast_cancer`` inside the package, and the other sets are generated from a
  seed. Digits keep their 0..16 pixel scale divided by 16 (so the CNN sees images);
  the other sklearn sets are standardised with training statistics.
"""

from __future__ import annotations

import numpy as np
from sklearn import datasets as sk_datasets

from xentax.data._dataset import Dataset, split


def digits(*, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
  """scikit-learn's 8x8 handwritten digits: 1797 images, 10 classes.

  ``x`` is ``[N, 64]`` float32 in ``[0, 1]`` (reshape to ``[N, 8, 8]`` for images).
  """
  raw = sk_datasets.load_digits()
  return split(
    "digits",
    "multiclass",
    raw.data / 16.0,
    raw.target,
    num_classes=10,
    test_fraction=test_fraction,
    seed=seed,
    info={"image_shape": [8, 8]},
  )


def _sklearn_table(loader, name: str, task: str, seed: int, test_fraction: float) -> Dataset:
  raw = loader()
  num_classes = len(raw.target_names)
  return split(
    name,
    task,
    raw.data,
    raw.target,
    num_classes=num_classes,
    test_fraction=test_fraction,
    seed=seed,
    standardize=True,
    info={"class_names": [str(n) for n in raw.target_names]},
  )


def iris(*, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
  """Fisher's iris: 150 flowers, 4 standardised features, 3 classes."""
  return _sklearn_table(sk_datasets.load_iris, "iris", "multiclass", seed, test_fraction)


def wine(*, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
  """UCI wine: 178 wines, 13 standardised features, 3 cultivars."""
  return _sklearn_table(sk_datasets.load_wine, "wine", "multiclass", seed, test_fraction)


def breast_cancer(*, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
  """Wisconsin breast cancer: 569 tumours, 30 standardised features; label 1 is benign."""
  return _sklearn_table(
    sk_datasets.load_breast_cancer, "breast_cancer", "binary", seed, test_fraction
  )


def cat_not_cat(
  *, seed: int = 0, test_fraction: float = 0.2, num_images: int = 100, image_size: int = 16
) -> Dataset:
  """The deck's example: 100 images, 50 contain a cat and 50 do not (synthetic).

  Each image is ``image_size x image_size`` grey noise; a "cat" image also has a faint cat
  face (two triangular ears and two eyes) at a random small offset. Label 1 means cat.

  Args:
    seed: drives both the images and the split.
    test_fraction: fraction held out (stratified, so the test set is 50/50 too).
    num_images: even number of images; half are cats.
    image_size: side of the square image (>= 12).

  Returns:
    A binary :class:`Dataset` with ``x`` of shape ``[N, image_size**2]``.

  Raises:
    ValueError: odd ``num_images`` or ``image_size < 12``.
  """
  if num_images % 2 or num_images < 4:
    raise ValueError(f"num_images must be even and >= 4 (50/50 split); got {num_images}")
  if image_size < 12:
    raise ValueError(f"image_size must be >= 12 to fit the cat face; got {image_size}")
  rng = np.random.default_rng(seed)
  face = np.zeros((10, 10), np.float32)
  for row in range(4):  # two triangular ears
    face[row, 1 : 2 + row] = 1.0
    face[row, 8 - row : 9] = 1.0
  face[6, 2:4] = face[6, 6:8] = 1.0  # eyes
  labels = np.repeat(np.array([1, 0], np.int32), num_images // 2)
  images = rng.normal(0.0, 0.35, size=(num_images, image_size, image_size)).astype(np.float32)
  slack = image_size - 10
  for n in np.flatnonzero(labels):
    top, left = rng.integers(0, min(slack, 1) + 1, size=2) + (slack - min(slack, 1)) // 2
    images[n, top : top + 10, left : left + 10] += face
  return split(
    "cat_not_cat",
    "binary",
    images.reshape(num_images, -1),
    labels,
    num_classes=2,
    test_fraction=test_fraction,
    seed=seed,
    info={"image_shape": [image_size, image_size], "class_names": ["not cat", "cat"]},
  )


def blobs(
  *,
  num_classes: int = 2,
  imbalance_ratio: float = 1.0,
  num_majority: int = 1000,
  num_features: int = 2,
  separation: float = 2.0,
  seed: int = 0,
  test_fraction: float = 0.3,
) -> Dataset:
  """Gaussian blobs, one per class, with a configurable class imbalance.

  Class ``c`` has ``num_majority / imbalance_ratio ** (c / (num_classes - 1))`` examples, so
  class 0 is the majority and the last class has ``imbalance_ratio`` times fewer examples.
  Centres lie on a circle (in the first two features) of radius ``separation``; each blob
  has unit variance, so neighbouring blobs overlap.

  Args:
    num_classes: >= 2.
    imbalance_ratio: majority-to-minority size ratio (>= 1); 20 gives the 1:20 set.
    num_majority: examples in class 0.
    num_features: >= 2.
    separation: distance of each centre from the origin.
    seed: drives the points and the split.
    test_fraction: fraction held out (stratified).

  Returns:
    A ``"binary"`` :class:`Dataset` for two classes, ``"multiclass"`` otherwise.
    ``info["minority_class"]`` is the smallest class.

  Raises:
    ValueError: bad ``num_classes``, ``imbalance_ratio`` or ``num_features``.
  """
  if num_classes < 2:
    raise ValueError(f"num_classes must be >= 2; got {num_classes}")
  if imbalance_ratio < 1:
    raise ValueError(f"imbalance_ratio must be >= 1 (majority / minority); got {imbalance_ratio}")
  if num_features < 2:
    raise ValueError(f"num_features must be >= 2; got {num_features}")
  rng = np.random.default_rng(seed)
  sizes = [
    max(2, round(num_majority / imbalance_ratio ** (c / (num_classes - 1))))
    for c in range(num_classes)
  ]
  xs, ys = [], []
  for c, size in enumerate(sizes):
    angle = 2 * np.pi * c / num_classes
    centre = np.zeros(num_features)
    centre[:2] = separation * np.cos(angle), separation * np.sin(angle)
    xs.append(rng.normal(centre, 1.0, size=(size, num_features)))
    ys.append(np.full(size, c))
  return split(
    f"blobs_{num_classes}c_1to{imbalance_ratio:g}",
    "binary" if num_classes == 2 else "multiclass",
    np.concatenate(xs).astype(np.float32),
    np.concatenate(ys),
    num_classes=num_classes,
    test_fraction=test_fraction,
    seed=seed,
    info={"class_sizes": sizes, "minority_class": num_classes - 1},
  )
