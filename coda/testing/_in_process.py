"""In-process mode: the real supervisor and worker code inside the caller's event loop, with no
subprocess, for fast unit tests of workflows."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from coda.client import Client
from coda.errors import CodaError
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.server import Supervisor

__all__ = ["in_process", "run_workflow"]


@contextlib.asynccontextmanager
async def in_process(workers: int = 2, **config: Any) -> AsyncIterator[Client]:
    """A supervisor and ``workers`` in-process workers in the running loop; yields a Client.
    Tasks and workflows come from what this process has imported. ``config`` takes any
    :class:`~coda.supervisor.config.SupervisorConfig` field (``concurrency=4``, ...)."""
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
        raise CodaError(f"in-process supervisor stopped at startup (exit code {running.result()})")
    host, port = started.result()
    client = Client(f"{host}:{port}")
    try:
        yield client
    finally:
        await client.close()
        supervisor.config = supervisor.config.with_(grace=0.0)
        supervisor.stop()
        await running


def run_workflow(workflow: Any, args: dict[str, Any] | None = None, *, workers: int = 1,
                 timeout: float | None = 60.0, **config: Any) -> Any:
    """Run one workflow to its end in this process and return its result (or raise
    :class:`~coda.errors.WorkflowFailed`), for a plain ``def test_...``: the workflow's tasks
    run on in-process workers, memoized and retried as under a real supervisor.

    It starts its own event loop; inside a running one (an ``async def`` test) use
    ``async with in_process() as client: await client.run(workflow, args)`` instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise CodaError(
            "run_workflow() runs its own event loop and cannot be called from a running one; in an "
            "async test use: async with coda.testing.in_process() as client: await client.run(workflow, args)"
        )

    async def run() -> Any:
        async with in_process(workers=workers, **config) as client:
            return await client.run(workflow, args, timeout=timeout)

    return asyncio.run(run())
