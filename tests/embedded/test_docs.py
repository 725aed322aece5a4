"""The documentation of the embedded API stays true: the reference page is
what the docstrings say, and the README's example runs."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_api_reference_page_is_generated_from_the_current_docstrings():
    result = subprocess.run([sys.executable, "scripts/gen_embedded_docs.py", "--check"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_readme_example_runs(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Embedding it", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "b'config/mode' b'blue'" in result.stdout
    assert (tmp_path / "app.pykv" / "member" / "wal").is_dir()
