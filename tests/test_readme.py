"""Every Python block of README.md, CONTRIBUTING.md and docs/*.md runs verbatim as a script and
prints something."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs every block in a fresh Python process

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCKS = [
  (f"{page.relative_to(ROOT)}:{n}", block)
  for page in PAGES
  for n, block in enumerate(re.findall(r"^```python\n(.*?)^```", page.read_text(), re.S | re.M))
]


def test_the_readme_and_the_docs_have_python_blocks():
  assert any(name.startswith("README.md") for name, _ in BLOCKS)
  assert len(BLOCKS) >= 5


@pytest.mark.parametrize("name, block", BLOCKS, ids=[name for name, _ in BLOCKS])
def test_block_runs_verbatim(name, block, tmp_path):
  script = tmp_path / "block.py"
  script.write_text(block)
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
  out = subprocess.run(
    [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
  )
  assert out.returncode == 0, f"{name}:\n{block}\n{out.stderr[-3000:]}"
  assert out.stdout.strip(), f"{name} printed nothing"
