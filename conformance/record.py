"""A pytest plugin that writes one outcome per test to ``$CODA_CONFORMANCE_RECORD`` (JSON).

An outcome is ``passed`` only when setup, call and teardown all passed; ``skipped`` covers
skips and expected failures; anything else is ``failed`` (with the first failing phase's text
kept short). Reruns (``@flaky``) overwrite earlier attempts: the last attempt counts.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

__all__ = ["pytest_runtest_logreport", "pytest_sessionfinish"]

_outcomes: dict[str, dict[str, Any]] = {}


def _short(report: pytest.TestReport) -> str:
    text = str(report.longrepr or "")
    lines = [line for line in text.splitlines() if line.startswith("E ")]
    return "\n".join(lines[-6:]) if lines else text[-600:]


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    entry = _outcomes.setdefault(report.nodeid, {"outcome": "passed", "detail": ""})
    if report.when == "setup":
        entry.update(outcome="passed", detail="")  # a rerun starts over
    if entry["outcome"] != "passed":
        return
    if report.outcome == "skipped" or hasattr(report, "wasxfail"):
        if report.outcome == "skipped":
            entry["outcome"] = "skipped"
        return
    if report.outcome == "failed":
        entry.update(outcome="failed", detail=f"[{report.when}] {_short(report)}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("CODA_CONFORMANCE_RECORD")
    if path:
        with open(path, "w") as out:
            json.dump(_outcomes, out, indent=0, sort_keys=True)
