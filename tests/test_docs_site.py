"""The documentation site covers every public name, and every page is in its navigation.

The site itself is built strictly by ``.ci/run`` (``mkdocs build --strict``): a broken link, a
reference the API pages cannot resolve or a docstring they cannot read fails it.
"""

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
PACKAGES = [
  "xentax.losses",
  "xentax.metrics",
  "xentax.gradcheck",
  "xentax.parallel",
  "xentax.sampling",
  "xentax.training",
  "xentax.data",
  "xentax.bench",
  "xentax.experiments",
  "xentax.report",
]
DOCUMENTED = set(
  re.findall(r"^::: ([\w.]+)$", "\n".join(p.read_text() for p in DOCS.rglob("*.md")), re.M)
)


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_has_an_api_entry(package):
  names = importlib.import_module(package).__all__
  missing = [name for name in names if f"{package}.{name}" not in DOCUMENTED]
  assert missing == [], f"{package}: add '::: {package}.<name>' to docs/api/ for {missing}"


def test_every_top_level_name_is_documented_in_its_package():
  import xentax

  for name in xentax.__all__:
    obj = getattr(xentax, name)
    if hasattr(obj, "__module__") and not isinstance(obj, type(xentax)):
      assert any(entry.endswith(f".{name}") for entry in DOCUMENTED), name


def test_every_page_is_in_the_navigation():
  nav = (ROOT / "mkdocs.yml").read_text()
  pages = [p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")]
  assert [p for p in pages if p not in nav] == []


def test_help_of_the_package_opens_with_the_losses_and_the_docs():
  import xentax

  doc = xentax.__doc__
  assert doc.splitlines()[0].startswith("xentax: cross-entropy losses for JAX")
  for name in xentax.losses.__all__:
    assert f"``{name}``" in doc, name
  assert "docs/" in doc and "Example::" in doc


def test_the_package_example_runs():
  import textwrap

  import xentax

  code = textwrap.dedent(xentax.__doc__.split("Example::", 1)[1])
  scope: dict = {}
  exec(code, scope)
  assert float(scope["loss"]) > 0 and scope["grad"].shape == (1, 3)


@pytest.mark.slow  # builds the results pages from every record
def test_the_results_page_is_drawn_from_the_committed_records():
  import importlib.util

  spec = importlib.util.spec_from_file_location("results_hook", DOCS / "results_hook.py")
  hook = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(hook)
  page = (DOCS / "results.md").read_text()
  drawn = hook.on_page_markdown(page, page=None, config=None, files=None)
  assert "<!-- record" not in drawn and "<!-- reproduce" not in drawn
  assert drawn.count("<svg") >= 4  # memory, curves, memory against V, calibration
  assert "NVIDIA H200" in drawn and "| mlp_digits | mlp |" in drawn
  assert "| categorical_cross_entropy_with_logits (one-hot) | forward |" in drawn
