"""The ``>>>`` examples in the public docstrings run and print what they show.

Every public loss has an example, the sections of a Google docstring and no unfilled
shared paragraph (``$name``, :mod:`xentax.losses._doc`); the examples of the other public
packages run too.
"""

import doctest

import pytest

import xentax.gradcheck
import xentax.losses
import xentax.metrics
import xentax.parallel

PACKAGES = (xentax.losses, xentax.gradcheck, xentax.metrics, xentax.parallel)
PUBLIC = [
  # The parallel examples run shard_map eagerly, op by op: left to the full suite.
  pytest.param(p, n, marks=pytest.mark.slow) if p == "xentax.parallel" else (p, n)
  for p, n in sorted({(p.__name__, n) for p in PACKAGES for n in p.__all__})
]
LOSSES = sorted(xentax.losses.__all__)


def _examples(obj, name):
  return doctest.DocTestFinder(recurse=False).find(obj, name, globs={})


@pytest.mark.parametrize("package, name", PUBLIC)
def test_example_runs(package, name):
  obj = getattr(__import__(package, fromlist=[name]), name)
  runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
  for test in _examples(obj, name):
    runner.run(test)
  assert runner.summarize(verbose=False).failed == 0


@pytest.mark.parametrize("name", LOSSES)
def test_loss_docstring_is_complete(name):
  fn = getattr(xentax.losses, name)
  assert sum(len(t.examples) for t in _examples(fn, name)), f"{name} has no example"
  sections = (
    ("Args:", "Returns:", "Example:")
    if name == "checked"
    else ("Args:", "Returns:", "Raises:", "Example:")
  )
  for section in sections:
    assert section in fn.__doc__, f"{name}: no {section}"
  assert "$" not in fn.__doc__, f"{name}: an unfilled shared paragraph"
  assert "deck" not in fn.__doc__.lower(), f"{name}: names a source the reader cannot look up"
