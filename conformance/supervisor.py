"""A pytest plugin for Celery's integration suite: a ``coda supervisor --celery-app ... -Q
celery`` takes the place of the suite's embedded worker (the ``celery_session_worker``
fixture), as a team replaces ``celery worker`` with it. The suite's own fixtures decide the
app's configuration; the supervisor builds the same app (``conformance.integration_app``).

The suite's conftest imports ``celery_session_worker`` from ``celery.contrib.pytest``, and a
conftest's fixtures win over a plugin's; so this plugin, loaded first (``-p``), puts its fixture
in that module, where the conftest then imports it from."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import celery.contrib.pytest
import pytest

from coda.testing import SupervisorProcess

__all__ = ["celery_session_worker"]

APP = "conformance.integration_app"


def _plain(config: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able part of the suite's configuration (sets become lists)."""
    plain: dict[str, Any] = {}
    for key, value in config.items():
        value = sorted(value) if isinstance(value, (set, frozenset)) else value
        try:
            json.dumps(value)
        except TypeError:
            continue
        plain[key] = value
    return plain


@pytest.fixture(scope="session")
def celery_session_worker(
    request: pytest.FixtureRequest,
    celery_session_app: Any,
    celery_config: Mapping[str, Any],
    celery_includes: Sequence[str],
    celery_class_tasks: Sequence[Any],
) -> Iterator[SupervisorProcess]:
    # What the stock fixture does to the session app, so callers in this process see the tasks.
    for module in celery_includes:
        celery_session_app.loader.import_task_module(module)
    for class_task in celery_class_tasks:
        celery_session_app.register_task(class_task)
    handle, path = tempfile.mkstemp(prefix="coda-conformance-", suffix=".json")
    with os.fdopen(handle, "w") as out:
        json.dump(
            {
                "config": _plain(celery_config),
                "includes": sorted(celery_includes),
                "class_tasks": [f"{c.__module__}:{c.__qualname__}" for c in celery_class_tasks],
            },
            out,
        )
    workers = os.environ.get("CODA_CONFORMANCE_WORKERS", "2")
    process = SupervisorProcess(
        [APP],
        workers=int(workers),
        args=["--celery-app", f"{APP}:app", "-Q", "celery", "--log-level", "INFO"],
        env={"CODA_CONFORMANCE_APP": path},
        cwd=str(request.config.rootpath),
    )
    process.start()
    try:
        yield process
    finally:
        process.kill()
        log = os.environ.get("CODA_CONFORMANCE_SUPERVISOR_LOG")
        if log:
            with open(log, "w") as out:
                out.write(process.log())
        for leftover in (path, process.log_path, process.out_path):
            try:
                os.unlink(leftover)
            except OSError:
                pass


celery.contrib.pytest.celery_session_worker = celery_session_worker
