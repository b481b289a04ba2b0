"""Celery → Coda: ``coda supervisor --celery-app proj.celery:app -Q queue`` takes over queues.

A :class:`Takeover` lives in the supervisor process as an in-process client of the dispatcher.
Its consumer thread (:mod:`coda.bridge._consumer`) owns the kombu connection and hands this,
the event-loop side, each message parsed (:mod:`coda.bridge._handoff`); here ``eta``/``countdown`` messages wait on timers,
``rate_limit`` is applied, and each message is submitted as one execution of the worker-side
task :data:`~coda.bridge._settings.TASK_NAME` (see :mod:`coda.bridge._execute`). The dispatcher
places it on a worker, enforces the hard time limit by killing and replacing that worker, and
answers; only then is the message acknowledged (late ack, always): a supervisor that dies leaves
its messages unacked, and the broker hands them out again.

Workers publish results and follow-up messages themselves (Celery's tracer does so from the
process that runs the task); the supervisor never relays them, so it needs no model of result
backends, chords or canvas.

A message for :data:`~coda.bridge._settings.START_WORKFLOW` (published by
:func:`coda.bridge.workflow_entry`) starts a workflow run instead; it is acknowledged once the
run is recorded.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any, TypeAlias

from kombu.utils import limits

from coda.bridge._consumer import QueueConsumer
from coda.bridge._handoff import (
    Arrival,
    Holding,
    Lost,
    Settle,
    Settled,
    StartMessage,
    StopConsuming,
    TaskMessage,
    TimedOut,
)
from coda.bridge._settings import TASK_NAME, BridgeSettings, load_celery_app
from coda.errors import BridgeError, ErrorInfo, ErrorKind
from coda.inprocess import SubmitTask
from coda.protocol import PROTOCOL_VERSION, ClientHello, ErrorReply, RunStarted, SpawnFailed, SpawnSucceeded, StartRun, Welcome

__all__ = ["FromTakeover", "Takeover"]

logger = logging.getLogger(__name__)

# Celery's default: prefetch = 4 x the processes that run tasks.
_PREFETCH_MULTIPLIER = 4
_CONSUMER_READY_TIMEOUT = 30.0

# kombu ships no annotations for it.
_TokenBucket: Any = limits.TokenBucket

FromTakeover: TypeAlias = ClientHello | SubmitTask | StartRun

_ACK = Settle.ACK  # an Enum member lookup costs ~200 ns on Python 3.11; this one is per message


class Takeover:
    """Consumes Celery queues for one supervisor; ``deliver`` hands a message to its dispatcher
    (as this peer), and the server routes the dispatcher's answers to :meth:`handle`."""

    def __init__(self, settings: BridgeSettings, deliver: Callable[[FromTakeover], None]) -> None:
        self.settings = settings
        self.deliver = deliver
        self.app = load_celery_app(settings.celery_app)
        self.prefetch = settings.slots * _PREFETCH_MULTIPLIER
        self._inflight: dict[int, Arrival] = {}  # submitted, by tag (the request id)
        self._held = 0  # messages waiting for their eta
        self._limited: dict[str, tuple[Any, collections.deque[TaskMessage]]] = {}
        self._draining = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer: QueueConsumer | None = None

    # -- lifecycle ----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Register with the dispatcher, import the task modules, then start consuming."""
        loop = self._loop = asyncio.get_running_loop()
        self.deliver(ClientHello(PROTOCOL_VERSION, self.settings.token))
        # Like `celery worker`'s main process, know every task, so that an unknown name is
        # rejected here and time/rate limits are read off the task.
        for module in self.settings.apps:
            importlib.import_module(module)
        self.app.loader.import_default_modules()
        self.app.finalize(auto=True)
        def arrived(arrival: Arrival) -> None:  # on the consumer thread
            loop.call_soon_threadsafe(self._arrived, arrival)

        consumer = self._consumer = QueueConsumer(self.app, self.settings, self.prefetch, arrived)
        consumer.start()
        await loop.run_in_executor(None, consumer.ready.wait, _CONSUMER_READY_TIMEOUT)
        if consumer.error is not None or not consumer.ready.is_set():
            consumer.stop()
            why = consumer.error or f"broker not reachable in {_CONSUMER_READY_TIMEOUT:g}s"
            raise BridgeError(f"cannot consume {', '.join(self.settings.queues)}: {why}")
        logger.info("coda.bridge.takeover.consuming", extra={"queues": ",".join(self.settings.queues), "prefetch": self.prefetch})

    def drain(self) -> None:
        """Stop taking messages; those not started stay unacked and go back at stop()."""
        self._draining = True
        if self._consumer is not None:
            self._consumer.post(StopConsuming())

    async def stop(self) -> None:
        if self._consumer is not None and self._loop is not None:
            self._consumer.stop()
            await self._loop.run_in_executor(None, self._consumer.join, 10.0)

    # -- answers from the dispatcher ----------------------------------------------------------------

    def handle(self, msg: object) -> None:
        match msg:
            case Welcome():
                pass
            case SpawnSucceeded(request_id=tag) | RunStarted(request_id=tag):
                if self._inflight.pop(tag, None) is not None:
                    self._post_settle(tag, _ACK)
            case SpawnFailed(request_id=tag, error=error):
                arrival = self._inflight.pop(tag, None)
                if isinstance(arrival, TaskMessage):  # a start is refused by ErrorReply instead
                    self._failed(arrival, error)
            case ErrorReply(request_id=tag, error=error):
                arrival = self._inflight.pop(tag, None)
                if arrival is None:
                    logger.error("coda.bridge.takeover.refused", extra={"reason": error.message})
                    return
                logger.error("coda.bridge.takeover.start_refused", extra={
                    "queue": arrival.queue, "msg_id": arrival.msg_id, "reason": error.message})
                self._post_settle(tag, Settle.REQUEUE if error.kind == ErrorKind.SHUTTING_DOWN else Settle.REJECT)
            case _:
                logger.warning("coda.bridge.takeover.unexpected_message", extra={"type": type(msg).__name__})

    def _failed(self, arrival: TaskMessage, error: ErrorInfo) -> None:
        assert self._consumer is not None
        if error.kind == ErrorKind.TIMEOUT:
            self._consumer.post(TimedOut(arrival.tag))
        elif error.kind == ErrorKind.UNKNOWN_NAME:
            logger.error("coda.bridge.takeover.unknown_task", extra={
                "queue": arrival.queue, "msg_id": arrival.msg_id, "task": arrival.task,
                "reason": f"{error.message}; rejected back to the broker"})
            self._post_settle(arrival.tag, Settle.REQUEUE_LATER)
        elif error.kind == ErrorKind.WORKER_LOST:
            self._consumer.post(Lost(arrival.tag, error.message))
        else:
            # The task's own failures are Celery's business (stored by its tracer); this is
            # the harness failing, so say so and drop the message (dead-letter where set up).
            logger.error("coda.bridge.takeover.execution_failed", extra={
                "queue": arrival.queue, "msg_id": arrival.msg_id, "task": arrival.task,
                "reason": f"{error.exc_type}: {error.message}"})
            self._post_settle(arrival.tag, Settle.REJECT)

    def _post_settle(self, tag: int, how: Settle) -> None:
        assert self._consumer is not None
        self._consumer.post(Settled(tag, how))

    # -- messages from the consumer thread ----------------------------------------------------------

    def _arrived(self, arrival: Arrival) -> None:
        match arrival:
            case StartMessage():
                self._inflight[arrival.tag] = arrival
                self.deliver(StartRun(arrival.tag, arrival.workflow, arrival.args, arrival.run_id))
            case TaskMessage(eta=datetime() as eta):
                wait = (eta - datetime.now(eta.tzinfo or timezone.utc)).total_seconds()
                if wait > 0:
                    # Held here, not by the broker: the prefetch grows so that held messages do
                    # not starve the queue (as Celery does).
                    self._hold(+1)
                    assert self._loop is not None
                    self._loop.call_later(wait, self._eta_due, arrival)
                else:
                    self._limit(arrival)
            case TaskMessage():
                self._limit(arrival)

    def _hold(self, change: int) -> None:
        assert self._consumer is not None
        self._held += change
        self._consumer.post(Holding(self._held))

    def _eta_due(self, arrival: TaskMessage) -> None:
        self._hold(-1)
        self._limit(arrival)

    def _limit(self, arrival: TaskMessage) -> None:
        if self._draining:
            return  # left unacked: it goes back to the broker when the connection closes
        if arrival.rate is None:
            self._submit(arrival)
            return
        entry = self._limited.get(arrival.task)
        if entry is None:
            entry = self._limited[arrival.task] = (_TokenBucket(arrival.rate, capacity=1), collections.deque())
        entry[1].append(arrival)
        if len(entry[1]) == 1:
            self._release(arrival.task)

    def _release(self, name: str) -> None:
        bucket, waiting = self._limited[name]
        while waiting:
            if not bucket.can_consume(1):
                assert self._loop is not None
                self._loop.call_later(bucket.expected_time(1), self._release, name)
                return
            self._submit(waiting.popleft())

    def _submit(self, arrival: TaskMessage) -> None:
        self._inflight[arrival.tag] = arrival
        self.deliver(SubmitTask(arrival.tag, TASK_NAME, arrival.payload, arrival.time_limit))
