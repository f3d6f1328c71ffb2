"""Offline datasets with deterministic train/test splits and explicit dtypes."""

from xentax.data._dataset import Dataset as Dataset
from xentax.data._dataset import split as split
from xentax.data._movielens import Interactions as Interactions
from xentax.data._movielens import cache_dir as cache_dir
from xentax.data._movielens import fetch_movielens_100k as fetch_movielens_100k
from xentax.data._movielens import movielens_100k as movielens_100k
from xentax.data._recommender import implicit_feedback as implicit_feedback
from xentax.data._registry import DATASET_TASKS as DATASET_TASKS
from xentax.data._registry import DATASETS as DATASETS
from xentax.data._registry import load as load
from xentax.data._tabular import blobs as blobs
from xentax.data._tabular import breast_cancer as breast_cancer
from xentax.data._tabular import cat_not_cat as cat_not_cat
from xentax.data._tabular import digits as digits
from xentax.data._tabular import iris as iris
from xentax.data._tabular import wine as wine
from xentax.data._text import corpus_stats as corpus_stats
from xentax.data._text import next_word as next_word
from xentax.data._text import stdlib_docstrings as stdlib_docstrings
from xentax.data._text import synthetic_next_word as synthetic_next_word

__all__ = [
  "DATASETS",
  "DATASET_TASKS",
  "Dataset",
  "Interactions",
  "blobs",
  "breast_cancer",
  "cache_dir",
  "cat_not_cat",
  "corpus_stats",
  "digits",
  "fetch_movielens_100k",
  "implicit_feedback",
  "iris",
  "load",
  "movielens_100k",
  "next_word",
  "split",
  "stdlib_docstrings",
  "synthetic_next_word",
  "wine",
]
