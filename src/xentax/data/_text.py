"""A word-level next-word corpus from text that ships with Python: standard-library docstrings.

Design notes:
  The text is every module, class and function docstring in the standard library's source
  files (``sysconfig.get_paths()["stdlib"]``, excluding ``test``, ``idlelib`` and
  ``site-packages``), read with :mod:`ast` in sorted path order, so nothing is imported
  (no side effects) and the corpus is deterministic for a given Python version. On
  CPython 3.11 it holds about 8,000 docstrings, 262,000 words and 9,300 distinct words
  (lower-cased ``[a-z]+('[a-z]+)?``); :func:`corpus_stats` reports the exact numbers.
  A vocabulary above the distinct-word count is impossible with this text; for large
  vocabularies (e.g. >= 32k) use :func:`synthetic_next_word`, whose token stream has any
  vocabulary size.

  Train and test are split by docstring (not by window), so no test context was seen in
  training.
"""

from __future__ import annotations

import ast
import collections
import functools
import re
import sysconfig
from pathlib import Path

import numpy as np

from xentax.data._dataset import Dataset

UNK, EOS = "<unk>", "<eos>"
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SKIP_PARTS = {"test", "tests", "idlelib", "site-packages", "dist-packages", "__pycache__"}


@functools.lru_cache(maxsize=1)
def stdlib_docstrings() -> tuple[list[str], ...]:
  """The standard library's docstrings, each as a list of lower-cased words (cached)."""
  root = Path(sysconfig.get_paths()["stdlib"])
  files = sorted(p for p in root.rglob("*.py") if not _SKIP_PARTS & set(p.parts))
  docs = []
  for path in files:
    try:
      tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, OSError):
      continue
    for node in ast.walk(tree):
      if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        doc = ast.get_docstring(node)
        words = _WORD.findall(doc.lower()) if doc else []
        if len(words) >= 2:
          docs.append(words)
  if not docs:
    raise RuntimeError(
      f"found no standard-library source under {root}; this Python ships without .py files,"
      " so use xentax.data.synthetic_next_word instead"
    )
  return tuple(docs)


def corpus_stats() -> dict[str, int]:
  """Docstrings, words and distinct words in the standard-library corpus."""
  docs = stdlib_docstrings()
  counts = collections.Counter(word for doc in docs for word in doc)
  return {
    "docstrings": len(docs),
    "words": sum(counts.values()),
    "distinct_words": len(counts),
  }


def _windows(docs, word_to_id: dict[str, int], context: int) -> tuple[np.ndarray, np.ndarray]:
  """Every (previous ``context`` ids, next id) pair; each docstring is padded with EOS."""
  eos, unk = word_to_id[EOS], word_to_id[UNK]
  xs, ys = [], []
  for doc in docs:
    ids = np.asarray([eos] * context + [word_to_id.get(w, unk) for w in doc] + [eos], np.int32)
    view = np.lib.stride_tricks.sliding_window_view(ids, context + 1)
    xs.append(view[:, :context])
    ys.append(view[:, context])
  return np.concatenate(xs).astype(np.int32), np.concatenate(ys).astype(np.int32)


def next_word(
  *,
  vocab_size: int = 2000,
  context: int = 3,
  seed: int = 0,
  test_fraction: float = 0.1,
  max_docs: int | None = None,
) -> Dataset:
  """Next-word prediction on standard-library docstrings.

  Token 0 is ``<unk>`` (every word outside the vocabulary), token 1 is ``<eos>`` (the end
  of a docstring, and the padding before its start); the remaining ``vocab_size - 2`` ids
  are the most frequent training words, ties broken alphabetically.

  Args:
    vocab_size: number of token ids, at least 3 and at most the training docstrings'
      distinct words plus 2 (the held-out docstrings' words do not count; the error
      names the limit).
    context: number of previous words the model sees.
    seed: the docstring-level train/test split depends only on this.
    test_fraction: fraction of docstrings held out, in ``(0, 1)`` (at least one is).
    max_docs: use only the first ``max_docs`` docstrings of the shuffled order (smaller,
      faster runs).

  Returns:
    A ``"next_word"`` :class:`Dataset` with ``x`` of shape ``[N, context]`` (int32) and
    ``info["vocab"]`` the id-to-word list.

  Raises:
    ValueError: ``vocab_size`` outside its range, ``context < 1``, or ``test_fraction``
      outside ``(0, 1)``.
  """
  if context < 1:
    raise ValueError(f"context must be >= 1; got {context}")
  if not 0 < test_fraction < 1:
    raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction}")
  docs = list(stdlib_docstrings())
  order = np.random.default_rng(seed).permutation(len(docs))
  if max_docs is not None:
    order = order[:max_docs]
  num_test = max(1, round(len(order) * test_fraction))
  test_docs = [docs[i] for i in order[:num_test]]
  train_docs = [docs[i] for i in order[num_test:]]
  counts = collections.Counter(word for doc in train_docs for word in doc)
  if not 3 <= vocab_size <= len(counts) + 2:
    raise ValueError(
      f"vocab_size must lie in [3, {len(counts) + 2}] for this corpus ({len(counts)} distinct"
      f" training words); got {vocab_size}. Use xentax.data.synthetic_next_word for more."
    )
  ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: vocab_size - 2]
  vocab = [UNK, EOS] + [word for word, _ in ranked]
  word_to_id = {word: i for i, word in enumerate(vocab)}
  x_train, y_train = _windows(train_docs, word_to_id, context)
  x_test, y_test = _windows(test_docs, word_to_id, context)
  return Dataset(
    name=f"stdlib_next_word_v{vocab_size}",
    task="next_word",
    x_train=x_train,
    y_train=y_train,
    x_test=x_test,
    y_test=y_test,
    num_classes=vocab_size,
    info={"vocab": vocab, "context": context, **corpus_stats()},
  )


def synthetic_next_word(
  *,
  vocab_size: int = 32768,
  num_tokens: int = 200_000,
  context: int = 3,
  branching: int = 8,
  zipf_exponent: float = 1.1,
  seed: int = 0,
  test_fraction: float = 0.1,
) -> Dataset:
  """Synthetic next-token data with any vocabulary size (for large-vocabulary work).

  Tokens follow a random first-order Markov chain: each token has ``branching``
  successors drawn from a Zipf(``zipf_exponent``) unigram distribution, so a model that
  uses the previous token beats the unigram baseline, as with real text.

  Args:
    vocab_size: number of token ids (>= 2).
    num_tokens: length of the token stream; the last ``test_fraction`` is the test set.
    context: number of previous tokens the model sees.
    branching: successors per token.
    zipf_exponent: skew of the unigram distribution.
    seed: drives the chain and the stream.
    test_fraction: fraction of the stream held out (a contiguous tail).

  Returns:
    A ``"next_word"`` :class:`Dataset`.

  Raises:
    ValueError: ``vocab_size < 2`` or ``context < 1``.
  """
  if vocab_size < 2 or context < 1:
    raise ValueError(f"need vocab_size >= 2 and context >= 1; got {vocab_size}, {context}")
  rng = np.random.default_rng(seed)
  unigram = 1.0 / np.arange(1, vocab_size + 1) ** zipf_exponent
  unigram /= unigram.sum()
  successors = rng.choice(vocab_size, size=(vocab_size, branching), p=unigram)
  choices = rng.integers(0, branching, size=num_tokens)
  stream = np.empty(num_tokens, np.int64)
  stream[0] = rng.choice(vocab_size, p=unigram)
  for t in range(1, num_tokens):
    stream[t] = successors[stream[t - 1], choices[t]]
  view = np.lib.stride_tricks.sliding_window_view(stream, context + 1)
  x, y = view[:, :context].astype(np.int32), view[:, context].astype(np.int32)
  cut = round(len(y) * (1 - test_fraction))
  return Dataset(
    name=f"synthetic_next_word_v{vocab_size}",
    task="next_word",
    x_train=np.ascontiguousarray(x[:cut]),
    y_train=np.ascontiguousarray(y[:cut]),
    x_test=np.ascontiguousarray(x[cut:]),
    y_test=np.ascontiguousarray(y[cut:]),
    num_classes=vocab_size,
    info={"context": context, "branching": branching},
  )
