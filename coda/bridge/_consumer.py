"""The consumer thread of the queue takeover: the only code that touches the kombu connection.

kombu is blocking and its channels are not thread-safe, so one thread owns the connection. It
consumes the queues with a bounded prefetch (the window grows by the messages the loop holds
for their eta, as Celery's does), reconnects with backoff, parses each message once — a Celery
``Request``, as ``celery worker`` builds on receipt: accept list, serializer, protocol-2 shape,
eta, expiry, time limits — and hands the event loop an :data:`~coda.bridge._handoff.Arrival`,
plain data. The loop answers with :data:`~coda.bridge._handoff.Command` records; only this
thread acts on them (ack, reject, requeue, Celery's own failure records).

A message whose connection was lost meanwhile is not settled: the broker has it back already.
"""

from __future__ import annotations

import collections
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kombu import messaging

from coda.bridge._handoff import (
    Arrival,
    Command,
    Holding,
    Lost,
    Settle,
    Settled,
    StartMessage,
    StopConsuming,
    TaskMessage,
    TimedOut,
)
from coda.bridge._redis_acks import Acks
from coda.bridge._settings import HOSTNAME, START_WORKFLOW, BridgeSettings

__all__ = ["QueueConsumer"]

logger = logging.getLogger(__name__)

# kombu ships no annotations for it.
_KombuConsumer: Any = messaging.Consumer
# Enum members cost ~200 ns a lookup on Python 3.11; these are read for every message.
_ACK, _REQUEUE, _REQUEUE_LATER = Settle.ACK, Settle.REQUEUE, Settle.REQUEUE_LATER

# An unknown task name goes back to the broker after this pause, so a supervisor that cannot
# run it does not spin on it while a Celery worker that can is busy.
_UNKNOWN_REQUEUE_DELAY = 1.0
_IDLE_POLL = 0.5
_BUSY_POLL = 0.002
# On Redis an ack is a round trip of its own; acks wait up to this long (or for half the
# prefetch window) to share one. A late ack only delays the broker's bookkeeping: the task's
# result is already stored.
_ACK_DELAY = 0.010


def _data(value: Any) -> Any:
    """Header values as plain data (AMQP tables may hold types the Coda wire does not carry)."""
    if isinstance(value, dict):
        return {str(k): _data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_data(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool, bytes)):
        return value
    return str(value)


@dataclass(eq=False, slots=True)
class _Held:
    """A message between its receipt and its settling, as only this thread sees it."""

    message: Any
    request: Any  # celery.worker.request.Request (None for a workflow start)
    time_limit: float | None


class QueueConsumer:
    """Consumes ``settings.queues`` of ``app`` on a thread of its own; every parsed message goes
    to ``on_arrival`` (called on that thread); :meth:`post` sends it commands from any thread."""

    def __init__(self, app: Any, settings: BridgeSettings, prefetch: int, on_arrival: Callable[[Arrival], None]) -> None:
        self.app = app
        self.settings = settings
        self.prefetch = prefetch
        self.on_arrival = on_arrival
        self.accept = app.conf.accept_content
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._commands: collections.deque[Command] = collections.deque()
        self._wake = threading.Event()  # set with each command, so a waiting consumer runs it now
        self._thread: threading.Thread | None = None
        self._tags = itertools.count(1)
        # Consumer thread only, from here on.
        self._held: dict[int, _Held] = {}
        self._eta_held = 0
        self._later: list[tuple[float, Any]] = []  # (when, message) to requeue after a pause
        self._unsettled = 0  # received, not yet acked or rejected
        self._unacked_tags: set[Any] = set()  # delivery tags of those
        self._acks: list[Any] = []  # messages whose ack waits for a batch
        self._acks_since = 0.0
        self._idle = False  # the last drain_events found nothing
        self._draining = False
        self._channel: Any = None
        self._broker_acks: Acks | None = None
        self._consumer: Any = None

    # -- from the loop ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="coda-celery-consumer", daemon=True)
        self._thread.start()

    def post(self, command: Command) -> None:
        """Have the consumer thread carry out ``command`` (thread-safe)."""
        self._commands.append(command)
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        app = self.app
        broker = self.settings.broker
        connection = app.connection_for_read(broker) if broker else app.connection_for_read()
        errors = connection.connection_errors + connection.channel_errors
        delay = 0.5
        try:
            while not self._stop.is_set():
                try:
                    connection.ensure_connection(max_retries=1)
                    self._connected(connection.channel())
                    self.ready.set()
                    delay = 0.5
                    self._serve(connection)
                except errors as exc:
                    if self._stop.is_set():
                        break
                    logger.warning("coda.bridge.takeover.reconnect", extra={"reason": str(exc), "retry_in": delay})
                    self._stop.wait(delay)
                    delay = min(delay * 2, 5.0)
                    connection = connection.clone()
        except BaseException as exc:  # noqa: BLE001 - reported to the loop side, or logged
            self.error = exc
            logger.exception("coda.bridge.takeover.consumer_died")
        finally:
            try:
                self._run_commands()
                self._flush_acks()
            except Exception:  # noqa: BLE001 - the broker is gone: it has the messages back
                logger.warning("coda.bridge.takeover.final_acks_lost", exc_info=True)
            # Closing gives every unacked message back to the broker (Redis restores them now).
            try:
                connection.release()
            except Exception:  # noqa: BLE001, S110 - the broker is gone already
                pass

    def _connected(self, channel: Any) -> None:
        self._channel = channel
        self._unsettled = 0
        self._unacked_tags.clear()
        self._later.clear()
        self._acks.clear()
        self._broker_acks = Acks(channel)
        queues = [self.app.amqp.queues[name] for name in self.settings.queues]
        self._consumer = _KombuConsumer(channel, queues=queues, on_message=self._received, accept=self.accept,
                                        prefetch_count=self.prefetch + self._eta_held)
        if not self._draining:
            self._consumer.consume()

    def _serve(self, connection: Any) -> None:
        assert self._broker_acks is not None
        batched = self._broker_acks.batched
        while not self._stop.is_set():
            self._wake.clear()
            self._run_commands()
            if self._acks and (
                not batched or self._idle or self._draining
                or len(self._acks) >= self.prefetch // 2
                or time.monotonic() - self._acks_since >= _ACK_DELAY
            ):
                self._flush_acks()
            self._broker_acks.keep_invisible(self._unacked_tags)
            if self._unsettled >= self.prefetch + self._eta_held and not self._draining:
                # The prefetch window is full: the broker has nothing to give until an ack, and
                # blocking in drain_events would hold back the acks the loop is posting.
                if self._wake.wait(_BUSY_POLL if self._later or self._acks else _IDLE_POLL):
                    continue
            busy = self._unsettled > self._eta_held or self._commands
            self._idle = False
            try:
                connection.drain_events(timeout=_BUSY_POLL if busy else _IDLE_POLL)
            except socket.timeout:
                self._idle = True
            except connection.connection_errors + connection.channel_errors:
                raise
            except Exception as exc:  # noqa: BLE001 - the transport could not even make a message of it
                logger.error("coda.bridge.takeover.bad_envelope", extra={
                    "queues": ",".join(self.settings.queues), "reason": f"{type(exc).__name__}: {exc}"})

    def _run_commands(self) -> None:
        commands = self._commands
        while commands:
            command = commands.popleft()
            match command:
                case Settled(tag=tag, how=how):
                    self._settle(tag, how)
                case TimedOut(tag=tag):
                    self._record_failure(tag, self._timed_out)
                    self._settle(tag, _ACK)
                case Lost(tag=tag, message=message):
                    self._record_failure(tag, lambda held: self._lost(held, message))
                    self._settle(tag, _ACK)
                case Holding(count=count):
                    self._eta_held = count
                    if self._consumer is not None:
                        self._consumer.qos(prefetch_count=self.prefetch + count)
                case StopConsuming():
                    self._draining = True
                    if self._consumer is not None:
                        self._consumer.cancel()
        if self._later:
            now = time.monotonic()
            due = [entry for entry in self._later if entry[0] <= now]
            if due:
                self._later = [entry for entry in self._later if entry[0] > now]
                for _, message in due:
                    self._reject(message, True)

    def _record_failure(self, tag: int, record: Callable[[_Held], None]) -> None:
        held = self._held.get(tag)
        if held is None or held.request is None:
            return
        try:
            record(held)
        except Exception:  # noqa: BLE001 - the result backend may be down; the ack goes on
            logger.warning("coda.bridge.takeover.failure_not_recorded", extra={"tag": tag}, exc_info=True)

    @staticmethod
    def _timed_out(held: _Held) -> None:
        held.request.on_timeout(False, held.time_limit)

    @staticmethod
    def _lost(held: _Held, message: str) -> None:
        from celery.exceptions import WorkerLostError

        request = held.request
        request.task.backend.mark_as_failure(request.id, WorkerLostError(message), request=request._context)

    def _settle(self, tag: int, how: Settle) -> None:
        held = self._held.pop(tag, None)
        if held is None:
            return
        message = held.message
        if message.channel is not self._channel:
            return  # from a connection since lost: the broker has it back already
        if how is _ACK:
            if not self._acks:
                self._acks_since = time.monotonic()
            self._acks.append(message)
        elif how is _REQUEUE_LATER:
            self._unacked_tags.discard(message.delivery_tag)
            self._later.append((time.monotonic() + _UNKNOWN_REQUEUE_DELAY, message))
        else:
            self._reject(message, how is _REQUEUE)

    def _reject(self, message: Any, requeue: bool) -> None:
        if message.channel is self._channel:
            self._unacked_tags.discard(message.delivery_tag)
            message.reject(requeue=requeue)
            self._unsettled -= 1

    def _flush_acks(self) -> None:
        acks, self._acks = self._acks, []
        live = [m for m in acks if m.channel is self._channel]  # others went back with their connection
        for message in live:
            self._unacked_tags.discard(message.delivery_tag)
        self._unsettled -= len(live)
        if live and self._broker_acks is not None:
            self._broker_acks.ack(live)

    # -- receipt ------------------------------------------------------------------------------------

    def _received(self, message: Any) -> None:
        self._unsettled += 1
        self._unacked_tags.add(message.delivery_tag)
        info = message.delivery_info or {}
        queue = str(info.get("routing_key") or info.get("exchange") or "?")
        headers = message.headers or {}
        msg_id = str(headers.get("id") or message.properties.get("correlation_id") or message.delivery_tag)
        name = headers.get("task")
        if not isinstance(name, str) or not headers.get("id"):
            self._bad(message, queue, msg_id, "not a Celery protocol-2 message (no task and id headers)")
            return
        tag = next(self._tags)
        arrival: Arrival
        if name == START_WORKFLOW:
            try:
                _, kwargs, _ = message.decode()
                arrival = StartMessage(tag, queue, msg_id, str(kwargs["workflow"]), dict(kwargs["args"]), kwargs.get("run_id"))
            except Exception as exc:  # noqa: BLE001 - any bad payload is rejected, named
                self._bad(message, queue, msg_id, f"bad workflow start request: {type(exc).__name__}: {exc}")
                return
            self._held[tag] = _Held(message, None, None)
        else:
            task = self.app.tasks.get(name)
            if task is None:
                logger.error("coda.bridge.takeover.unknown_task", extra={
                    "queue": queue, "msg_id": msg_id, "task": name, "reason": "not registered; rejected back to the broker"})
                self._unacked_tags.discard(message.delivery_tag)
                self._later.append((time.monotonic() + _UNKNOWN_REQUEUE_DELAY, message))
                return
            try:
                arrival, request = self._parse(tag, message, queue, msg_id, name, task, headers, info)
            except Exception as exc:  # noqa: BLE001 - any bad message is rejected, named
                self._bad(message, queue, msg_id, f"{type(exc).__name__}: {exc}")
                return
            self._held[tag] = _Held(message, request, arrival.time_limit)
        self.on_arrival(arrival)

    def _parse(self, tag: int, message: Any, queue: str, msg_id: str, name: str, task: Any,
               headers: dict[str, Any], info: dict[str, Any]) -> tuple[TaskMessage, Any]:
        from celery.utils.time import rate
        from celery.worker.request import Request

        # Decodes the body (accept list, serializer, protocol-2 shape) and parses
        # eta/expires/timelimit, as `celery worker` does on receipt.
        request = Request(message, app=self.app, task=task, hostname=HOSTNAME)
        body = message.body
        payload = {
            "headers": _data(headers),
            "properties": _data({k: message.properties.get(k) for k in ("correlation_id", "reply_to", "priority")}),
            "delivery_info": _data({k: info.get(k) for k in ("exchange", "routing_key", "redelivered")}),
            "body": body.encode() if isinstance(body, str) else bytes(body),
            "content_type": message.content_type,
            "content_encoding": message.content_encoding,
        }
        limit = task.rate_limit
        time_limit = request.time_limits[0] or task.time_limit or self.app.conf.task_time_limit
        parsed = TaskMessage(tag, queue, msg_id, name, request.eta, float(rate(limit)) if limit else None,
                             time_limit, payload)
        return parsed, request

    def _bad(self, message: Any, queue: str, msg_id: str, why: str) -> None:
        logger.error("coda.bridge.takeover.bad_message", extra={"queue": queue, "msg_id": msg_id, "reason": f"rejected: {why}"})
        self._unacked_tags.discard(message.delivery_tag)
        message.reject(requeue=False)
        self._unsettled -= 1
