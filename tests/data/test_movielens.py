"""MovieLens 100K: the three file formats, re-indexing, the leave-last-out split, the errors.

Every test writes its own small file in the real formats (GroupLens ``u.data``, RecBole's
``.inter`` with its header, the wheel's zip member); the split is checked against a plain
Python computation. Only the last test reads the real wheel, when it is cached.
"""

import collections
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from xentax import data

MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
WHEEL = "recbole-1.2.1-py3-none-any.whl"
FETCH = "xentax data fetch movielens-100k"

# (user, item, rating, timestamp), original 1-based ids. User 7: a tie at time 300 between
# items 5 and 9 (9 is held out); user 3: a single interaction (stays in training).
ROWS = [
  (7, 5, 4, 300),
  (2, 5, 3, 100),
  (7, 9, 2, 300),
  (3, 12, 5, 50),
  (2, 9, 1, 200),
  (7, 12, 5, 100),
  (2, 12, 4, 150),
]


def _lines(rows):
  return "".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in rows)


def _write_udata(path, rows):
  path.write_text(_lines(rows))
  return path


def _write_inter(path, rows):
  path.write_text(HEADER + "\n" + _lines(rows))
  return path


def _write_wheel(path, rows, member=MEMBER):
  with zipfile.ZipFile(path, "w") as archive:
    archive.writestr("recbole/__init__.py", "")
    archive.writestr(member, HEADER + "\n" + _lines(rows))
  return path


def _reference(rows):
  """The split in plain Python: per user, the max of (timestamp, item) is the test row."""
  users = sorted({u for u, _, _, _ in rows})
  items = sorted({i for _, i, _, _ in rows})
  by_user = collections.defaultdict(list)
  for k, (u, i, _, t) in enumerate(rows):
    by_user[u].append((t, i, k))
  held_out = {max(v)[2] for v in by_user.values() if len(v) > 1}
  train = [(users.index(u), items.index(i), r, t) for k, (u, i, r, t) in enumerate(rows)]
  test = sorted((users.index(rows[k][0]), items.index(rows[k][1])) for k in held_out)
  return users, items, [row for k, row in enumerate(train) if k not in held_out], test


def _as_rows(ml):
  train = list(
    zip(
      ml.train_users.tolist(),
      ml.train_items.tolist(),
      ml.train_ratings.tolist(),
      ml.train_timestamps.tolist(),
      strict=True,
    )
  )
  return train, list(zip(ml.test_users.tolist(), ml.test_items.tolist(), strict=True))


@pytest.mark.parametrize("kind", ["u.data", "inter", "wheel", "grouplens_zip"])
def test_every_format_gives_the_same_interactions(tmp_path, kind):
  if kind == "u.data":
    path = _write_udata(tmp_path / "u.data", ROWS)
  elif kind == "inter":
    path = _write_inter(tmp_path / "ml-100k.inter", ROWS)
  elif kind == "wheel":
    path = _write_wheel(tmp_path / WHEEL, ROWS)
  else:
    path = tmp_path / "ml-100k.zip"
    with zipfile.ZipFile(path, "w") as archive:
      archive.writestr("ml-100k/u.data", _lines(ROWS))
  ml = data.movielens_100k(path)
  assert (ml.num_users, ml.num_items, ml.num_ratings) == (3, 3, 7)
  np.testing.assert_array_equal(ml.user_ids, [2, 3, 7])
  np.testing.assert_array_equal(ml.item_ids, [5, 9, 12])
  # hand-computed: user 2 (index 0) -> item 9 at t=200; user 7 (index 2) -> item 9 (the tie)
  np.testing.assert_array_equal(ml.test_users, [0, 2])
  np.testing.assert_array_equal(ml.test_items, [1, 1])
  np.testing.assert_array_equal(ml.train_users, [2, 0, 1, 2, 0])
  np.testing.assert_array_equal(ml.train_items, [0, 0, 2, 2, 2])
  np.testing.assert_array_equal(ml.train_ratings, [4, 3, 5, 5, 4])
  np.testing.assert_array_equal(ml.train_timestamps, [300, 100, 50, 100, 150])


def test_dtypes_and_zero_based_contiguous_ids(tmp_path):
  ml = data.movielens_100k(_write_udata(tmp_path / "u.data", ROWS))
  for name in ("train_users", "train_items", "train_ratings", "test_users", "test_items"):
    assert getattr(ml, name).dtype == np.int32, name
  assert ml.user_ids.dtype == np.int64 and ml.item_ids.dtype == np.int64
  assert ml.train_timestamps.dtype == np.float64
  users = np.concatenate([ml.train_users, ml.test_users])
  items = np.concatenate([ml.train_items, ml.test_items])
  assert set(users.tolist()) == set(range(ml.num_users))
  assert set(items.tolist()) == set(range(ml.num_items))


def test_the_tie_rule_holds_out_the_larger_original_item_id(tmp_path):
  # Same timestamp, item 30 first in the file and item 4 second: 30 is held out either way,
  # and item ids compare as numbers (30 > 4), not as text ("30" < "4").
  for rows in ([(1, 30, 3, 10), (1, 4, 3, 10)], [(1, 4, 3, 10), (1, 30, 3, 10)]):
    ml = data.movielens_100k(_write_udata(tmp_path / "u.data", rows))
    assert ml.item_ids[ml.test_items].tolist() == [30]
    assert ml.item_ids[ml.train_items].tolist() == [4]


def test_a_user_with_one_interaction_keeps_it_in_training(tmp_path):
  ml = data.movielens_100k(_write_udata(tmp_path / "u.data", [(5, 1, 2, 9)]))
  assert ml.train_users.tolist() == [0] and ml.train_items.tolist() == [0]
  assert ml.test_users.size == 0 and ml.test_items.size == 0


def test_the_split_matches_plain_python_on_random_data_with_ties(tmp_path):
  rng = np.random.default_rng(0)
  pairs = {(int(u), int(i)) for u, i in rng.integers(1, 60, size=(400, 2))}
  # few distinct timestamps, so many users have ties at their latest one
  rows = [(u * 3, i * 7 + 1, int(rng.integers(1, 6)), int(rng.integers(0, 4))) for u, i in pairs]
  rows = [rows[k] for k in rng.permutation(len(rows))]
  ml = data.movielens_100k(_write_inter(tmp_path / "x.inter", rows))
  users, items, train, test = _reference(rows)
  assert ml.user_ids.tolist() == users and ml.item_ids.tolist() == items
  got_train, got_test = _as_rows(ml)
  assert got_train == train
  assert got_test == test
  times = collections.defaultdict(list)
  for u, _, _, t in rows:
    times[u].append(t)
  ties = sum(1 for ts in times.values() if ts.count(max(ts)) > 1)
  assert ties > 5  # the tie rule is exercised


def test_train_counts_and_train_matrix(tmp_path):
  ml = data.movielens_100k(_write_udata(tmp_path / "u.data", ROWS))
  _, _, train, _ = _reference(ROWS)
  counts = collections.Counter(i for _, i, _, _ in train)
  expected = [counts[i] for i in range(ml.num_items)]
  assert ml.train_counts().dtype == np.int64
  assert ml.train_counts().tolist() == expected == [2, 0, 3]  # item 9 only in test rows
  seen = ml.train_matrix()
  assert seen.shape == (3, 3) and seen.dtype == bool
  pairs = {(u, i) for u, i, _, _ in train}
  assert {(int(u), int(i)) for u, i in zip(*np.nonzero(seen), strict=True)} == pairs


def test_cache_dir_follows_xdg_cache_home(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert data.cache_dir() == tmp_path / "xdg" / "xentax"
  monkeypatch.delenv("XDG_CACHE_HOME")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert data.cache_dir() == tmp_path / "home" / ".cache" / "xentax"


def test_the_default_path_is_the_cached_wheel(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  with pytest.raises(FileNotFoundError, match=f"run `{FETCH}` first"):
    data.movielens_100k()
  (tmp_path / "xentax").mkdir()
  _write_wheel(tmp_path / "xentax" / WHEEL, ROWS)
  assert data.movielens_100k().num_ratings == len(ROWS)


def test_a_missing_file_is_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="no MovieLens 100K file at .*nope"):
    data.movielens_100k(tmp_path / "nope")


def test_a_corrupt_zip_is_a_clear_error(tmp_path):
  path = tmp_path / WHEEL
  path.write_bytes(b"PK\x03\x04 not really a zip")
  with pytest.raises(ValueError, match=f"{WHEEL} is not a readable zip file.*{FETCH}"):
    data.movielens_100k(path)


def test_a_truncated_wheel_is_a_clear_error(tmp_path):
  path = _write_wheel(tmp_path / WHEEL, ROWS * 50)
  path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
  with pytest.raises(ValueError, match=f"not a readable zip file.*{FETCH}"):
    data.movielens_100k(path)


def test_a_zip_without_the_member_is_a_clear_error(tmp_path):
  path = _write_wheel(tmp_path / WHEEL, ROWS, member="recbole/other.inter")
  with pytest.raises(ValueError, match=f"has no member {MEMBER} or ml-100k/u.data.*{FETCH}"):
    data.movielens_100k(path)


@pytest.mark.parametrize(
  "line, problem",
  [
    ("7\t5\t4", "expected 4 tab-separated fields, got 3"),
    ("7\t5\t4\t300\t1", "expected 4 tab-separated fields, got 5"),
    ("7 5 4 300", "expected 4 tab-separated fields, got 1"),
    ("", "expected 4 tab-separated fields, got 1"),
    ("7\tx\t4\t300", "user and item ids must be non-negative integers"),
    ("7.0\t5\t4\t300", "user and item ids must be non-negative integers"),
    ("-7\t5\t4\t300", "user and item ids must be non-negative integers"),
    ("7\t5\t0\t300", "rating must be a whole number 1..5, got '0'"),
    ("7\t5\t6\t300", "rating must be a whole number 1..5, got '6'"),
    ("7\t5\t3.5\t300", "rating must be a whole number 1..5, got '3.5'"),
    ("7\t5\tnan\t300", "rating must be a whole number 1..5, got 'nan'"),
    ("7\t5\tgood\t300", "rating and timestamp must be numbers"),
    ("7\t5\t4\tinf", "timestamp must be finite, got 'inf'"),
    ("7\t5\t4\tnan", "timestamp must be finite, got 'nan'"),
  ],
)
def test_a_malformed_line_names_the_file_and_line(tmp_path, line, problem):
  text = _lines(ROWS[:3]) + line + "\n" + _lines(ROWS[3:])
  path = tmp_path / "u.data"
  path.write_text(text)
  with pytest.raises(ValueError) as err:
    data.movielens_100k(path)
  assert str(err.value).startswith(f"{path}, line 4: {problem};")
  assert FETCH in str(err.value)
  # the same line in a wheel: one line further down (the header), named by its member
  wheel = tmp_path / WHEEL
  with zipfile.ZipFile(wheel, "w") as archive:
    archive.writestr(MEMBER, HEADER + "\n" + text)
  with pytest.raises(ValueError, match=f"{WHEEL}:{MEMBER}, line 5: "):
    data.movielens_100k(wheel)


def test_a_wrong_or_missing_header_and_an_empty_file_are_errors(tmp_path):
  path = tmp_path / "x.inter"
  path.write_text(_lines(ROWS))  # a u.data body under an .inter name: no header
  with pytest.raises(ValueError, match="line 1: expected the header"):
    data.movielens_100k(path)
  path.write_text("")
  with pytest.raises(ValueError, match="line 1: expected the header .* got an empty file"):
    data.movielens_100k(path)
  path.write_text(HEADER + "\n")
  with pytest.raises(ValueError, match=f"holds no ratings; run `{FETCH}`"):
    data.movielens_100k(path)


# ------------------------------------------------------------------------------------------
# fetch_movielens_100k, with pip replaced


def _fake_pip(calls, *, returncode=0, stderr="", writes=WHEEL):
  def run(command, **kwargs):
    calls.append((command, kwargs))
    folder = command[command.index("-d") + 1]
    if returncode == 0 and writes:
      _write_wheel(Path(folder) / writes, ROWS)
    return subprocess.CompletedProcess(command, returncode, stdout="", stderr=stderr)

  return run


def test_fetch_runs_pip_download_once_and_then_uses_the_cache(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(subprocess, "run", _fake_pip(calls))
  cache = tmp_path / "cache"
  wheel = data.fetch_movielens_100k(cache)
  assert wheel == cache / WHEEL and wheel.is_file()
  [(command, kwargs)] = calls
  assert command[:-1] == [
    sys.executable,
    "-m",
    "pip",
    "download",
    "--no-deps",
    "recbole==1.2.1",
    "-d",
  ]
  assert Path(command[-1]).parent == cache  # a staging folder inside the cache
  assert kwargs["capture_output"] is True
  assert sorted(p.name for p in cache.iterdir()) == [WHEEL]  # the staging folder is gone
  assert data.movielens_100k(wheel).num_ratings == len(ROWS)
  assert data.fetch_movielens_100k(cache) == wheel
  assert len(calls) == 1  # cached: no second download


def test_fetch_defaults_to_the_cache_dir(tmp_path, monkeypatch):
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  monkeypatch.setattr(subprocess, "run", _fake_pip([]))
  assert data.fetch_movielens_100k() == tmp_path / "xentax" / WHEEL


def test_a_failing_pip_is_a_runtime_error_with_its_last_lines(tmp_path, monkeypatch):
  stderr = "".join(f"noise {k}\n" for k in range(20)) + "ERROR: No matching distribution\n"
  monkeypatch.setattr(subprocess, "run", _fake_pip([], returncode=1, stderr=stderr))
  with pytest.raises(RuntimeError) as err:
    data.fetch_movielens_100k(tmp_path)
  message = str(err.value)
  assert message.startswith("pip download recbole==1.2.1 failed (exit status 1)")
  assert "ERROR: No matching distribution" in message and "noise 19" in message
  assert "noise 0\n" not in message  # only the last lines
  assert "u.data" in message
  assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_pip_without_the_wheel_is_a_runtime_error(tmp_path, monkeypatch):
  monkeypatch.setattr(subprocess, "run", _fake_pip([], writes="recbole-1.2.1.tar.gz"))
  with pytest.raises(RuntimeError, match="wrote recbole-1.2.1.tar.gz, not " + WHEEL):
    data.fetch_movielens_100k(tmp_path)
  assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------
# The real data, when it has been fetched


REAL = data.cache_dir() / WHEEL


@pytest.mark.skipif(not REAL.is_file(), reason=f"needs `{FETCH}` (the real wheel)")
def test_the_real_movielens_100k():
  ml = data.movielens_100k(REAL)
  assert (ml.num_users, ml.num_items, ml.num_ratings) == (943, 1682, 100_000)
  assert len(ml.test_users) == 943 and len(ml.train_users) == 99_057
  assert ml.user_ids.tolist() == list(range(1, 944))
  assert ml.item_ids.tolist() == list(range(1, 1683))
  assert math.isclose(ml.train_ratings.mean(), 3.53, abs_tol=0.01)


def test_errors_name_the_physical_line_whatever_other_line_breaks_a_field_holds(tmp_path):
  # str.splitlines would also break at \x0b or \x85 and number the lines after it wrongly.
  path = tmp_path / "u.data"
  path.write_bytes(b"1\t10\t5\t100\n1\t20\t3\t2\x0b00\n1\t30\tx\t300\n")
  with pytest.raises(ValueError, match="line 2"):
    data.movielens_100k(path)
