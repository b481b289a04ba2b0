"""The worker process: imports the user's modules, runs the tasks and workflows its supervisor
hands it, and talks to nothing but that supervisor (over the socket it inherited).

Async tasks and workflows run on the worker's event loop; plain ``def`` tasks run on a small
thread pool so the loop keeps serving workflows meanwhile. A task marked ``main_thread`` (the
queue takeover's Celery message) runs on the loop's own thread when nothing else would wait
for it, as a Celery pool child runs its task: no thread hand-off, signals work.

A spawn with no cache key, from a workflow that is not replaying, starts here at once when a
slot is free; the supervisor is told in the same message and treats it as placed here. A worker
decides *whether* a failed task is retried (the policy belongs to the task definition); the
supervisor owns the timer.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextvars
import importlib
import itertools
import logging
import os
import signal
import socket
import sys
import traceback
from typing import Any

from coda import protocol as p
from coda.context import CURRENT
from coda.data import check_data
from coda.errors import (
    CodaError,
    DataError,
    ProtocolError,
    TaskFailed,
    TaskTimeout,
    UnknownName,
    WorkerLost,
    WorkflowFailed,
)
from coda.framing import DEFAULT_MAX_FRAME, FrameDecoder, encode_frame
from coda.registry import REGISTRY, ExecInfo, Registry

__all__ = ["Worker", "error_info", "main"]

logger = logging.getLogger(__name__)


def _type_name(exc: BaseException) -> str:
    kind = type(exc)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def error_info(exc: BaseException, kind: str = "error") -> p.ErrorInfo:
    """``exc`` as it crosses the wire: qualified type, message and the formatted traceback."""
    text = "".join(traceback.format_exception(exc))
    if isinstance(exc, TaskFailed) and exc.traceback:
        text += f"\nRemote traceback of task {exc.task_name!r}:\n{exc.traceback}"
    return p.ErrorInfo(exc_type=_type_name(exc), message=str(exc), traceback=text, kind=kind)


class _Execution:
    """One workflow execution as ``coda.context`` sees it."""

    __slots__ = ("attempt", "exec_id", "replaying", "requests", "run_id", "seq", "worker")

    def __init__(self, worker: Worker, exec_id: int, run_id: str, attempt: int, replaying: bool) -> None:
        self.worker = worker
        self.exec_id = exec_id
        self.run_id = run_id
        self.attempt = attempt
        self.replaying = replaying
        self.requests: set[int] = set()
        self.seq = 0

    def spawn(self, kind: str, name: str, args: dict[str, Any], cache_key: list[Any] | None) -> asyncio.Future[Any]:
        worker = self.worker
        request_id = next(worker.request_ids)
        future: asyncio.Future[Any] = worker.loop.create_future()
        worker.waiting[request_id] = (future, self)
        self.requests.add(request_id)
        if kind == "task":
            self.seq += 1
            # Nothing to look up (no cache key, no earlier outcome) and a free slot here: start
            # it now and tell the supervisor, instead of waiting for it to send the task back.
            local = cache_key is None and not self.replaying and worker.can_start(name)
            worker.send(p.SpawnTask(request_id, self.run_id, name, args, cache_key, self.seq, local))
            if local:
                worker.handle(p.ExecuteTask(-request_id, self.run_id, name, args, 1, request_id))
        else:
            worker.send(p.SpawnWorkflow(request_id, self.run_id, name, args))
        return future


class Worker(asyncio.Protocol):
    """The worker's side of the supervisor connection, and everything it runs."""

    def __init__(self, registry: Registry, concurrency: int = 1, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.registry = registry
        self.concurrency = concurrency
        self.loop = asyncio.get_running_loop()
        self.decoder = FrameDecoder(max_frame)
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="coda-task")
        self.request_ids = itertools.count(1)
        self.waiting: dict[int, tuple[asyncio.Future[Any], _Execution]] = {}
        self.workflows: dict[int, asyncio.Task[None]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.running = 0  # tasks started and not finished
        self._context = contextvars.copy_context()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.transport: asyncio.Transport | None = None
        self._out: list[bytes] = []

    # -- connection -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.send(
            p.WorkerHello(
                version=p.PROTOCOL_VERSION,
                pid=os.getpid(),
                tasks=tuple(t.spec() for t in self.registry.tasks.values()),
                workflows=tuple(w.spec() for w in self.registry.workflows.values()),
            )
        )

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except ProtocolError as exc:
            logger.error("coda.worker.protocol_error: %s", exc)
            assert self.transport is not None
            self.transport.close()
            return
        for msg in messages:
            self.handle(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, msg: p.Message) -> None:
        # Coalesce the frames of one loop iteration into one write.
        if not self._out:
            self.loop.call_soon(self._flush)
        self._out.append(encode_frame(msg))

    def _flush(self) -> None:
        data = b"".join(self._out)
        self._out.clear()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- messages from the supervisor -------------------------------------------------------------

    def handle(self, msg: p.Message) -> None:
        kind = type(msg)
        if kind is p.SpawnSucceeded or kind is p.SpawnFailed:
            self._resolve(msg)  # type: ignore[arg-type]
        elif kind is p.ExecuteTask:
            self.running += 1  # now, not when the coroutine starts: the next spawn may ask
            # Outside any workflow's context, also when a workflow started it (coda.context
            # is for workflows only).
            self._start(self._run_task(msg), self._context.copy())  # type: ignore[arg-type]
        elif kind is p.ExecuteWorkflow:
            self._start_workflow(msg)  # type: ignore[arg-type]
        elif kind is p.CancelExecution:
            running = self.workflows.get(msg.exec_id)  # type: ignore[attr-defined]
            if running is not None:
                running.cancel()
        elif kind is p.Welcome:
            logger.debug("coda.worker.welcomed")
        else:
            logger.warning("coda.worker.unexpected_message: %s", kind.__name__)

    def can_start(self, name: str) -> bool:
        """Whether a task spawned here may start here at once (see ``SpawnTask.local``)."""
        definition = self.registry.tasks.get(name)
        return definition is not None and definition.local_start and self.running < self.concurrency

    def _start(self, coro: Any, context: contextvars.Context | None = None) -> asyncio.Task[None]:
        running = self.loop.create_task(coro, context=context)
        self.tasks.add(running)
        running.add_done_callback(self.tasks.discard)
        return running

    def _resolve(self, msg: p.SpawnSucceeded | p.SpawnFailed) -> None:
        entry = self.waiting.pop(msg.request_id, None)
        if entry is None:
            return
        future, execution = entry
        execution.requests.discard(msg.request_id)
        if future.done():
            return
        if type(msg) is p.SpawnSucceeded:
            future.set_result(msg.value)
        else:
            future.set_exception(_task_failed(msg))  # type: ignore[arg-type]

    # -- tasks ------------------------------------------------------------------------------------

    async def _run_task(self, msg: p.ExecuteTask) -> None:
        definition = self.registry.tasks.get(msg.task)
        if definition is None:
            self.running -= 1
            error = p.ErrorInfo("coda.errors.UnknownName", f"this worker has no task {msg.task!r}", "", "unknown_name")
            self.send(p.TaskFailed(msg.exec_id, error, None))
            return
        info = ExecInfo(msg.exec_id, msg.run_id, msg.attempt)
        try:
            if definition.is_async:
                value = await definition.invoke(msg.args, info)
            elif definition.main_thread and self.concurrency == 1 and not self.workflows:
                # The only thing this worker runs: blocking the loop holds nothing up.
                value = _blocking(definition.invoke, msg.args, info)
            else:
                value = await self.loop.run_in_executor(self.pool, definition.invoke, msg.args, info)
            check_data(value, f"result of task {msg.task!r}")
        except BaseException as exc:  # noqa: BLE001 - every failure is reported, none kills the worker
            self.running -= 1
            if isinstance(exc, asyncio.CancelledError):
                raise
            error = error_info(exc)
            retry_in = definition.retry_in(exc, info)
            if msg.local_request is not None and retry_in is None:
                self._resolve(p.SpawnFailed(msg.local_request, msg.task, error))
            self.send(p.TaskFailed(msg.exec_id, error, retry_in))
        else:
            self.running -= 1
            # Wake the local workflow first, then queue the result: the frame is still ahead of
            # anything the workflow sends next (one ordered buffer), and its next spawn joins
            # the same write, so the supervisor wakes once per step instead of twice.
            if msg.local_request is not None:
                self._resolve(p.SpawnSucceeded(msg.local_request, value))
            self.send(p.TaskSucceeded(msg.exec_id, value))

    # -- workflows --------------------------------------------------------------------------------

    def _start_workflow(self, msg: p.ExecuteWorkflow) -> None:
        definition = self.registry.workflows.get(msg.workflow)
        if definition is None:
            error = p.ErrorInfo("coda.errors.UnknownName", f"this worker has no workflow {msg.workflow!r}", "", "unknown_name")
            self.send(p.WorkflowFailed(msg.exec_id, error))
            return
        execution = _Execution(self, msg.exec_id, msg.run_id, msg.attempt, msg.replaying)
        context = contextvars.copy_context()
        context.run(CURRENT.set, execution)
        self.workflows[msg.exec_id] = self._start(self._run_workflow(msg, definition.fn, execution), context)

    async def _run_workflow(self, msg: p.ExecuteWorkflow, fn: Any, execution: _Execution) -> None:
        try:
            value = await fn(**msg.args)
            check_data(value, f"result of workflow {msg.workflow!r}")
        except asyncio.CancelledError:
            # Cancelled by the supervisor, which already counts the run as cancelled.
            pass
        except BaseException as exc:  # noqa: BLE001
            self.send(p.WorkflowFailed(msg.exec_id, error_info(exc)))
        else:
            self.send(p.WorkflowSucceeded(msg.exec_id, value))
        finally:
            self.workflows.pop(msg.exec_id, None)
            for request_id in execution.requests:
                self.waiting.pop(request_id, None)


def _blocking(fn: Any, *args: Any) -> Any:
    """Call ``fn`` on the loop's thread as if no loop ran there, so that code written for a
    plain process (``asyncio.run`` in a Celery task) behaves as it does in one."""
    running = asyncio.events._get_running_loop()
    asyncio.events._set_running_loop(None)
    try:
        return fn(*args)
    finally:
        asyncio.events._set_running_loop(running)


def _task_failed(msg: p.SpawnFailed) -> CodaError:
    """The exception a workflow sees when what it spawned failed."""
    error = msg.error
    if error.kind == "unknown_name":
        return UnknownName(error.message)
    if error.kind == "invalid":
        return DataError(error.message)
    if error.kind == "workflow_failed":
        return WorkflowFailed(msg.task, error.exc_type, error.message, error.traceback)
    cls = {"timeout": TaskTimeout, "worker_lost": WorkerLost}.get(error.kind, TaskFailed)
    return cls(msg.task, error.exc_type, error.message, error.traceback)


# -- process entry point ---------------------------------------------------------------------------


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="coda-worker", description="A Coda worker (started by coda supervisor).")
    parser.add_argument("--fd", type=int, required=True, help="inherited socket to the supervisor")
    parser.add_argument("-A", "--app", action="append", default=[], help="module to import")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--max-frame", type=int, default=DEFAULT_MAX_FRAME)
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> None:
    sock = socket.socket(fileno=args.fd)
    loop = asyncio.get_running_loop()
    worker = Worker(REGISTRY, args.concurrency, args.max_frame)
    await loop.create_unix_connection(lambda: worker, sock=sock)
    await worker.closed


def main(argv: list[str] | None = None) -> None:
    args = _parse(sys.argv[1:] if argv is None else argv)
    # Ctrl-C reaches the whole process group; the supervisor decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=os.environ.get("CODA_LOG_LEVEL", "WARNING").upper(),
        format=f"%(asctime)s coda-worker[{os.getpid()}] %(levelname)s %(name)s: %(message)s",
    )
    for module in args.app:
        try:
            importlib.import_module(module)
        except Exception:
            traceback.print_exc()
            print(f"coda-worker: cannot import -A {module}", file=sys.stderr)
            sys.exit(3)
    asyncio.run(_serve(args))
    # The supervisor is gone: threads running plain tasks cannot be interrupted, so leave now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
