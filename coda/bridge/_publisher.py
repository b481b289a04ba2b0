"""Workflow → Celery: the bridge is a virtual worker inside the supervisor process.

It registers with the dispatcher like a worker (:class:`~coda.inprocess.BridgeHello`)
and is handed every task no Coda worker registered. For each it publishes a Celery message with
Celery's own ``apply_async`` / ``send_task`` (protocol v2, the app's routing and serializer),
waits for the result through a listener from :mod:`coda.bridge._results`, and answers
``TaskReturned`` / ``TaskRaised`` like any worker. All kombu I/O runs on two threads of its own
(one publishes, one listens); results come back to the event loop with ``call_soon_threadsafe``.

A task spawned with a cache key gets a deterministic Celery id derived from its memo key, so a
rerun that finds the same task still awaited (or, with a Redis backend, already finished or
still running) attaches to it instead of sending a duplicate.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from coda.bridge._hook import REPLY_PREFIX, hooked
from coda.bridge._results import ID_PREFIX, Outcome, RedisResults, ReplyQueue, outcome
from coda.bridge._settings import BridgeSettings, load_celery_app
from coda.data import check_data
from coda.errors import BridgeError, DataError, ErrorInfo, ErrorKind, ProtocolError, refusal, to_wire
from coda.framing import encode_message
from coda.inprocess import BridgeHello, ExecuteLegacyTask
from coda.protocol import CancelExecution, TaskRaised, TaskReturned

__all__ = ["CeleryBridge", "celery_task_id"]

logger = logging.getLogger(__name__)

# Publishing retries through a broker restart, but not forever.
_PUBLISH_RETRY = {"max_retries": 30, "interval_start": 0.0, "interval_step": 0.5, "interval_max": 2.0}
_CAPACITY = 100_000
_ABANDONED_KEPT = 10_000


def celery_task_id(memo_key: bytes | None) -> str:
    """The Celery task id for a spawn: derived from its memo key, random without one."""
    return ID_PREFIX + (memo_key.hex() if memo_key is not None else uuid.uuid4().hex)


@dataclass(eq=False)
class _Awaited:
    """One Celery message the bridge waits for, and the executions waiting on it."""

    celery_id: str
    task: str
    queue: str
    exec_ids: list[int] = field(default_factory=list)
    started: bool = False
    timer: asyncio.TimerHandle | None = None


class CeleryBridge:
    """The supervisor's Celery side: :meth:`start`, then :meth:`handle` what the dispatcher
    sends it; answers go to ``deliver`` (the dispatcher, on the event loop)."""

    def __init__(self, settings: BridgeSettings, deliver: Callable[[TaskReturned | TaskRaised], None]) -> None:
        self.settings = settings
        self.deliver = deliver
        self.app: Any = None
        self.mode = ""
        self.notices = False  # whether workers report STARTED, so a pickup bound can be kept
        self.reply_to = f"{REPLY_PREFIX}{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
        self.awaited: dict[str, _Awaited] = {}
        self.by_exec: dict[int, str] = {}
        self.abandoned: OrderedDict[str, dict[str, Any] | None] = OrderedDict()
        self.revoked: set[str] = set()
        self._queues: dict[str, str] = {}
        self._ids_lock = threading.Lock()
        self._ids: set[str] = set()  # awaited ids, for the listener thread
        self._loop: asyncio.AbstractEventLoop | None = None
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="coda-bridge-publish")
        self._listener: RedisResults | ReplyQueue | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> BridgeHello:
        """Load the Celery app, start listening for results; the hello for the dispatcher."""
        from celery.backends.base import DisabledBackend
        from celery.backends.redis import RedisBackend
        from celery.backends.rpc import RPCBackend

        self._loop = asyncio.get_running_loop()
        app = self.app = load_celery_app(self.settings.celery_app)
        if self.settings.broker:
            app.conf.broker_url = self.settings.broker
        if app.conf.task_always_eager:
            raise BridgeError("the Celery app has task_always_eager set: the bridge would run tasks in the supervisor")
        backend = app.backend
        if isinstance(backend, RedisBackend):
            self.mode = "redis"
            self._listener = RedisResults(backend, self._from_thread, self._awaited_ids)
        elif isinstance(backend, (RPCBackend, DisabledBackend)):
            self.mode = "rpc" if isinstance(backend, RPCBackend) else "none"
            self._listener = ReplyQueue(app, self.reply_to, self._from_thread)
        else:
            raise BridgeError(
                f"the Celery result backend {type(backend).__name__} is not supported by the bridge: "
                "use a Redis backend, rpc://, or none (with coda.bridge.install(app) in the app module)"
            )
        self.notices = self.mode == "none" or hooked(app) or bool(app.conf.task_track_started)
        listener = self._listener
        self._thread = threading.Thread(target=listener.run, name="coda-bridge-results", daemon=True)
        self._thread.start()
        if not await asyncio.to_thread(listener.ready.wait, 30.0):
            listener.stop()
            raise BridgeError(f"the bridge cannot reach the Celery broker/result backend of {self.settings.celery_app}")
        logger.info("coda.bridge.started", extra={
            "app": self.settings.celery_app, "results": self.mode, "started_notices": self.notices})
        return BridgeHello(capacity=_CAPACITY)

    async def stop(self) -> None:
        for entry in self.awaited.values():
            if entry.timer is not None:
                entry.timer.cancel()
        if self._listener is not None:
            self._listener.stop()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
        if isinstance(self._listener, ReplyQueue):
            self._listener.close()
        self._io.shutdown(wait=False, cancel_futures=True)

    # -- from the dispatcher ------------------------------------------------------------------------

    def handle(self, msg: object) -> None:
        match msg:
            case ExecuteLegacyTask():
                self._execute(msg)
            case CancelExecution():
                self._cancel(msg.exec_id)
            case _:
                logger.warning("coda.bridge.unexpected_message", extra={"type": type(msg).__name__})

    def _execute(self, msg: ExecuteLegacyTask) -> None:
        celery_id = celery_task_id(msg.memo_key)
        suffix = 0
        while celery_id + (f"-{suffix}" if suffix else "") in self.revoked:
            suffix += 1  # a revoked id would be revoked again by every worker that remembers it
        celery_id += f"-{suffix}" if suffix else ""
        entry = self.awaited.get(celery_id)
        if entry is not None:  # the same memo key is still awaited: no duplicate message
            entry.exec_ids.append(msg.exec_id)
            self.by_exec[msg.exec_id] = celery_id
            return
        entry = self._await(celery_id, msg.task, [msg.exec_id])
        if celery_id in self.abandoned:
            # We gave up waiting for it once; the message is still out there, so wait again.
            late = self.abandoned.pop(celery_id)
            logger.info("coda.bridge.reattached", extra={"task": msg.task, "celery_id": celery_id})
            self._arm(entry)
            if late is not None:
                self._loop_call(self._on_meta, late)
            return
        assert self._loop is not None
        future = self._loop.run_in_executor(self._io, self._send, msg.task, msg.args, celery_id, msg.memo_key is not None)
        future.add_done_callback(lambda f: self._sent(celery_id, f))

    def _cancel(self, exec_id: int) -> None:
        celery_id = self.by_exec.pop(exec_id, None)
        entry = self.awaited.get(celery_id) if celery_id is not None else None
        if entry is None or celery_id is None:
            return
        entry.exec_ids.remove(exec_id)
        error = refusal(ErrorKind.CANCELLED, f"its run was cancelled; Celery task {celery_id} revoked")
        self._loop_call(self.deliver, TaskRaised(exec_id, error, None))
        if not entry.exec_ids:
            self._forget(entry)
            self.revoked.add(celery_id)
            assert self._loop is not None
            self._loop.run_in_executor(self._io, self._revoke, celery_id)

    # -- I/O thread ---------------------------------------------------------------------------------

    def _send(self, name: str, args: dict[str, Any], celery_id: str, lookup: bool) -> dict[str, Any] | None:
        if lookup and self.mode == "redis":
            # Finished or running under this id already (a rerun, or a supervisor restart): no resend.
            meta: dict[str, Any] = self.app.backend.get_task_meta(celery_id)
            if meta.get("status") in ("SUCCESS", "STARTED", "RETRY"):
                return meta
        options = {"task_id": celery_id, "reply_to": self.reply_to, "ignore_result": False,
                   "retry": True, "retry_policy": _PUBLISH_RETRY}
        task = self.app.tasks.get(name)
        if task is not None:
            task.apply_async(kwargs=args, **options)
        else:  # known by name only: its module lives with the Celery workers
            self.app.send_task(name, kwargs=args, **options)
        return None

    def _revoke(self, celery_id: str) -> None:
        try:
            self.app.control.revoke(celery_id, terminate=True)
        except Exception as exc:  # noqa: BLE001 - the run is cancelled either way
            logger.warning("coda.bridge.revoke_failed", extra={"celery_id": celery_id, "reason": str(exc)})

    # -- back on the event loop ---------------------------------------------------------------------

    def _sent(self, celery_id: str, future: asyncio.Future[dict[str, Any] | None]) -> None:
        entry = self.awaited.get(celery_id)
        if entry is None or future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            message = f"cannot publish Celery task {entry.task!r} to queue {entry.queue!r}: {type(exc).__name__}: {exc}"
            # The task failed (a TaskFailed in the workflow), for a reason of the bridge's.
            self._fail(entry, to_wire(BridgeError(message), ErrorKind.ERROR))
            return
        found = future.result()
        if found is not None:
            logger.info("coda.bridge.found_existing", extra={"task": entry.task, "celery_id": celery_id, "status": found.get("status")})
            self._on_meta(found)
        if celery_id in self.awaited and entry.timer is None:
            self._arm(entry)

    def _from_thread(self, meta: dict[str, Any]) -> None:
        self._loop_call(self._on_meta, meta)

    def _on_meta(self, meta: dict[str, Any]) -> None:
        celery_id = meta.get("task_id")
        if not isinstance(celery_id, str):
            return
        entry = self.awaited.get(celery_id)
        if entry is None:
            if celery_id in self.abandoned and meta.get("status") in ("SUCCESS", "FAILURE", "REVOKED"):
                self.abandoned[celery_id] = meta
            return
        result: Outcome | None = outcome(meta, entry.task, entry.queue)
        if result is None:
            return
        if result.state in ("started", "retry"):
            entry.started = True
            self._arm(entry)
        elif result.state == "success":
            try:
                check_data(result.value, f"result of Celery task {entry.task!r}")
                # A value msgpack refuses (a lone surrogate JSON can carry) fails the task here,
                # before it is memoized, not later in the supervisor's writes.
                encode_message(TaskReturned(0, result.value))
            except (DataError, ProtocolError) as exc:
                self._fail(entry, to_wire(exc, ErrorKind.ERROR))
                return
            self._forget(entry)
            for exec_id in entry.exec_ids:
                self.deliver(TaskReturned(exec_id, result.value))
        else:
            self._fail(entry, result.value)

    def _arm(self, entry: _Awaited) -> None:
        """Bound the wait: for a worker to start it (when workers report that), then for its result."""
        assert self._loop is not None
        if entry.timer is not None:
            entry.timer.cancel()
        pickup = self.notices and not entry.started
        delay = self.settings.pickup_timeout if pickup else self.settings.result_timeout
        entry.timer = self._loop.call_later(delay, self._expired, entry.celery_id, pickup, delay)

    def _expired(self, celery_id: str, pickup: bool, delay: float) -> None:
        entry = self.awaited.get(celery_id)
        if entry is None:
            return
        entry.timer = None
        if pickup:
            hint = ("; with no result backend only workers whose Celery app module calls "
                    "coda.bridge.install(app) report back" if self.mode == "none" else "")
            message = (f"no Celery worker started task {entry.task!r} from queue {entry.queue!r} within {delay:g}s: "
                       f"is a worker consuming {entry.queue!r}, does it know {entry.task!r}, and does the Celery app "
                       f"module call coda.bridge.install(app)?{hint}")
        else:
            message = f"no result for Celery task {entry.task!r} (queue {entry.queue!r}, id {celery_id}) within {delay:g}s"
        logger.warning("coda.bridge.timeout", extra={"celery_id": celery_id, "reason": message})
        self.abandoned[celery_id] = None
        while len(self.abandoned) > _ABANDONED_KEPT:
            self.abandoned.popitem(last=False)
        self._fail(entry, refusal(ErrorKind.TIMEOUT, message))

    def _fail(self, entry: _Awaited, error: ErrorInfo) -> None:
        self._forget(entry)
        for exec_id in entry.exec_ids:
            self.deliver(TaskRaised(exec_id, error, None))  # Celery already did its own retries

    # -- bookkeeping --------------------------------------------------------------------------------

    def _await(self, celery_id: str, task: str, exec_ids: list[int]) -> _Awaited:
        entry = _Awaited(celery_id, task, self._queue_of(task), list(exec_ids))
        self.awaited[celery_id] = entry
        for exec_id in exec_ids:
            self.by_exec[exec_id] = celery_id
        with self._ids_lock:
            self._ids.add(celery_id)
        return entry

    def _forget(self, entry: _Awaited) -> None:
        if entry.timer is not None:
            entry.timer.cancel()
            entry.timer = None
        self.awaited.pop(entry.celery_id, None)
        for exec_id in entry.exec_ids:
            self.by_exec.pop(exec_id, None)
        with self._ids_lock:
            self._ids.discard(entry.celery_id)

    def _awaited_ids(self) -> list[str]:
        with self._ids_lock:
            return list(self._ids)

    def _queue_of(self, name: str) -> str:
        """The queue Celery's router picks for ``name`` (for error messages)."""
        queue = self._queues.get(name)
        if queue is None:
            task = self.app.tasks.get(name)
            options = {"queue": task.queue} if task is not None and getattr(task, "queue", None) else {}
            try:
                route = self.app.amqp.router.route(options, name, (), {})
                found = route.get("queue")
                queue = str(getattr(found, "name", found) or self.app.conf.task_default_queue)
            except Exception:  # noqa: BLE001 - only used to name the queue in messages
                queue = str(self.app.conf.task_default_queue)
            self._queues[name] = queue
        return queue

    def _loop_call(self, fn: Callable[..., Any], *args: Any) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(fn, *args)
