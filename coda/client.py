"""``coda.Client`` (async) and ``coda.SyncClient`` (blocking): start runs and read their results.

One TCP connection per client, opened on first use and again after it drops. Requests carry
ids, so any number may be outstanding at once; a run goes on when its client disconnects.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
import threading
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from coda import protocol as p
from coda.address import DEFAULT_ADDRESS, parse_address
from coda.data import check_data
from coda.errors import (
    CodaError,
    DataError,
    ErrorKind,
    ProtocolError,
    RunTimeout,
    SupervisorUnavailable,
    WorkflowFailed,
    from_wire,
    refusal,
)
from coda.framing import DEFAULT_MAX_FRAME, FrameStream, encode_frame
from coda.registry import Workflow


__all__ = ["Client", "RunHandle", "RunStatus", "SyncClient", "SyncRunHandle"]

T = TypeVar("T")


@dataclass(frozen=True)
class RunStatus:
    """A run as the supervisor sees it. ``tasks`` counts spawned, executed, memo_hits,
    succeeded, failed and retried task executions over all attempts."""

    run_id: str
    workflow: str
    state: str
    attempt: int
    tasks: dict[str, int]
    created_at: float
    finished_at: float | None
    parent: str | None
    error: dict[str, str] | None


def _workflow_name(workflow: Any, args: dict[str, Any]) -> str:
    if isinstance(workflow, Workflow):
        workflow.check_args(args)
        return workflow.name
    if isinstance(workflow, str):
        return workflow
    raise DataError(f"a workflow is a @coda.workflow or its name, not {workflow!r}")


class _Protocol(FrameStream):
    def __init__(self, client: Client, max_frame: int) -> None:
        super().__init__(max_frame)
        self.client = client
        self.lost: BaseException | None = None

    def message_received(self, msg: p.Message) -> None:
        self.client._received(msg)

    def frame_error(self, exc: ProtocolError) -> None:
        self.lost = exc
        super().frame_error(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client._lost(self, self.lost or exc)


class RunHandle:
    """A started run; ``await handle.result()`` waits for its end."""

    def __init__(self, client: Client, run_id: str, created: bool) -> None:
        self.client = client
        self.run_id = run_id
        self.created = created

    async def result(self, timeout: float | None = None) -> Any:
        """The run's result; raises WorkflowFailed if it failed or was cancelled, RunTimeout
        if ``timeout`` seconds pass first (the run itself goes on)."""
        return await self.client.result(self.run_id, timeout=timeout)

    async def status(self) -> RunStatus:
        return await self.client.status(self.run_id)

    def __repr__(self) -> str:
        return f"<coda.RunHandle {self.run_id}>"


class Client:
    """Talks to a supervisor at ``address`` (``host:port``; default ``$CODA_URL``, else
    127.0.0.1:42069), presenting ``token`` (default ``$CODA_TOKEN``) if the supervisor wants one."""

    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        connect_timeout: float = 10.0,
        max_frame: int = DEFAULT_MAX_FRAME,
    ) -> None:
        self.address = address or os.environ.get("CODA_URL") or DEFAULT_ADDRESS
        self.host, self.port = parse_address(self.address.removeprefix("coda://").removeprefix("tcp://"))
        self.token = token if token is not None else os.environ.get("CODA_TOKEN")
        self.connect_timeout = connect_timeout
        self.max_frame = max_frame
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Future[_Protocol] | None = None
        self._pending: dict[int, asyncio.Future[p.Message]] = {}
        self._ids = itertools.count(1)

    # -- connection -----------------------------------------------------------------------------------

    async def _connection(self) -> _Protocol:
        if self._protocol is not None:
            return self._protocol
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_future()
            try:
                protocol = await self._connect()
            except BaseException as exc:
                self._connecting.set_exception(exc)
                self._connecting.exception()  # mark retrieved; the caller below re-raises it
                self._connecting = None
                raise
            self._protocol = protocol
            self._connecting.set_result(protocol)
            self._connecting = None
            return protocol
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(lambda: _Protocol(self, self.max_frame), self.host, self.port),
                self.connect_timeout,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            raise SupervisorUnavailable(f"cannot reach the coda supervisor at {self.address}: {exc}") from None
        waiter = loop.create_future()
        self._pending[0] = waiter
        assert protocol.transport is not None
        protocol.transport.write(encode_frame(p.ClientHello(p.PROTOCOL_VERSION, self.token)))
        try:
            reply = await asyncio.wait_for(waiter, self.connect_timeout)
        except asyncio.TimeoutError:
            protocol.transport.close()
            raise SupervisorUnavailable(f"the supervisor at {self.address} did not answer the handshake") from None
        finally:
            self._pending.pop(0, None)
        if type(reply) is p.ErrorReply:
            protocol.transport.close()
            raise from_wire(reply.error)
        return protocol

    def _received(self, msg: p.Message) -> None:
        request_id = 0 if type(msg) is p.Welcome else getattr(msg, "request_id", 0)
        waiter = self._pending.pop(request_id, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(msg)

    def _lost(self, protocol: _Protocol, exc: BaseException | None) -> None:
        if self._protocol is protocol:
            self._protocol = None
        why = f": {exc}" if exc else ""
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(SupervisorUnavailable(f"lost the connection to the supervisor at {self.address}{why}"))
        self._pending.clear()

    async def _send(self, *makes: Any) -> list[asyncio.Future[p.Message]]:
        """Write one request per ``make(request_id)`` in a single write; their reply futures."""
        protocol = await self._connection()
        loop = asyncio.get_running_loop()
        waiters = []
        frames = []
        for make in makes:
            request_id = next(self._ids)
            waiter: asyncio.Future[p.Message] = loop.create_future()
            self._pending[request_id] = waiter
            # A caller that stops waiting (timeout, cancel) leaves no entry behind.
            waiter.add_done_callback(functools.partial(self._forget, request_id))
            waiters.append(waiter)
            frames.append(encode_frame(make(request_id)))
        assert protocol.transport is not None
        protocol.transport.write(b"".join(frames))
        return waiters

    def _forget(self, request_id: int, _: object) -> None:
        self._pending.pop(request_id, None)

    @staticmethod
    async def _reply(waiter: asyncio.Future[p.Message]) -> p.Message:
        reply = await waiter
        if type(reply) is p.ErrorReply:
            raise from_wire(reply.error)
        return reply

    async def _request(self, make: Any) -> p.Message:
        (waiter,) = await self._send(make)
        return await self._reply(waiter)

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- API ------------------------------------------------------------------------------------------

    @staticmethod
    def _prepare(workflow: Any, args: dict[str, Any] | None, run_id: str | None) -> tuple[str, dict[str, Any]]:
        args = {} if args is None else args
        if type(args) is not dict:
            raise DataError(f"args must be a dict of keyword arguments, got {type(args).__name__}")
        check_data(args, "args")
        name = _workflow_name(workflow, args)
        if run_id is not None and (not isinstance(run_id, str) or not run_id or "/" in run_id):
            raise DataError(f"run_id must be a non-empty str without '/', got {run_id!r}")
        return name, args

    async def start(self, workflow: Any, args: dict[str, Any] | None = None, *, run_id: str | None = None) -> RunHandle:
        """Start ``workflow`` with keyword ``args``. With a ``run_id`` that already exists, the
        existing run is returned (``handle.created`` is False) and nothing new starts."""
        name, args = self._prepare(workflow, args, run_id)
        reply = await self._request(lambda rid: p.StartRun(rid, name, args, run_id))
        assert type(reply) is p.RunStarted
        return RunHandle(self, reply.run_id, reply.created)

    async def result(self, run_id: str, timeout: float | None = None) -> Any:
        """Wait for run ``run_id`` to end and return its result (see RunHandle.result)."""
        (waiter,) = await self._send(lambda rid: p.AwaitRun(rid, run_id))
        return await self._finished(run_id, waiter, timeout)

    async def _finished(self, run_id: str, waiter: asyncio.Future[p.Message], timeout: float | None) -> Any:
        try:
            reply = await asyncio.wait_for(self._reply(waiter), timeout)
        except asyncio.TimeoutError:
            raise RunTimeout(f"run {run_id!r} did not finish within {timeout}s") from None
        assert type(reply) is p.RunFinished
        if reply.state == "succeeded":
            return reply.value
        error = reply.error or refusal(ErrorKind.WORKFLOW_FAILED, reply.state)
        raise WorkflowFailed(run_id, error.exc_type, error.message, error.traceback)

    async def run(self, workflow: Any, args: dict[str, Any] | None = None, *, run_id: str | None = None,
                  timeout: float | None = None) -> Any:
        """Start and wait: the run's result. Start and wait go out in one write (the run id is
        chosen here when the caller gives none), which saves a round trip per run."""
        name, args = self._prepare(workflow, args, run_id)
        run_id = run_id if run_id is not None else uuid.uuid4().hex
        started, finished = await self._send(
            lambda rid: p.StartRun(rid, name, args, run_id), lambda rid: p.AwaitRun(rid, run_id)
        )
        try:
            await self._reply(started)
        except BaseException:
            finished.cancel()
            raise
        return await self._finished(run_id, finished, timeout)

    async def status(self, run_id: str) -> RunStatus:
        reply = await self._request(lambda rid: p.GetRunStatus(rid, run_id))
        assert type(reply) is p.StatusReply
        return RunStatus(**reply.status)

    async def rerun(self, run_id: str) -> RunHandle:
        """Run a failed (or cancelled) run again under its own id, its memo kept."""
        await self._request(lambda rid: p.RerunRun(rid, run_id))
        return RunHandle(self, run_id, False)

    async def cancel(self, run_id: str) -> None:
        """Cancel a run: its workflow stops, queued tasks are dropped, running ones finish."""
        await self._request(lambda rid: p.CancelRun(rid, run_id))

    async def supervisor_status(self) -> dict[str, Any]:
        """Workers, runs by state and queue lengths (what ``coda status`` prints)."""
        reply = await self._request(lambda rid: p.GetSupervisorStatus(rid))
        assert type(reply) is p.StatusReply
        return reply.status


class SyncRunHandle:
    """A started run, for blocking code."""

    def __init__(self, client: SyncClient, handle: RunHandle) -> None:
        self._client = client
        self._handle = handle
        self.run_id = handle.run_id
        self.created = handle.created

    def result(self, timeout: float | None = None) -> Any:
        return self._client._call(self._handle.result(timeout))

    def status(self) -> RunStatus:
        return self._client._call(self._handle.status())

    def __repr__(self) -> str:
        return f"<coda.SyncRunHandle {self.run_id}>"


class SyncClient:
    """:class:`Client` with blocking methods, for Django views and Celery tasks. It runs its own
    event loop on a daemon thread, so it works whether or not the caller has a loop."""

    def __init__(self, address: str | None = None, *, token: str | None = None, connect_timeout: float = 10.0) -> None:
        self._client = Client(address, token=token, connect_timeout=connect_timeout)
        self.address = self._client.address
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="coda-sync-client", daemon=True)
        self._thread.start()

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop.is_closed():
            coro.close()
            raise CodaError("this SyncClient is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result()
        except (CodaError, TypeError) as exc:
            # The caller's error (unreachable supervisor, failed run, bad args): its traceback
            # would be the loop thread's and concurrent.futures' frames, not the caller's.
            raise exc.with_traceback(None) from exc.__cause__
        except BaseException:
            future.cancel()  # Ctrl-C while waiting: stop the request in the loop thread too
            raise

    def start(self, workflow: Any, args: dict[str, Any] | None = None, *, run_id: str | None = None) -> SyncRunHandle:
        return SyncRunHandle(self, self._call(self._client.start(workflow, args, run_id=run_id)))

    def result(self, run_id: str, timeout: float | None = None) -> Any:
        return self._call(self._client.result(run_id, timeout))

    def run(self, workflow: Any, args: dict[str, Any] | None = None, *, run_id: str | None = None,
            timeout: float | None = None) -> Any:
        return self._call(self._client.run(workflow, args, run_id=run_id, timeout=timeout))

    def status(self, run_id: str) -> RunStatus:
        return self._call(self._client.status(run_id))

    def rerun(self, run_id: str) -> SyncRunHandle:
        return SyncRunHandle(self, self._call(self._client.rerun(run_id)))

    def cancel(self, run_id: str) -> None:
        self._call(self._client.cancel(run_id))

    def supervisor_status(self) -> dict[str, Any]:
        return self._call(self._client.supervisor_status())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
