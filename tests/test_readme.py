"""Every Python block of README.md runs verbatim as a script and prints something."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # runs every README block in a fresh Python process

README = Path(__file__).parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)


def test_the_readme_has_python_blocks():
  assert len(BLOCKS) >= 5


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs_verbatim(index, tmp_path):
  script = tmp_path / f"block_{index}.py"
  script.write_text(BLOCKS[index])
  env = dict(os.environ)
  src = str(Path(__file__).parents[1] / "src")
  env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
  out = subprocess.run(
    [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True
  )
  assert out.returncode == 0, f"README block {index}:\n{BLOCKS[index]}\n{out.stderr[-3000:]}"
  assert out.stdout.strip(), f"README block {index} printed nothing"
