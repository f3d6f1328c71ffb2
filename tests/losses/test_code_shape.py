"""The losses' code stays readable: modules of at most 600 lines, function bodies of at most 60.

Read from the source (``ast``); a function's body is counted without its docstring.
"""

import ast
from pathlib import Path

import pytest

import xentax.losses

MODULES = sorted(Path(xentax.losses.__file__).parent.glob("*.py"))
MAX_MODULE_LINES = 600
MAX_BODY_LINES = 60


def _body_lines(node) -> int:
  body = node.body
  if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
    body = body[1:] or body
  return node.end_lineno - body[0].lineno + 1


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_module_and_function_sizes(path):
  source = path.read_text()
  assert len(source.splitlines()) <= MAX_MODULE_LINES
  functions = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.FunctionDef)]
  long = {f.name: _body_lines(f) for f in functions if _body_lines(f) > MAX_BODY_LINES}
  assert long == {}
