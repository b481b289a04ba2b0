"""pyproject.toml's requirements: every one declares the lower bound that scripts/minimums.sh
installs and tests; the plugin and the command are where the README says."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("minimums", ROOT / "scripts" / "minimums.py")
assert _spec is not None and _spec.loader is not None
minimums = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(minimums)


@pytest.mark.parametrize(("requirement", "lowest"), [
    ("celery[redis]>=5.4,<6", ("celery", "5.4")),
    ("mypy~=2.4.1", ("mypy", "2.4.1")),
    ("pytest_timeout >= 2.3.1", ("pytest-timeout", "2.3.1")),
    ("msgpack==1.0.0", ("msgpack", "1.0.0")),
    ("kombu<6,>=5.4 ; python_version >= '3.11'", ("kombu", "5.4")),
])
def test_lowest_declared_version(requirement: str, lowest: tuple[str, str]) -> None:
    assert minimums.lowest(requirement) == lowest


@pytest.mark.parametrize("requirement", ["wrapt", "wrapt<3", "wrapt!=1.17"])
def test_a_requirement_without_lower_bound_is_refused(requirement: str) -> None:
    with pytest.raises(ValueError, match="declares no lower bound"):
        minimums.lowest(requirement)


def test_every_declared_requirement_has_a_lower_bound() -> None:
    found = minimums.minimums()
    names = {minimums.lowest(r)[0] for r in minimums.requirements()}
    assert set(found) == names
    assert {"celery", "kombu", "wrapt", "msgpack", "click", "redis", "pytest", "setuptools"} <= names


def test_the_constraints_the_script_installs() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "minimums.py")], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    names = [line.split("==")[0] for line in lines]
    assert names == sorted(names) and all(line.count("==") == 1 for line in lines)
    assert "wrapt==" + minimums.minimums()["wrapt"] in lines


def test_check_names_what_differs() -> None:
    assert minimums.check({"pytest": "0.1"}) == [f"pytest: {pytest.__version__} installed, declared minimum 0.1"]
    assert minimums.check({"no-such-distribution-x": "1.0"}) == ["no-such-distribution-x: not installed (declared minimum 1.0)"]
    assert minimums.check({"pytest": pytest.__version__}) == []
