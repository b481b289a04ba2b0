"""The worker process: imports the user's modules, runs the tasks and workflows its supervisor
hands it, and talks to nothing but that supervisor (over the socket it inherited).

A worker is message in, messages out: every frame from the supervisor goes through
:meth:`Worker.handle`, everything it says goes through :meth:`Worker.send` (the frames of one
loop iteration in one write), so a test can feed it frames and read the frames it writes.

Async tasks and workflows run on the worker's event loop; plain ``def`` tasks run on a small
thread pool so the loop keeps serving workflows meanwhile. A task marked ``main_thread`` (the
queue takeover's Celery message) runs on the loop's own thread when nothing else would wait
for it, as a Celery pool child runs its task: no thread hand-off, signals work.

A spawn with no cache key, from a workflow that is not replaying, starts here at once when a
slot is free, beside its workflow; the supervisor is told in the same message and treats it as
placed here. A worker decides *whether* a failed task is retried (the policy belongs to the task
definition); the supervisor owns the timer.
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
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from coda import protocol as p
from coda.context import CURRENT
from coda.data import check_data
from coda.errors import ErrorInfo, ErrorKind, ProtocolError, UnknownName, from_wire, refusal, to_wire
from coda.framing import DEFAULT_MAX_FRAME, FrameStream, encode_frame
from coda.logs import setup_logging
from coda.registry import REGISTRY, ExecInfo, Registry

__all__ = ["Worker", "main"]

logger = logging.getLogger(__name__)


class _RunningWorkflow:
    """One workflow execution on this worker, as ``coda.context`` sees it (a WorkflowRuntime)."""

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
            started = cache_key is None and not self.replaying and worker.can_start(name)
            worker.send(p.SpawnTask(request_id, self.run_id, name, args, cache_key, self.seq, started))
            if started:
                worker.start_task(_TaskRun(None, request_id, self.run_id, name, args, 1, request_id))
        else:
            worker.send(p.SpawnWorkflow(request_id, self.run_id, name, args))
        return future


@dataclass(frozen=True, slots=True)
class _TaskRun:
    """One task execution on this worker. ``exec_id`` is the supervisor's, or None for a task
    started here beside its workflow, which is known by its spawn's ``request_id`` instead;
    ``awaited_by`` is the spawn of a workflow here that this worker answers itself."""

    exec_id: int | None
    request_id: int | None
    run_id: str
    task: str
    args: dict[str, Any]
    attempt: int
    awaited_by: int | None


class Worker(FrameStream):
    """The worker's side of the supervisor connection, and everything it runs."""

    def __init__(self, registry: Registry, concurrency: int = 1, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        super().__init__(max_frame)
        self.registry = registry
        self.concurrency = concurrency
        self.loop = asyncio.get_running_loop()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="coda-task")
        self.request_ids = itertools.count(1)
        self.waiting: dict[int, tuple[asyncio.Future[Any], _RunningWorkflow]] = {}
        self.workflows: dict[int, asyncio.Task[None]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.running = 0  # tasks started and not finished
        self._context = contextvars.copy_context()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self._out: list[bytes] = []

    # -- connection -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.send(
            p.WorkerHello(
                version=p.PROTOCOL_VERSION,
                pid=os.getpid(),
                tasks=tuple(t.spec() for t in self.registry.tasks.values()),
                workflows=tuple(w.spec() for w in self.registry.workflows.values()),
            )
        )

    def message_received(self, msg: p.Message) -> None:
        self.handle(msg)

    def frame_error(self, exc: ProtocolError) -> None:
        logger.error("coda.worker.protocol_error", extra={"reason": str(exc)})
        super().frame_error(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, msg: p.Message) -> None:
        self._queue(encode_frame(msg))

    def _queue(self, frame: bytes) -> None:
        # Coalesce the frames of one loop iteration into one write.
        if not self._out:
            self.loop.call_soon(self._flush)
        self._out.append(frame)

    def _flush(self) -> None:
        data = b"".join(self._out)
        self._out.clear()
        self.write(data)

    # -- messages from the supervisor -------------------------------------------------------------

    def handle(self, msg: p.Message) -> None:
        match msg:
            case p.SpawnSucceeded(request_id=request_id, value=value):
                self._resolve(request_id, value)
            case p.SpawnFailed(request_id=request_id, task=task, error=error):
                self._resolve(request_id, from_wire(error, task), failed=True)
            case p.ExecuteTask():
                self.start_task(_TaskRun(msg.exec_id, None, msg.run_id, msg.task, msg.args, msg.attempt, msg.awaited_by))
            case p.ExecuteWorkflow():
                self._start_workflow(msg)
            case p.CancelExecution(exec_id=exec_id):
                running = self.workflows.get(exec_id)
                if running is not None:
                    running.cancel()
            case p.Welcome():
                logger.debug("coda.worker.welcomed")
            case _:
                logger.warning("coda.worker.unexpected_message", extra={"type": type(msg).__name__})

    def can_start(self, name: str) -> bool:
        """Whether a task spawned here may start here at once (see ``SpawnTask.started``)."""
        definition = self.registry.tasks.get(name)
        return definition is not None and definition.local_start and self.running < self.concurrency

    def _start(self, coro: Coroutine[Any, Any, None], context: contextvars.Context | None = None) -> asyncio.Task[None]:
        running = self.loop.create_task(coro, context=context)
        self.tasks.add(running)
        running.add_done_callback(self.tasks.discard)
        return running

    def _resolve(self, request_id: int, outcome: Any, failed: bool = False) -> None:
        """Hand a spawn's outcome (its value, or the exception to raise) to the workflow
        awaiting it, if it still does."""
        entry = self.waiting.pop(request_id, None)
        if entry is None:
            return
        future, workflow = entry
        workflow.requests.discard(request_id)
        if future.done():
            return
        if failed:
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    # -- tasks ------------------------------------------------------------------------------------

    def start_task(self, run: _TaskRun) -> None:
        self.running += 1  # now, not when the coroutine starts: the next spawn may ask
        # Outside any workflow's context, also when a workflow started it (coda.context
        # is for workflows only).
        self._start(self._run_task(run), self._context.copy())

    async def _run_task(self, run: _TaskRun) -> None:
        definition = self.registry.tasks.get(run.task)
        if definition is None:
            self.running -= 1
            self._task_raised(run, refusal(ErrorKind.UNKNOWN_NAME, f"this worker has no task {run.task!r}"), None)
            return
        # ExecInfo wants an id unique within the run: a task started here has only its spawn's
        # request id, negated so that it never equals one of the supervisor's.
        info = ExecInfo(-(run.request_id or 0) if run.exec_id is None else run.exec_id, run.run_id, run.attempt)
        try:
            if definition.is_async:
                value = await definition.invoke(run.args, info)
            elif definition.main_thread and self.concurrency == 1 and not self.workflows:
                # The only thing this worker runs: blocking the loop holds nothing up.
                value = _blocking(definition.invoke, run.args, info)
            else:
                value = await self.loop.run_in_executor(self.pool, definition.invoke, run.args, info)
            check_data(value, f"result of task {run.task!r}")
            frame = encode_frame(p.TaskReturned(run.exec_id, value, run.request_id))  # a result that cannot go fails here
        except BaseException as exc:  # noqa: BLE001 - every failure is reported, none kills the worker
            self.running -= 1
            if isinstance(exc, asyncio.CancelledError):
                raise
            # UnknownName: the harness could not run it here (a Celery message for a task the
            # worker's Celery app lacks), not the task failing.
            error = to_wire(exc, ErrorKind.UNKNOWN_NAME if isinstance(exc, UnknownName) else ErrorKind.ERROR)
            self._task_raised(run, error, definition.retry_in(exc, info))
        else:
            self.running -= 1
            # Wake the workflow beside it first, then queue the result: the frame is still ahead
            # of anything the workflow sends next (one ordered buffer), and its next spawn joins
            # the same write, so the supervisor wakes once per step instead of twice.
            if run.awaited_by is not None:
                self._resolve(run.awaited_by, value)
            self._queue(frame)

    def _task_raised(self, run: _TaskRun, error: ErrorInfo, retry_in: float | None) -> None:
        if run.awaited_by is not None and retry_in is None:
            self._resolve(run.awaited_by, from_wire(error, run.task), failed=True)
        self.send(p.TaskRaised(run.exec_id, error, retry_in, run.request_id))

    # -- workflows --------------------------------------------------------------------------------

    def _start_workflow(self, msg: p.ExecuteWorkflow) -> None:
        definition = self.registry.workflows.get(msg.workflow)
        if definition is None:
            error = refusal(ErrorKind.UNKNOWN_NAME, f"this worker has no workflow {msg.workflow!r}")
            self.send(p.WorkflowRaised(msg.exec_id, error))
            return
        workflow = _RunningWorkflow(self, msg.exec_id, msg.run_id, msg.attempt, msg.replaying)
        context = contextvars.copy_context()
        context.run(CURRENT.set, workflow)
        self.workflows[msg.exec_id] = self._start(self._run_workflow(msg, definition.fn, workflow), context)

    async def _run_workflow(self, msg: p.ExecuteWorkflow, fn: Callable[..., Any], workflow: _RunningWorkflow) -> None:
        try:
            value = await fn(**msg.args)
            check_data(value, f"result of workflow {msg.workflow!r}")
            frame = encode_frame(p.WorkflowReturned(msg.exec_id, value))
        except asyncio.CancelledError:
            # Cancelled by the supervisor, which already counts the run as cancelled.
            pass
        except BaseException as exc:  # noqa: BLE001
            self.send(p.WorkflowRaised(msg.exec_id, to_wire(exc, ErrorKind.ERROR)))
        else:
            self._queue(frame)
        finally:
            self.workflows.pop(msg.exec_id, None)
            for request_id in workflow.requests:
                self.waiting.pop(request_id, None)


def _blocking(fn: Callable[..., Any], *args: Any) -> Any:
    """Call ``fn`` on the loop's thread as if no loop ran there, so that code written for a
    plain process (``asyncio.run`` in a Celery task) behaves as it does in one."""
    running = asyncio.events._get_running_loop()
    asyncio.events._set_running_loop(None)
    try:
        return fn(*args)
    finally:
        asyncio.events._set_running_loop(running)


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
    setup_logging(os.environ.get("CODA_LOG_LEVEL", "WARNING"), f"coda-worker[{os.getpid()}]")
    for module in args.app:
        try:
            importlib.import_module(module)
        except Exception:
            logger.exception("coda.worker.import_failed", extra={"app": module, "reason": f"cannot import -A {module}"})
            sys.exit(3)
    asyncio.run(_serve(args))
    # The supervisor is gone: threads running plain tasks cannot be interrupted, so leave now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
