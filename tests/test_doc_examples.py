"""Every ``>>>`` example in ``src`` runs and prints what it shows.

Every public loss has an example, the sections of a Google docstring and no unfilled shared
paragraph (``$name``, :mod:`xentax.losses._doc`).
"""

import doctest
import importlib
import pkgutil

import pytest

import xentax
import xentax.losses


def _all_examples():
  """Every docstring with examples in every module of the package, once each."""
  found = {}
  for info in pkgutil.walk_packages(xentax.__path__, "xentax."):
    module = importlib.import_module(info.name)
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, info.name, globs={}):
      if test.examples and test.filename.endswith(".py"):
        # Keyed by the object's name and docstring: a wrapped loss reports its wrapper's line.
        found.setdefault((test.name.rsplit(".", 1)[-1], test.docstring), test)
  return sorted(found.values(), key=lambda t: t.name)


# Documentation, checked by the full suite (as the README's and the docs' blocks are).
EXAMPLES = [pytest.param(t, id=t.name, marks=pytest.mark.slow) for t in _all_examples()]
LOSSES = sorted(xentax.losses.__all__)


def _examples(obj, name):
  return doctest.DocTestFinder(recurse=False).find(obj, name, globs={})


def test_the_examples_are_found():
  assert len(EXAMPLES) >= 60


@pytest.mark.parametrize("test", EXAMPLES)
def test_example_runs(test):
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  runner.run(test)
  assert runner.summarize(verbose=False).failed == 0


@pytest.mark.parametrize("name", LOSSES)
def test_loss_docstring_is_complete(name):
  fn = getattr(xentax.losses, name)
  assert sum(len(t.examples) for t in _examples(fn, name)), f"{name} has no example"
  sections = (
    ("Args:", "Returns:", "Examples:")
    if name == "checked"
    else ("Args:", "Returns:", "Raises:", "Examples:")
  )
  for section in sections:
    assert section in fn.__doc__, f"{name}: no {section}"
  assert "$" not in fn.__doc__, f"{name}: an unfilled shared paragraph"
  assert "deck" not in fn.__doc__.lower(), f"{name}: names a source the reader cannot look up"
