"""Coda's pytest plugin, registered as the ``coda`` pytest11 entry point (``-p no:coda`` turns
it off; with plugin autoload disabled, ``pytest_plugins = ["coda.testing.plugin"]`` turns it on).

- Fixture ``coda_supervisor``: a real supervisor subprocess for the test, with the modules
  named by ``@pytest.mark.coda_supervisor(apps=[...], workers=2, args=[...], env={...})`` or
  by the test module's ``CODA_APPS`` list. ``coda_supervisor_factory`` starts as many as a
  test wants; all are killed when it ends.
- ``async def`` tests run without an async plugin: a coroutine test that no other plugin
  took (pytest-asyncio, anyio, ...) runs here, in a fresh event loop of its own
  (``asyncio.run``). Where pytest-asyncio runs a test (auto mode, or an ``asyncio`` mark),
  it keeps doing so. Its fixtures are plain (sync) fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from coda.supervisor.launcher import SupervisorProcess

__all__ = ["coda_supervisor", "coda_supervisor_factory", "pytest_configure", "pytest_pyfunc_call"]


@pytest.fixture
def coda_supervisor_factory() -> Iterator[Callable[..., SupervisorProcess]]:
    """Start real supervisors: ``factory(apps, workers=2, args=[...], env={...})``; all are
    killed at the end of the test."""
    started: list[SupervisorProcess] = []

    def start(apps: Sequence[str], **kwargs: Any) -> SupervisorProcess:
        process = SupervisorProcess(apps, **kwargs)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.kill()
        for path in (process.log_path, process.out_path):
            with contextlib.suppress(OSError):
                os.unlink(path)


@pytest.fixture
def coda_supervisor(request: pytest.FixtureRequest, coda_supervisor_factory: Callable[..., SupervisorProcess]) -> SupervisorProcess:
    """A real supervisor for this test, configured by ``@pytest.mark.coda_supervisor(...)`` or
    the module's ``CODA_APPS``."""
    marker = request.node.get_closest_marker("coda_supervisor")
    options = dict(marker.kwargs) if marker is not None else {}
    apps = options.pop("apps", None) or getattr(request.module, "CODA_APPS", None)
    if not apps:
        raise pytest.UsageError("coda_supervisor needs apps=[...] in its marker or CODA_APPS in the test module")
    return coda_supervisor_factory(apps, **options)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "coda_supervisor(apps, workers, args, env): configure the coda_supervisor fixture")


def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run a coroutine test nobody else ran. pytest-asyncio hands pytest a synchronous wrapper
    for the tests it runs, and anyio's hook comes first and claims its own; what still is a
    coroutine function here would otherwise fail with "async def functions are not natively
    supported" in pytest's own hook, which runs last."""
    function = pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    names = inspect.signature(function).parameters
    asyncio.run(function(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True
