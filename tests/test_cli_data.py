"""``xentax data fetch movielens-100k``: a cached wheel, pip's failure, a corrupt cache, bad names.

In process and without a network: the wheel is a small fake placed in ``--cache-dir``, and a
download is ``subprocess.run`` replaced.
"""

import subprocess
import zipfile

import pytest

from xentax import cli

WHEEL = "recbole-1.2.1-py3-none-any.whl"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"
HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
# 2 users, 3 items, 5 ratings: each user has a latest one, so 3 train and 2 test rows
ROWS = ["1\t10\t5\t100", "1\t20\t3\t200", "2\t10\t4\t150", "2\t30\t2\t160", "2\t20\t1\t10"]
FETCH = ["data", "fetch", "movielens-100k"]


def _run(argv):
  try:
    return cli.main(argv)
  except SystemExit as err:  # argparse's own errors and --help
    return err.code


def _place_wheel(folder):
  folder.mkdir(parents=True, exist_ok=True)
  with zipfile.ZipFile(folder / WHEEL, "w") as archive:
    archive.writestr(MEMBER, HEADER + "\n" + "\n".join(ROWS) + "\n")
  return folder / WHEEL


def _no_download(monkeypatch):
  def run(command, **kwargs):
    raise AssertionError(f"unexpected download: {command}")

  monkeypatch.setattr(subprocess, "run", run)


def test_fetch_with_a_cached_wheel_prints_its_path_and_the_sizes(tmp_path, monkeypatch, capsys):
  _no_download(monkeypatch)
  wheel = _place_wheel(tmp_path)
  assert _run([*FETCH, "--cache-dir", str(tmp_path)]) == 0
  out = capsys.readouterr()
  assert out.out.splitlines() == [
    str(wheel),
    "movielens-100k: 2 users, 3 items, 5 ratings (3 train, 2 test: each user's latest)",
  ]
  assert out.err == ""


def test_fetch_defaults_to_the_xdg_cache(tmp_path, monkeypatch, capsys):
  _no_download(monkeypatch)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
  wheel = _place_wheel(tmp_path / "xentax")
  assert _run(FETCH) == 0
  assert capsys.readouterr().out.splitlines()[0] == str(wheel)


def test_a_failing_pip_is_one_error_line_and_status_1(tmp_path, monkeypatch, capsys):
  calls = []

  def run(command, **kwargs):
    calls.append(command)
    return subprocess.CompletedProcess(command, 1, stdout="", stderr="ERROR: no network\n")

  monkeypatch.setattr(subprocess, "run", run)
  assert _run([*FETCH, "--cache-dir", str(tmp_path / "new")]) == 1
  out = capsys.readouterr()
  assert out.out == ""
  assert out.err.startswith("xentax data: error: pip download recbole==1.2.1 failed")
  assert "ERROR: no network" in out.err and "u.data" in out.err
  assert len(calls) == 1 and calls[0][3:6] == ["download", "--no-deps", "recbole==1.2.1"]


def test_a_corrupt_cached_wheel_is_an_error_naming_the_fix(tmp_path, monkeypatch, capsys):
  _no_download(monkeypatch)
  (tmp_path / WHEEL).write_bytes(b"not a zip")
  assert _run([*FETCH, "--cache-dir", str(tmp_path)]) == 1
  err = capsys.readouterr().err
  assert err.startswith(f"xentax data: error: {tmp_path / WHEEL} is not a readable zip file")
  assert "delete it and run `xentax data fetch movielens-100k` again" in err


@pytest.mark.parametrize(
  "argv, message",
  [
    (["data", "get", "movielens-100k"], "invalid choice: 'get' (choose from 'fetch')"),
    (["data", "fetch", "movielens-1m"], "invalid choice: 'movielens-1m'"),
    (["data", "fetch"], "the following arguments are required: NAME"),
  ],
)
def test_unknown_actions_and_names_exit_2(argv, message, capsys):
  assert _run(argv) == 2
  assert message in capsys.readouterr().err


def test_a_cache_dir_that_is_a_file_exits_2(tmp_path, monkeypatch, capsys):
  _no_download(monkeypatch)
  path = tmp_path / "file"
  path.write_text("")
  assert _run([*FETCH, "--cache-dir", str(path)]) == 2
  assert capsys.readouterr().err.strip() == (
    f"xentax data: error: --cache-dir {path} is a file, not a folder"
  )
