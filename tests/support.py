"""Test tooling in one place: waiting for a condition (never a fixed sleep), and a worker fed
frames by the test with the frames it writes decoded (no supervisor, no process).

Real processes come from :mod:`coda.testing` (``SupervisorProcess``, ``CeleryWorkerProcess``,
``in_process``); fixtures for real servers are in ``tests/conftest.py``.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from coda import protocol as p
from coda.framing import FrameDecoder, encode_frame
from coda.registry import Registry
from coda.worker import Worker

__all__ = ["Recorder", "WorkerHarness", "until", "wait_until"]

T = TypeVar("T")

_INTERVAL = 0.02


def _timed_out(timeout: float, what: str) -> AssertionError:
    return AssertionError(f"timed out after {timeout:g}s waiting for {what}")


def wait_until(condition: Callable[[], T], timeout: float = 10.0, what: str = "the condition") -> T:
    """Call ``condition`` until it returns something true, and return that; fail naming ``what``
    after ``timeout`` seconds. For blocking tests (the condition blocks the thread meanwhile)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what)
        time.sleep(_INTERVAL)


async def until(condition: Callable[[], T | Awaitable[T]], timeout: float = 10.0, what: str = "the condition") -> T:
    """:func:`wait_until` for async tests: the event loop runs meanwhile, and ``condition`` may
    be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        value: Any = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return cast(T, value)
        if time.monotonic() > deadline:
            raise _timed_out(timeout, what)
        await asyncio.sleep(_INTERVAL)


class Recorder(asyncio.Transport):
    """A transport that keeps what is written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.data = bytearray()
        self.writes = 0
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.data += data
        self.writes += 1

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def frames(self) -> list[p.Message]:
        """Every message written so far, decoded (and forgotten)."""
        data = bytes(self.data)
        self.data.clear()
        return FrameDecoder().feed(data)


class WorkerHarness:
    """A :class:`~coda.worker.Worker` on a recording transport: ``feed`` it what a supervisor
    would send, ``await expect(n)`` the next ``n`` messages it writes, in order."""

    def __init__(self, registry: Registry, concurrency: int = 1) -> None:
        self.worker = Worker(registry, concurrency)
        self.transport = Recorder()
        self.worker.connection_made(self.transport)
        self._decoder = FrameDecoder()
        self._written: list[p.Message] = []

    def feed(self, *msgs: p.Message) -> None:
        self.worker.data_received(b"".join(encode_frame(m) for m in msgs))

    def feed_bytes(self, data: bytes) -> None:
        self.worker.data_received(data)

    def _collect(self) -> int:
        data = bytes(self.transport.data)
        self.transport.data.clear()
        self._written += self._decoder.feed(data)
        return len(self._written)

    async def expect(self, count: int, timeout: float = 10.0) -> list[Any]:
        """The next ``count`` messages the worker writes."""
        await until(lambda: self._collect() >= count, timeout, f"{count} frames from the worker (got {self._written})")
        taken, self._written = self._written[:count], self._written[count:]
        return taken

    def pending(self) -> list[p.Message]:
        """What the worker has written and no ``expect`` took yet."""
        self._collect()
        return list(self._written)
