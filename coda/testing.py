"""Testing helpers and the pytest plugin (registered as the ``coda`` pytest11 entry point).

- :class:`SupervisorProcess`: a real ``coda supervisor`` subprocess on a free loopback port.
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
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import pytest

from coda.client import Client, SyncClient
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.server import Supervisor

__all__ = ["SupervisorProcess", "coda_supervisor", "coda_supervisor_factory", "in_process"]

_LISTENING = re.compile(r"listening on (\S+)")


class SupervisorProcess:
    """A ``coda supervisor`` subprocess; its stderr goes to :attr:`log_path`."""

    def __init__(
        self,
        apps: Sequence[str],
        *,
        workers: int = 2,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.apps = list(apps)
        self.workers = workers
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd or os.getcwd()
        self.startup_timeout = startup_timeout
        self.address = ""
        self.proc: subprocess.Popen[str] | None = None
        handle, self.log_path = tempfile.mkstemp(prefix="coda-supervisor-", suffix=".log")
        os.close(handle)
        self._sync: SyncClient | None = None

    def start(self) -> SupervisorProcess:
        argv = [sys.executable, "-m", "coda", "supervisor", "--listen", "127.0.0.1:0", "--workers", str(self.workers)]
        for app in self.apps:
            argv += ["-A", app]
        argv += self.args
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, text=True, env=self.env, cwd=self.cwd)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            found = _LISTENING.search(line)
            if found:
                self.address = found.group(1)
                return self
        code = self.proc.poll()
        self.kill()
        raise RuntimeError(f"coda supervisor did not start (exit code {code}); its log:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def client(self, **kwargs: Any) -> Client:
        return Client(self.address, **kwargs)

    def sync_client(self) -> SyncClient:
        """A SyncClient shared by the helpers below (closed with the supervisor)."""
        if self._sync is None:
            self._sync = SyncClient(self.address)
        return self._sync

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in self.sync_client().supervisor_status()["workers"]]

    def wait_for_workers(self, count: int | None = None, timeout: float = 30.0, exclude: Sequence[int] = ()) -> list[int]:
        """Wait until ``count`` workers (default: all) are registered, none of them in ``exclude``."""
        want = self.workers if count is None else count
        deadline = time.monotonic() + timeout
        while True:
            pids = [pid for pid in self.worker_pids() if pid not in exclude]
            if len(pids) >= want:
                return pids
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(pids)} of {want} workers registered within {timeout}s")
            time.sleep(0.05)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the drain; the exit code."""
        self._close_client()
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        self._close_client()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def _close_client(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    def __enter__(self) -> SupervisorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


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
        with contextlib.suppress(OSError):
            os.unlink(process.log_path)


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
