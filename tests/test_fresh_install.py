"""The README's first quick-start command works on a fresh machine: a new virtualenv with
nothing installed (not even the test extras), a copy of the repository's files, the command as
the README gives it, run to completion. A dependency missing from pyproject.toml, a run-time
import of a test tool or a broken install step fails here, as it would for a new user."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def first_quick_start_command() -> str:
    section = (ROOT / "README.md").read_text().split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None, "the README's Quick start has no bash block"
    return block.group(1).splitlines()[0].split("#", 1)[0].strip()


def copy_of_the_repository(to: Path) -> Path:
    """The files a fresh clone has (tracked, plus new ones not ignored): no build leftovers."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # a file deleted in the work tree is still listed until committed
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)
    return to


@pytest.mark.timeout(420)
def test_first_quick_start_command_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    command = first_quick_start_command()
    assert command == "bash scripts/demo.sh"
    repo = copy_of_the_repository(tmp_path / "checkout")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PIPELINE_", "CODA_", "PYTEST_")) and k not in ("PYTHONPATH", "PYTHONHOME")}
    env |= {"VIRTUAL_ENV": str(venv), "PATH": os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])}
    done = subprocess.run(["bash", "-c", command], cwd=repo, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    assert "summary" in done.stdout and re.search(r"events stored\s+60\n", done.stdout), done.stdout
    assert re.search(r"save\s+celery worker\s+60\s+0\n", done.stdout), done.stdout
    # It really ran without the test extras.
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", "import pytest"], capture_output=True, text=True,
                           env=env, cwd=tmp_path)
    assert probe.returncode != 0 and "No module named 'pytest'" in probe.stderr
    installed = subprocess.run([str(venv / "bin" / "python"), "-c", "import coda; print(coda.__file__)"],
                               capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout
    assert installed.startswith(str(repo))  # the editable install of the copy
