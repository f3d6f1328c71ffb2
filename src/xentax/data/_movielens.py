"""MovieLens 100K ratings: fetched once into a local cache, parsed strictly, split leave-last-out.

Design notes:
  * GroupLens serves ML-100K from its own site only; the ``recbole`` 1.2.1 wheel on PyPI ships
    the same 100,000 ratings as ``recbole/dataset_example/ml-100k/ml-100k.inter``. So
    :func:`fetch_movielens_100k` asks ``pip download`` (the index, proxy and certificate set-up
    the user already has) for that one wheel, without its dependencies, and the loader reads
    the member straight out of the zip: nothing is installed or unpacked. GroupLens's own
    ``ml-100k.zip`` and its ``u.data`` (the same four columns, no header) are read as well.
  * The wheel is downloaded into a temporary folder inside the cache and then renamed into
    place, so a wheel found in the cache is a complete download.
  * Parsing is strict (four tab-separated fields, integer ids, a whole rating in 1..5, a
    finite timestamp) and every failure names the file, the line and the command that fetches
    a fresh copy: a truncated or corrupt file is an error, never a silently smaller dataset.
  * The split is leave-last-out by time, the usual protocol for next-item ranking: each
    user's latest interaction is the test row, ties broken by the larger original item id so
    the split depends on the data only, not on the file's row order.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np

CACHE_ENV = "XDG_CACHE_HOME"
FETCH_COMMAND = "xentax data fetch movielens-100k"
WHEEL_REQUIREMENT = "recbole==1.2.1"
WHEEL_NAME = "recbole-1.2.1-py3-none-any.whl"
WHEEL_MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
GROUPLENS_MEMBER = "ml-100k/u.data"  # in GroupLens's own ml-100k.zip
ZIP_MEMBERS = (WHEEL_MEMBER, GROUPLENS_MEMBER)
INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
_MAX_ID = 2**63 - 1  # original ids are kept as int64
_PIP_STDERR_LINES = 5


def cache_dir() -> Path:
  """The folder downloads are cached in: ``$XDG_CACHE_HOME/xentax``, else ``~/.cache/xentax``.

  Returns:
    The path (not created here).
  """
  base = os.environ.get(CACHE_ENV) or Path.home() / ".cache"
  return Path(base) / "xentax"


@dataclasses.dataclass(frozen=True)
class Interactions:
  """User x item ratings split leave-last-out: each user's latest rating is the test row.

  Users and items are re-indexed to contiguous 0-based ids in increasing order of their
  original ids (``np.unique`` order): user ``u`` is ``user_ids[u]`` in the file, item ``i`` is
  ``item_ids[i]``. Items that appear only in a test row still get an index (and a training
  count of 0).

  Split rule: for each user, the interaction with the largest timestamp is the test row; among
  interactions with the same largest timestamp, the one with the larger original item id.
  Every other interaction is training. A user with a single interaction keeps it in training
  and has no test row (ML-100K has at least 20 ratings per user, so all 943 have one).
  Duplicate ``(user, item)`` rows are kept as they are (ML-100K has none).

  Attributes:
    num_users, num_items: number of distinct users and items.
    train_users, train_items: ``[N_train]`` int32 re-indexed ids, in file order.
    train_ratings: ``[N_train]`` int32 ratings, 1..5.
    train_timestamps: ``[N_train]`` float64 timestamps (seconds since the epoch in ML-100K).
    test_users, test_items: ``[N_test]`` int32 re-indexed ids, one row per user that has a
      test row, in increasing user order.
    user_ids, item_ids: ``[num_users]`` / ``[num_items]`` int64 original ids.
  """

  num_users: int
  num_items: int
  train_users: np.ndarray
  train_items: np.ndarray
  train_ratings: np.ndarray
  train_timestamps: np.ndarray
  test_users: np.ndarray
  test_items: np.ndarray
  user_ids: np.ndarray
  item_ids: np.ndarray

  @property
  def num_ratings(self) -> int:
    """All interactions, training and test."""
    return len(self.train_users) + len(self.test_users)

  def train_counts(self) -> np.ndarray:
    """Training interactions per item (popularity), ``[num_items]`` int64."""
    return np.bincount(self.train_items, minlength=self.num_items).astype(np.int64)

  def train_matrix(self) -> np.ndarray:
    """``[num_users, num_items]`` bool, True where the user has a training interaction.

    For ranking evaluation: the items a user was trained on are excluded from their ranking.
    """
    seen_UxI = np.zeros((self.num_users, self.num_items), dtype=bool)
    seen_UxI[self.train_users, self.train_items] = True
    return seen_UxI


def fetch_movielens_100k(cache: str | os.PathLike[str] | None = None) -> Path:
  """The ``recbole`` 1.2.1 wheel holding ML-100K, downloaded by ``pip`` if not cached yet.

  Runs ``python -m pip download --no-deps recbole==1.2.1`` (nothing is installed) into a
  temporary folder inside ``cache`` and moves the wheel into ``cache``; a wheel already there
  is returned without any download.

  Args:
    cache: the folder to keep the wheel in (created if missing); default :func:`cache_dir`.

  Returns:
    The path of ``recbole-1.2.1-py3-none-any.whl`` in ``cache``.

  Raises:
    RuntimeError: ``pip download`` failed (no network, no index) or produced no such wheel;
      the message has pip's last error lines and the alternative of a GroupLens ``u.data``.
    OSError: ``cache`` cannot be created or written.
  """
  folder = cache_dir() if cache is None else Path(cache)
  wheel = folder / WHEEL_NAME
  if wheel.is_file():
    return wheel
  folder.mkdir(parents=True, exist_ok=True)
  staging = Path(tempfile.mkdtemp(prefix=".download-", dir=folder))
  try:
    command = [sys.executable, "-m", "pip", "download", "--no-deps", WHEEL_REQUIREMENT]
    result = subprocess.run(
      [*command, "-d", str(staging)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
      tail = "\n".join((result.stderr or "").strip().splitlines()[-_PIP_STDERR_LINES:])
      raise RuntimeError(
        f"pip download {WHEEL_REQUIREMENT} failed (exit status {result.returncode}):\n"
        f"{tail or '(no output)'}\n"
        "Without network access, download GroupLens's ml-100k.zip elsewhere and pass it, "
        "or its u.data file, instead: xentax.data.movielens_100k('path/to/ml-100k/u.data')"
      )
    downloaded = staging / WHEEL_NAME
    if not downloaded.is_file():
      found = ", ".join(sorted(p.name for p in staging.iterdir())) or "nothing"
      raise RuntimeError(
        f"pip download {WHEEL_REQUIREMENT} succeeded but wrote {found}, not {WHEEL_NAME}"
      )
    os.replace(downloaded, wheel)  # a rename: the cache never holds half a wheel
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return wheel


def movielens_100k(path: str | os.PathLike[str] | None = None) -> Interactions:
  r"""MovieLens 100K ratings, re-indexed and split leave-last-out (see :class:`Interactions`).

  Args:
    path: where to read the ratings: ``None`` for the wheel cached by ``xentax data fetch
      movielens-100k`` (:func:`fetch_movielens_100k`); a ``.whl`` or ``.zip`` file holding
      ``recbole/dataset_example/ml-100k/ml-100k.inter`` (the wheel) or ``ml-100k/u.data``
      (GroupLens's ``ml-100k.zip``); a ``.inter`` file (tab-separated, with RecBole's header
      line); or any other file in GroupLens's ``u.data`` format (``user item rating
      timestamp``, tab-separated, no header).

  Returns:
    The :class:`Interactions`.

  Raises:
    FileNotFoundError: ``path`` is None and nothing is cached (the message names the fetch
      command), or ``path`` does not exist.
    ValueError: a zip that is corrupt or lacks both members, a wrong header, no ratings, or a
      malformed line (not 4 fields, an id that is not a non-negative integer, a rating that is
      not a whole number 1..5, a non-finite timestamp); the message names the file, the line
      and the fetch command.

  Example:
    >>> import pathlib, tempfile
    >>> from xentax import data
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "u.data"
    >>> rows = ["1 10 5 100", "1 20 3 200", "2 10 4 150", "2 30 2 150"]  # user item rating time
    >>> _ = path.write_text("".join(row.replace(" ", "\t") + "\n" for row in rows))
    >>> ml = data.movielens_100k(path)
    >>> ml.num_users, ml.num_items, ml.test_items.tolist(), ml.train_items.tolist()
    (2, 3, [1, 2], [0, 0])
  """
  if path is None:
    source = cache_dir() / WHEEL_NAME
    if not source.is_file():
      raise FileNotFoundError(
        f"MovieLens 100K is not cached at {source}; run `{FETCH_COMMAND}` first "
        "(or pass the path of a GroupLens u.data file)"
      )
  else:
    source = Path(path)
    if not source.is_file():
      raise FileNotFoundError(f"no MovieLens 100K file at {source}")
  text, where, has_header = _read_text(source)
  users, items, ratings, timestamps = _parse(text, where, has_header=has_header)
  return _split(users, items, ratings, timestamps)


def _read_text(source: Path) -> tuple[str, str, bool]:
  """The ratings text, how to name it in errors, and whether it starts with a header."""
  fix = f"delete it and run `{FETCH_COMMAND}` again, or pass a GroupLens u.data file"
  if source.suffix.lower() in (".whl", ".zip"):
    try:
      with zipfile.ZipFile(source) as archive:
        names = set(archive.namelist())
        member = next((m for m in ZIP_MEMBERS if m in names), None)
        if member is None:
          raise ValueError(f"{source} has no member {' or '.join(ZIP_MEMBERS)}; {fix}")
        raw = archive.read(member)
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:
      raise ValueError(f"{source} is not a readable zip file ({err}); {fix}") from None
    where = f"{source}:{member}"
    has_header = member.endswith(".inter")
  else:
    where = str(source)
    raw = source.read_bytes()
    has_header = source.suffix.lower() == ".inter"
  try:
    return raw.decode("utf-8"), where, has_header
  except UnicodeDecodeError as err:
    raise ValueError(f"{where} is not UTF-8 text ({err}); {fix}") from None


def _parse(
  text: str, where: str, *, has_header: bool
) -> tuple[list[int], list[int], list[int], list[float]]:
  """The four columns of ``text``, every line checked; errors name ``where`` and the line."""
  # Physical lines only ("\n", "\r\n"): str.splitlines also breaks at \x0b, \x85 and
  # others, which would shift the line numbers in errors.
  lines = [line.removesuffix("\r") for line in text.split("\n")]
  if lines and lines[-1] == "":
    lines.pop()
  first = 1
  if has_header:
    if not lines or lines[0] != INTER_HEADER:
      got = repr(lines[0]) if lines else "an empty file"
      raise _line_error(where, 1, f"expected the header {INTER_HEADER!r}, got {got}")
    first = 2
  users, items, ratings, timestamps = [], [], [], []
  for number, line in enumerate(lines[first - 1 :], start=first):
    user, item, rating, timestamp = _parse_line(line, where, number)
    users.append(user)
    items.append(item)
    ratings.append(rating)
    timestamps.append(timestamp)
  if not users:
    raise ValueError(f"{where} holds no ratings; run `{FETCH_COMMAND}` for a fresh copy")
  return users, items, ratings, timestamps


def _parse_line(line: str, where: str, number: int) -> tuple[int, int, int, float]:
  fields = line.split("\t")
  if len(fields) != 4:
    raise _line_error(where, number, f"expected 4 tab-separated fields, got {len(fields)}")
  if not all(f.isascii() and f.isdigit() for f in fields[:2]):
    raise _line_error(where, number, "user and item ids must be non-negative integers")
  user, item = int(fields[0]), int(fields[1])
  if max(user, item) > _MAX_ID:
    raise _line_error(where, number, "user and item ids must fit in int64")
  try:
    rating_value, timestamp = float(fields[2]), float(fields[3])
  except ValueError:
    raise _line_error(where, number, "rating and timestamp must be numbers") from None
  if rating_value not in (1, 2, 3, 4, 5):
    raise _line_error(where, number, f"rating must be a whole number 1..5, got {fields[2]!r}")
  if not math.isfinite(timestamp):
    raise _line_error(where, number, f"timestamp must be finite, got {fields[3]!r}")
  return user, item, int(rating_value), timestamp


def _line_error(where: str, number: int, problem: str) -> ValueError:
  return ValueError(
    f"{where}, line {number}: {problem}; the file is malformed or corrupt: "
    f"run `{FETCH_COMMAND}` for a fresh copy"
  )


def _split(
  users: list[int], items: list[int], ratings: list[int], timestamps: list[float]
) -> Interactions:
  """Re-index to 0-based ids and hold out each user's latest interaction (see Interactions)."""
  user_ids, user_N = np.unique(np.asarray(users, np.int64), return_inverse=True)
  item_ids, item_N = np.unique(np.asarray(items, np.int64), return_inverse=True)
  time_N = np.asarray(timestamps, np.float64)
  # Sorted by user, then time, then original item id: each user's last row is the held-out one.
  order = np.lexsort((item_ids[item_N], time_N, user_N))
  last_in_user = np.append(user_N[order][1:] != user_N[order][:-1], True)
  first_in_user = np.insert(last_in_user[:-1], 0, True)
  held_out = order[last_in_user & ~first_in_user]  # a user's only row stays in training
  is_train = np.ones(len(user_N), dtype=bool)
  is_train[held_out] = False
  return Interactions(
    num_users=len(user_ids),
    num_items=len(item_ids),
    train_users=user_N[is_train].astype(np.int32),
    train_items=item_N[is_train].astype(np.int32),
    train_ratings=np.asarray(ratings, np.int32)[is_train],
    train_timestamps=time_N[is_train],
    test_users=user_N[held_out].astype(np.int32),
    test_items=item_N[held_out].astype(np.int32),
    user_ids=user_ids,
    item_ids=item_ids,
  )
