"""Datasets: shapes, explicit dtypes, deterministic splits, the options and the errors."""

import numpy as np
import pytest

from xentax import data


@pytest.mark.parametrize(
  "name, num_features, num_classes, size",
  [
    ("digits", 64, 10, 1797),
    ("iris", 4, 3, 150),
    ("wine", 13, 3, 178),
    ("breast_cancer", 30, 2, 569),
    ("cat_not_cat", 256, 2, 100),
  ],
)
def test_tabular_sets_have_explicit_dtypes_and_stratified_splits(
  name, num_features, num_classes, size
):
  ds = data.load(name, seed=3)
  assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
  assert ds.y_train.dtype == np.int32 and ds.y_test.dtype == np.int32
  assert ds.num_features == num_features and ds.num_classes == num_classes
  assert len(ds.y_train) + len(ds.y_test) == size
  assert set(np.unique(ds.y_test)) == set(range(num_classes))


def test_splits_are_deterministic_from_the_seed():
  a, b, c = data.digits(seed=1), data.digits(seed=1), data.digits(seed=2)
  np.testing.assert_array_equal(a.x_train, b.x_train)
  np.testing.assert_array_equal(a.y_test, b.y_test)
  assert not np.array_equal(a.y_train, c.y_train)


def test_cat_not_cat_is_the_decks_100_images_half_cats():
  ds = data.cat_not_cat()
  labels = np.concatenate([ds.y_train, ds.y_test])
  assert len(labels) == 100 and labels.sum() == 50
  assert ds.y_test.mean() == 0.5
  assert ds.info["class_names"] == ["not cat", "cat"]


@pytest.mark.parametrize("num_classes, ratio", [(2, 20.0), (4, 8.0)])
def test_blobs_imbalance_ratio(num_classes, ratio):
  ds = data.blobs(num_classes=num_classes, imbalance_ratio=ratio, num_majority=800)
  sizes = ds.info["class_sizes"]
  assert len(sizes) == num_classes and sizes[0] == 800
  assert sizes[0] / sizes[-1] == pytest.approx(ratio, rel=0.02)
  counts = np.bincount(np.concatenate([ds.y_train, ds.y_test]))
  np.testing.assert_array_equal(counts, sizes)
  assert ds.task == ("binary" if num_classes == 2 else "multiclass")


def test_bad_options_are_clear_errors():
  with pytest.raises(ValueError, match="imbalance_ratio"):
    data.blobs(imbalance_ratio=0.5)
  with pytest.raises(ValueError, match="num_images"):
    data.cat_not_cat(num_images=99)
  with pytest.raises(ValueError, match="unknown dataset"):
    data.load("mnist")
  with pytest.raises(ValueError, match="test_fraction"):
    data.split(
      "x", "binary", np.zeros((4, 1)), np.zeros(4), num_classes=2, test_fraction=1.5, seed=0
    )


@pytest.mark.slow  # reads the docstrings of the whole standard library
def test_next_word_corpus_from_stdlib_docstrings():
  stats = data.corpus_stats()
  assert stats["distinct_words"] > 5000 and stats["words"] > 100_000
  ds = data.next_word(vocab_size=500, context=2, max_docs=300, seed=0)
  assert ds.x_train.shape[1] == 2 and ds.x_train.dtype == np.int32
  assert ds.y_train.max() < 500 and ds.num_classes == 500
  assert ds.info["vocab"][:2] == ["<unk>", "<eos>"] and len(ds.info["vocab"]) == 500
  again = data.next_word(vocab_size=500, context=2, max_docs=300, seed=0)
  np.testing.assert_array_equal(ds.x_test, again.x_test)
  with pytest.raises(ValueError, match="synthetic_next_word"):
    data.next_word(vocab_size=stats["distinct_words"] + 10)


def test_synthetic_next_word_has_any_vocabulary_size():
  ds = data.synthetic_next_word(vocab_size=40_000, num_tokens=5000, seed=0)
  assert ds.num_classes == 40_000 and ds.x_train.dtype == np.int32
  assert ds.y_train.max() < 40_000 and len(ds.y_train) + len(ds.y_test) == 5000 - 3


def test_implicit_feedback_pairs_and_labels():
  ds = data.implicit_feedback(num_users=50, num_items=40, seed=0)
  assert ds.x_train.shape[1] == 2 and ds.x_train.dtype == np.int32
  assert ds.x_train[:, 0].max() < 50 and ds.x_train[:, 1].max() < 40
  assert set(np.unique(ds.y_train)) == {0, 1}
  pairs = {tuple(p) for p in np.concatenate([ds.x_train, ds.x_test])}
  assert len(pairs) == len(ds.y_train) + len(ds.y_test)  # no pair is both train and test


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1])
def test_next_word_test_fraction_outside_0_1_is_named(fraction):
  with pytest.raises(ValueError, match=r"test_fraction must lie in \(0, 1\)"):
    data.next_word(test_fraction=fraction)
