"""Testing helpers and the pytest plugin (registered as the ``coda`` pytest11 entry point).

- :class:`SupervisorProcess`: a real ``coda supervisor`` subprocess on a free loopback port;
  :class:`CeleryWorkerProcess`: a stock ``celery worker`` beside it.
- Fixture ``coda_supervisor``: one for the test, with the modules named by
  ``@pytest.mark.coda_supervisor(apps=[...], workers=2, args=[...])`` or the test module's
  ``CODA_APPS`` list. Fixture ``coda_supervisor_factory`` starts as many as a test wants.
- :func:`in_process`: ``async with in_process() as client`` runs a supervisor and its workers
  inside the test's own event loop (no processes) for fast unit tests of workflows.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest

from coda.client import Client
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.launcher import CeleryWorkerProcess, SupervisorProcess
from coda.supervisor.server import Supervisor

__all__ = ["CeleryWorkerProcess", "SupervisorProcess", "coda_supervisor", "coda_supervisor_factory", "in_process"]

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


@contextlib.asynccontextmanager
async def in_process(workers: int = 2, **config: Any) -> AsyncIterator[Client]:
    """A supervisor and ``workers`` in-process workers in the running loop; yields a Client.
    Tasks and workflows come from what this process has imported."""
    supervisor = Supervisor(
        SupervisorConfig(workers=workers, listen="127.0.0.1:0", log_level="WARNING", **config),
        in_process=True,
        handle_signals=False,
    )
    running = asyncio.get_running_loop().create_task(supervisor.run())
    started = asyncio.ensure_future(supervisor.started())
    await asyncio.wait([running, started], return_when=asyncio.FIRST_COMPLETED)
    if running.done():
        started.cancel()
        raise RuntimeError(f"in-process supervisor stopped at startup (exit code {running.result()})")
    host, port = started.result()
    client = Client(f"{host}:{port}")
    try:
        yield client
    finally:
        await client.close()
        supervisor.config = supervisor.config.with_(grace=0.0)
        supervisor.stop()
        await running
