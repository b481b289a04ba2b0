"""Which parts of Coda load which: each import runs in a fresh interpreter and the modules it
pulled in are checked. The bridge never loads the supervisor (takeover workers and user Celery
code import it); the dispatcher, the supervisor without --celery-app and the worker never load
Celery, kombu or the bridge."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _loaded(statement: str) -> set[str]:
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def _under(modules: set[str], *prefixes: str) -> set[str]:
    return {m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes)}


@pytest.mark.parametrize(
    "statement",
    [
        "import coda.bridge",
        "import coda.bridge._execute",  # what a takeover worker imports
        "from coda.bridge import workflow_entry, install",  # what user Celery code imports
    ],
)
def test_the_bridge_imports_no_supervisor(statement: str) -> None:
    assert _under(_loaded(statement), "coda.supervisor") == set()


@pytest.mark.parametrize(
    "statement",
    [
        "import coda.supervisor.dispatch",
        "import coda.supervisor.server",
        "import coda.worker",
        "import coda",
    ],
)
def test_the_core_loads_no_celery_and_no_bridge(statement: str) -> None:
    assert _under(_loaded(statement), "celery", "kombu", "coda.bridge", "coda.compat") == set()


def test_the_worker_loads_no_supervisor() -> None:
    assert _under(_loaded("import coda.worker"), "coda.supervisor") == set()
