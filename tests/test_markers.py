"""The loss tests stay in the fast loop: no module under ``tests/losses`` is marked ``slow``.

``pytest -m "not slow"`` drops every test of a module whose ``pytestmark`` names ``slow``
(or of a class decorated with it), so one such line would silently take a loss's value,
gradient and bad-input tests out of the inner loop. Read from the files with ``ast``; a
single very slow parametrisation may still carry its own mark.
"""

import ast
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
LOSSES = sorted((TESTS / "losses").glob("test_*.py"))


def _names_slow(node: ast.AST) -> bool:
  return any(
    (isinstance(n, ast.Attribute) and n.attr == "slow")
    or (isinstance(n, ast.Name) and n.id == "slow")
    for n in ast.walk(node)
  )


def _slow_at_module_or_class_level(source: str) -> list[str]:
  """Where a test module's ``source`` marks all of itself, or a whole class, ``slow``."""
  found = []
  for node in ast.parse(source).body:
    if isinstance(node, ast.Assign | ast.AnnAssign):
      targets = node.targets if isinstance(node, ast.Assign) else [node.target]
      named = any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in targets)
      if named and node.value is not None and _names_slow(node.value):
        found.append(f"line {node.lineno}: pytestmark")
    elif isinstance(node, ast.ClassDef) and any(_names_slow(d) for d in node.decorator_list):
      found.append(f"line {node.lineno}: class {node.name}")
  return found


def test_the_loss_tests_are_found():
  assert len(LOSSES) >= 20


@pytest.mark.parametrize("path", LOSSES, ids=lambda p: p.name)
def test_no_loss_test_module_is_marked_slow_as_a_whole(path):
  found = _slow_at_module_or_class_level(path.read_text())
  assert found == [], f"{path.name} leaves the fast loop"


@pytest.mark.parametrize(
  "source, found",
  [
    ("import pytest\n\npytestmark = pytest.mark.slow\n", ["line 3: pytestmark"]),
    (
      "import pytest\npytestmark = [pytest.mark.filterwarnings('x'), pytest.mark.slow]\n",
      ["line 2: pytestmark"],
    ),
    ("from pytest import mark\n\n\n@mark.slow\nclass TestX:\n  pass\n", ["line 5: class TestX"]),
    ("import pytest\n\npytestmark = pytest.mark.filterwarnings('x')\n", []),
    ("import pytest\n\n\n@pytest.mark.slow\ndef test_one_slow_case():\n  pass\n", []),
  ],
)
def test_the_check_sees_module_and_class_marks_only(source, found):
  assert _slow_at_module_or_class_level(source) == found


def test_the_check_sees_the_marks_of_the_slow_modules():
  assert _slow_at_module_or_class_level((TESTS / "test_cli.py").read_text())
