"""The import graph of ``src/xentax``, read from the modules' own imports (``ast``).

The allowed stack, lowest floor first (a module imports only its own package and lower
floors, function-level imports included)::

  records, progress  ->  losses, data, plots  ->  gradcheck, parallel, metrics, sampling
    ->  training  ->  bench  ->  experiments  ->  report  ->  cli

``records`` (JSON and atomic writes), ``progress`` (rich bars) and ``plots`` (figures on
``matplotlib.figure.Figure``) are single modules with no xentax imports but ``records``, so
every floor may use them. No module imports a private ``_x`` module of another package (the
packages above ``losses`` use its seam, ``xentax.losses.contract``), and the module graph has
no cycle.
"""

import ast
from pathlib import Path

import pytest

import xentax

SRC = Path(xentax.__file__).parent
FLOORS = [
  ("records", "progress"),
  ("losses", "data", "plots"),
  ("gradcheck", "parallel", "metrics", "sampling"),
  ("training",),
  ("bench",),
  ("experiments",),
  ("report",),
  ("cli",),
]
FLOOR = {unit: i for i, units in enumerate(FLOORS) for unit in units}
PRIVATE_FROM_FLOOR = FLOOR["losses"]  # a package offers the floors above a named seam


def _module_name(path: Path) -> str:
  parts = path.relative_to(SRC.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
  return {_module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(name: str, path: Path) -> set[str]:
  """Every ``xentax...`` module ``name`` imports, anywhere in the file."""
  tree = ast.parse(path.read_text())
  package = name if path.name == "__init__.py" else name.rpartition(".")[0]
  out = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out |= {alias.name for alias in node.names if alias.name.split(".")[0] == "xentax"}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
      if base.split(".")[0] != "xentax":
        continue
      for alias in node.names:
        candidate = f"{base}.{alias.name}"
        out.add(candidate if candidate in _modules() else base)
  return out


def _unit(module: str) -> str | None:
  """The floor unit of a module: its package under xentax, or the top-level module."""
  parts = module.split(".")
  if len(parts) == 1:
    return None  # the package root re-exports the losses lazily
  return parts[1]


def _target_unit(target: str) -> str:
  unit = _unit(target)
  return "losses" if unit is None else unit  # ``import xentax``: the re-exported losses


GRAPH = {name: _imports(name, path) for name, path in _modules().items() if name != "xentax"}


def test_every_module_sits_on_a_floor():
  units = {_unit(name) for name in GRAPH}
  assert units <= set(FLOOR), units - set(FLOOR)


def violations(module: str, targets) -> list[str]:
  """The imports of ``module`` that break the layering rules."""
  own = _unit(module)
  out = []
  for target in sorted(targets):
    unit = _target_unit(target)
    if unit == own:
      continue
    if FLOOR[unit] >= FLOOR[own]:
      out.append(f"{module} imports {target}: {own} may not use {unit}")
    private = any(part.startswith("_") for part in target.split(".")[2:])
    if private and FLOOR[unit] >= PRIVATE_FROM_FLOOR:
      out.append(f"{module} imports the private module {target} of {unit}")
  return out


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_go_down_the_stack_only(module):
  assert violations(module, GRAPH[module]) == []


def test_the_module_graph_has_no_cycle():
  state: dict[str, str] = {}

  def visit(module, path):
    state[module] = "open"
    for target in sorted(GRAPH.get(module, ())):
      if target not in GRAPH or target == module:
        continue
      # a package's __init__ importing its own modules is the re-export, not a cycle edge back
      if state.get(target) == "open":
        if module.startswith(target + "."):
          continue  # a submodule reading a name of its own package's __init__ (re-export)
        raise AssertionError(f"import cycle: {' -> '.join([*path, target])}")
      if target not in state:
        visit(target, [*path, target])
    state[module] = "done"

  for module in sorted(GRAPH):
    if module not in state:
      visit(module, [module])


def test_the_checker_sees_a_violation():
  """The checker itself can fail: upward, sideways and private imports are reported."""
  assert "xentax.training" in GRAPH["xentax.bench._training"]  # it reads real imports
  assert violations("xentax.bench._run", {"xentax.report"})  # upward
  assert violations("xentax.gradcheck._matrix", {"xentax.parallel"})  # sideways
  assert violations("xentax.report._report", {"xentax.bench._measure"})  # private
  assert not violations("xentax.report._report", {"xentax.bench", "xentax.records"})
