"""Every shell block of README.md, CONTRIBUTING.md and docs/*.md names commands that exist.

Each line's commands (split on ``&&``, comments and ``VAR=value`` prefixes dropped) are checked
against what they name, without the hours a full run would take (the commands themselves are
run by ``tests/test_cli.py`` and ``.ci/run``):

* ``xentax ...``: parsed by the real command-line parser, so every subcommand, flag and choice
  exists (``--help`` prints its text and exits 0);
* ``pip install -e ".[extra]"``: every extra is declared in ``pyproject.toml``;
* ``pytest -m EXPR``: every marker in ``EXPR`` is registered;
* ``ruff``, ``mypy``: installed by the ``test`` extra; ``bash FILE``: the file exists;
* ``python3 -m venv DIR``, ``source DIR/bin/activate``: the setup steps.

A program not listed here fails the test, naming the page and line.
"""

import contextlib
import io
import re
import shlex
import tomllib
from pathlib import Path

import pytest

from xentax import cli

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = set(PYPROJECT["project"]["optional-dependencies"])
TEST_EXTRA = " ".join(PYPROJECT["project"]["optional-dependencies"]["test"])
MARKERS = {line.split(":")[0] for line in PYPROJECT["tool"]["pytest"]["ini_options"]["markers"]}


def _commands():
  """``(page:line, argv)`` for every command of every shell block."""
  found = []
  for page in PAGES:
    text = page.read_text()
    for match in re.finditer(r"^```(?:bash|sh|shell|console)\n(.*?)^```", text, re.S | re.M):
      first = text.count("\n", 0, match.start(1)) + 1
      for offset, line in enumerate(match.group(1).splitlines()):
        argv = shlex.split(line, comments=True)
        while argv:
          end = argv.index("&&") if "&&" in argv else len(argv)
          command = argv[:end]
          while command and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", command[0]):
            command = command[1:]  # an environment variable for this command
          if command:
            found.append((f"{page.relative_to(ROOT)}:{first + offset}", command))
          argv = argv[end + 1 :]
  return found


COMMANDS = _commands()


def test_the_pages_have_shell_commands():
  programs = {argv[0] for _, argv in COMMANDS}
  assert {"xentax", "pip", "pytest"} <= programs, programs


def _check_xentax(args):
  named = [a for a in args if a in cli.COMMANDS][:1]
  parser = cli.build_parser(named)
  out = io.StringIO()
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
      parsed = parser.parse_args(args)
  except SystemExit as exit_:
    assert exit_.code == 0 and "--help" in args, out.getvalue()
    assert "usage: xentax" in out.getvalue()
    return
  assert parsed.command in cli.COMMANDS


def _check_pip(args):
  assert args[:2] == ["install", "-e"], args
  extras = re.fullmatch(r"\.(?:\[([\w,]+)\])?", args[2])
  assert extras, f"install the project itself, with extras: {args[2]!r}"
  missing = set((extras.group(1) or "").split(",")) - EXTRAS - {""}
  assert not missing, f"extras {missing} are not in pyproject.toml"


def _check_pytest(args):
  if "-m" in args:
    expression = args[args.index("-m") + 1]
    names = set(re.findall(r"\w+", expression)) - {"not", "and", "or"}
    assert names <= MARKERS, f"unregistered markers {names - MARKERS}"


CHECKS = {
  "xentax": _check_xentax,
  "pip": _check_pip,
  "pytest": _check_pytest,
  "ruff": lambda args: "ruff" in TEST_EXTRA,
  "mypy": lambda args: "mypy" in TEST_EXTRA,
  "bash": lambda args: (ROOT / args[0]).is_file(),
  "python3": lambda args: args[:2] == ["-m", "venv"],
  "source": lambda args: args[0].endswith("/bin/activate"),
}


@pytest.mark.parametrize("where, argv", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_command_names_what_exists(where, argv, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # a parser's checks must not read or write the repository
  program, args = argv[0], argv[1:]
  assert program in CHECKS, f"{where}: no check for {program!r}; add one to {__name__}"
  assert CHECKS[program](args) in (None, True), f"{where}: {shlex.join(argv)}"


@pytest.mark.parametrize(
  "line",
  [
    "xentax bench --suite nope",
    "xentax train --no-such-flag",
    "xentax frobnicate",
    'pip install -e ".[no_such_extra]"',
    'pytest -m "not quick"',
    "bash no/such/file",
  ],
)
def test_a_command_that_names_what_does_not_exist_fails(line, tmp_path, monkeypatch):
  with pytest.raises(AssertionError):
    test_command_names_what_exists("here", shlex.split(line), tmp_path, monkeypatch)
