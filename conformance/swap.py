"""A pytest plugin doing what a user does in one line: ``coda.compat.install()`` before any
task is declared, so every ``@app.task``/``@shared_task`` of the suite is a coda.compat task."""

from __future__ import annotations

import pytest

import coda.compat

__all__ = ["pytest_configure"]


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    coda.compat.install()
