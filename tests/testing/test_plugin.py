"""The README's "Testing your workflows" snippet works pasted into a fresh project: plain
``python -m pytest``, with no async plugin, with pytest-asyncio in its default (strict) mode,
and with pytest-asyncio in auto mode (which then runs the async tests itself)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def readme_files() -> dict[str, str]:
    """The section's python blocks that open with ``# path``: path → text."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Testing your workflows", 1)[1].split("\n## ", 1)[0]
    files = {}
    for block in re.findall(r"```python\n(.*?)```", section, re.S):
        first, _, _ = block.partition("\n")
        if first.startswith("# ") and first.endswith(".py"):
            files[first[2:]] = block
    return files


@pytest.fixture
def project(tmp_path: Path) -> Path:
    files = readme_files()
    assert set(files) == {"myapp/workflows.py", "tests/test_workflows.py"}, files
    for path, text in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text)
    (tmp_path / "myapp" / "__init__.py").write_text("")
    return tmp_path


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("options", "runner"), [
    (["-p", "no:asyncio"], "coda"),                  # no async plugin at all
    ([], "coda"),                                    # pytest-asyncio installed, strict (its default)
    (["-o", "asyncio_mode=auto"], "pytest-asyncio"),  # pytest-asyncio runs them; coda keeps out
], ids=["no-async-plugin", "pytest-asyncio-strict", "pytest-asyncio-auto"])
def test_readme_snippet_passes_in_a_fresh_project(project: Path, options: list[str], runner: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CODA_", "PYTHONPATH"))}
    done = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider", *options],
                          cwd=project, env=env, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 passed" in done.stdout, done.stdout
    # Which plugin ran the two async tests: pytest-asyncio marks those it runs.
    marked = subprocess.run([sys.executable, "-m", "pytest", "--co", "-q", "-m", "asyncio", "-p", "no:cacheprovider", *options],
                            cwd=project, env=env, capture_output=True, text=True, timeout=60).stdout
    assert ("2/4 tests collected" in marked) == (runner == "pytest-asyncio"), marked


def test_an_async_test_fails_loudly_when_it_fails(tmp_path: Path) -> None:
    """The plugin's runner reports failures and errors of the coroutine, it does not swallow them."""
    (tmp_path / "test_it.py").write_text(
        "import asyncio\n\n"
        "async def test_fails():\n    await asyncio.sleep(0)\n    assert 1 == 2\n\n"
        "async def test_passes():\n    await asyncio.sleep(0)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CODA_"))}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed, 1 passed" in done.stdout and "assert 1 == 2" in done.stdout
    off = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:coda"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert "async def functions are not natively supported" in off.stdout  # what it does without the plugin
