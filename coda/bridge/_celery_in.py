"""Celery → Coda: ``coda supervisor --celery-app proj.celery:app -Q queue`` takes over queues.

A :class:`Takeover` lives in the supervisor process as an in-process client of the dispatcher.
A dedicated thread owns the kombu connection (kombu is blocking and its channels are not
thread-safe): it consumes the queues with a bounded prefetch, checks each message, and hands it
to the event loop with ``call_soon_threadsafe``. The loop holds ``eta``/``countdown`` messages
on timers, applies ``rate_limit`` and submits each message as one execution of the worker-side
task :data:`TASK_NAME` (see :mod:`coda.bridge._execute`); the dispatcher places it on a worker,
enforces the hard time limit by killing and replacing that worker, and answers. Only then is the
message acknowledged (late ack, always): a supervisor that dies leaves its messages unacked, and
the broker hands them out again. On Redis, acks wait a few milliseconds to share a round trip.

Workers publish results and follow-up messages themselves (Celery's tracer does so from the
process that runs the task); the supervisor never relays them, so it needs no model of result
backends, chords or canvas.

A message for :data:`START_WORKFLOW` (published by :func:`coda.bridge.workflow_entry`) starts a
workflow run instead; it is acknowledged once the run is recorded.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import itertools
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kombu import messaging
from kombu.transport import virtual
from kombu.utils import limits

from coda import protocol as p
from coda.errors import BridgeError
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.dispatch import SubmitTask

__all__ = ["EXECUTE_MODULE", "START_WORKFLOW", "TASK_NAME", "Takeover"]

logger = logging.getLogger(__name__)

TASK_NAME = "coda.bridge.celery_message"
EXECUTE_MODULE = "coda.bridge._execute"  # the -A module that registers TASK_NAME in workers
START_WORKFLOW = "coda.bridge.start_workflow"
HOSTNAME = f"coda@{socket.gethostname()}"

# Celery's default: prefetch = 4 x the processes that run tasks.
_PREFETCH_MULTIPLIER = 4
# An unknown task name goes back to the broker after this pause, so a supervisor that cannot
# run it does not spin on it while a Celery worker that can is busy.
_UNKNOWN_REQUEUE_DELAY = 1.0
_IDLE_POLL = 0.5
_BUSY_POLL = 0.002
# On Redis an ack is a round trip of its own; acks wait up to this long (or for half the
# prefetch window) to share one. A late ack only delays the broker's bookkeeping: the task's
# result is already stored.
_ACK_DELAY = 0.010

# kombu ships no annotations for these.
Consumer: Any = messaging.Consumer
TokenBucket: Any = limits.TokenBucket
VirtualQoS: Any = virtual.QoS


@dataclass(eq=False)
class _Delivery:
    """One message between its arrival and its ack/reject."""

    tag: int
    message: Any
    queue: str
    msg_id: str
    name: str
    request: Any = None  # celery.worker.request.Request, built in the consumer thread
    args: Any = None
    timeout: float | None = None


def _reuse_redis_client(channel: Any) -> bool:
    """On kombu's Redis channel, build the redis-py client for QoS appends and acks once.

    kombu makes a new client (and its response-callback table, ~60 µs) for every one of them,
    twice per message; one client on the same connection pool is what redis-py intends. Returns
    whether the channel is a Redis one, whose acks can then be batched.
    """
    create = getattr(channel, "_create_client", None)
    qos = getattr(channel, "qos", None)
    if create is None or not hasattr(qos, "_remove_from_indices") or not hasattr(qos, "pipe_or_acquire"):
        return False
    client = create()

    def create_client(asynchronous: bool = False) -> Any:
        return create(asynchronous=True) if asynchronous else client

    channel._create_client = create_client
    return True


def _data(value: Any) -> Any:
    """Header values as plain data (AMQP tables may hold types the Coda wire does not carry)."""
    if isinstance(value, dict):
        return {str(k): _data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_data(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool, bytes)):
        return value
    return str(value)


class Takeover:
    """Consumes Celery queues for one supervisor; ``deliver`` hands a message to its dispatcher
    (as this peer), and the server routes the dispatcher's answers to :meth:`handle`."""

    def __init__(self, config: SupervisorConfig, deliver: Callable[[Any], None]) -> None:
        from coda.bridge._celery_out import load_celery_app

        if not config.celery_app:
            raise BridgeError("-Q needs --celery-app (the Celery app whose queues to take over)")
        self.config = config
        self.deliver = deliver
        self.app = load_celery_app(config.celery_app)
        self.prefetch = config.workers * config.concurrency * _PREFETCH_MULTIPLIER
        self.accept = self.app.conf.accept_content
        self._commands: collections.deque[Callable[[], None]] = collections.deque()
        self._wake = threading.Event()  # set with each command, so a waiting consumer runs it now
        self._later: list[tuple[float, Callable[[], None]]] = []  # consumer thread only
        self._inflight: dict[int, _Delivery] = {}
        self._tags = itertools.count(1)
        self._held = 0  # messages waiting for their eta
        self._limited: dict[str, tuple[Any, collections.deque[_Delivery]]] = {}
        self._unsettled = 0  # consumer thread: received, not yet acked or rejected
        self._unacked_tags: set[Any] = set()  # consumer thread: delivery tags of those
        self._acks: list[Any] = []  # consumer thread: messages whose ack waits for a batch
        self._acks_since = 0.0
        self._batch_acks = False  # Redis: acks share round trips
        self._idle = False  # the last drain_events found nothing
        self._next_refresh = 0.0
        self._stop = threading.Event()
        self._draining = False
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer: Any = None
        self._channel: Any = None

    # -- lifecycle (event loop) -------------------------------------------------------------------

    async def start(self) -> None:
        """Register with the dispatcher, import the task modules, then start consuming."""
        self._loop = asyncio.get_running_loop()
        self.deliver(p.ClientHello(p.PROTOCOL_VERSION, self.config.token))
        # Like `celery worker`'s main process, know every task, so that an unknown name is
        # rejected here and time/rate limits are read off the task.
        for module in self.config.apps:
            if module != EXECUTE_MODULE:
                importlib.import_module(module)
        self.app.loader.import_default_modules()
        self.app.finalize(auto=True)
        self._thread = threading.Thread(target=self._consume, name="coda-celery-consumer", daemon=True)
        self._thread.start()
        await self._loop.run_in_executor(None, self._ready.wait, 30.0)
        if self._error is not None or not self._ready.is_set():
            self._stop.set()
            raise BridgeError(f"cannot consume {', '.join(self.config.queues)}: {self._error or 'broker not reachable in 30s'}")
        logger.info("coda.bridge.takeover.consuming: queues %s, prefetch %s", ",".join(self.config.queues), self.prefetch)

    def drain(self) -> None:
        """Stop taking messages; those not started stay unacked and go back at stop()."""
        self._draining = True
        self._post(self._cancel_consumer)

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._loop is not None:
            await self._loop.run_in_executor(None, self._thread.join, 10.0)

    def _post(self, command: Callable[[], None]) -> None:
        """Run ``command`` on the consumer thread (the only one that may touch the channel)."""
        self._commands.append(command)
        self._wake.set()

    # -- answers from the dispatcher (event loop) ------------------------------------------------

    def handle(self, msg: Any) -> None:
        kind = type(msg)
        if kind is p.Welcome:
            return
        request_id = getattr(msg, "request_id", None)
        delivery = self._inflight.pop(request_id, None) if request_id is not None else None
        if delivery is None:
            if kind is p.ErrorReply:
                logger.error("coda.bridge.takeover.refused: %s", msg.error.message)
            return
        if kind is p.SpawnSucceeded or kind is p.RunStarted:
            self._settle(delivery, "ack")
        elif kind is p.SpawnFailed:
            self._failed(delivery, msg.error)
        elif kind is p.ErrorReply:
            requeue = msg.error.kind == "shutting_down"
            logger.error(
                "coda.bridge.takeover.start_refused: queue %s message %s: %s",
                delivery.queue, delivery.msg_id, msg.error.message,
            )
            self._settle(delivery, "requeue" if requeue else "reject")

    def _failed(self, delivery: _Delivery, error: p.ErrorInfo) -> None:
        request = delivery.request
        if error.kind == "timeout":
            # Celery's own hard-time-limit path: FAILURE(TimeLimitExceeded), errbacks, signal.
            self._post(lambda: request.on_timeout(False, delivery.timeout))
            self._settle(delivery, "ack")
        elif error.kind == "unknown_name" or error.exc_type == "coda.errors.UnknownName":
            logger.error(
                "coda.bridge.takeover.unknown_task: queue %s message %s: task %r: %s; rejected back to the broker",
                delivery.queue, delivery.msg_id, delivery.name, error.message,
            )
            self._settle(delivery, "requeue_later")
        elif error.kind == "worker_lost":
            from celery.exceptions import WorkerLostError

            exc = WorkerLostError(error.message)
            self._post(lambda: request.task.backend.mark_as_failure(request.id, exc, request=request._context))
            self._settle(delivery, "ack")
        else:
            # The task's own failures are Celery's business (stored by its tracer); this is
            # the harness failing, so say so and drop the message (dead-letter where set up).
            logger.error(
                "coda.bridge.takeover.execution_failed: queue %s message %s task %r: %s: %s",
                delivery.queue, delivery.msg_id, delivery.name, error.exc_type, error.message,
            )
            self._settle(delivery, "reject")

    # -- messages from the consumer thread (event loop) -------------------------------------------

    def _arrived(self, delivery: _Delivery) -> None:
        if delivery.name == START_WORKFLOW:
            self._inflight[delivery.tag] = delivery
            workflow, args, run_id = delivery.args
            self.deliver(p.StartRun(delivery.tag, workflow, args, run_id))
            return
        eta = delivery.request.eta
        if eta is not None:
            wait = (eta - datetime.now(eta.tzinfo or timezone.utc)).total_seconds()
            if wait > 0:
                # Held here, not by the broker: the prefetch grows so that held messages do
                # not starve the queue (as Celery does).
                self._held += 1
                self._post(self._update_qos)
                assert self._loop is not None
                self._loop.call_later(wait, self._eta_due, delivery)
                return
        self._limit(delivery)

    def _eta_due(self, delivery: _Delivery) -> None:
        self._held -= 1
        self._post(self._update_qos)
        self._limit(delivery)

    def _limit(self, delivery: _Delivery) -> None:
        if self._draining:
            return  # left unacked: it goes back to the broker when the connection closes
        limit = delivery.request.task.rate_limit
        if not limit:
            self._submit(delivery)
            return
        from celery.utils.time import rate

        entry = self._limited.get(delivery.name)
        if entry is None:
            entry = self._limited[delivery.name] = (TokenBucket(rate(limit), capacity=1), collections.deque())
        entry[1].append(delivery)
        if len(entry[1]) == 1:
            self._release(delivery.name)

    def _release(self, name: str) -> None:
        bucket, waiting = self._limited[name]
        while waiting:
            if not bucket.can_consume(1):
                assert self._loop is not None
                self._loop.call_later(bucket.expected_time(1), self._release, name)
                return
            self._submit(waiting.popleft())

    def _submit(self, delivery: _Delivery) -> None:
        self._inflight[delivery.tag] = delivery
        self.deliver(SubmitTask(delivery.tag, TASK_NAME, delivery.args, delivery.timeout))

    def _settle(self, delivery: _Delivery, how: str) -> None:
        message = delivery.message

        def settle() -> None:
            if message.channel is not self._channel:
                return  # from a connection since lost: the broker has it back already
            if how == "ack":
                if not self._acks:
                    self._acks_since = time.monotonic()
                self._acks.append(message)
                return
            self._unacked_tags.discard(message.delivery_tag)
            if how == "requeue_later":
                self._later.append((time.monotonic() + _UNKNOWN_REQUEUE_DELAY, lambda: self._reject(message, True)))
                return
            else:
                message.reject(requeue=how == "requeue")
            self._unsettled -= 1

        self._post(settle)

    # -- the consumer thread ----------------------------------------------------------------------

    def _reject(self, message: Any, requeue: bool) -> None:
        if message.channel is self._channel:
            self._unacked_tags.discard(message.delivery_tag)
            message.reject(requeue=requeue)
            self._unsettled -= 1

    def _queues(self) -> list[Any]:
        return [self.app.amqp.queues[name] for name in self.config.queues]

    def _consume(self) -> None:
        app = self.app
        connection = app.connection_for_read(self.config.broker) if self.config.broker else app.connection_for_read()
        errors = connection.connection_errors + connection.channel_errors
        delay = 0.5
        try:
            while not self._stop.is_set():
                try:
                    connection.ensure_connection(max_retries=1)
                    self._channel = connection.channel()
                    self._unsettled = 0
                    self._unacked_tags.clear()
                    self._later.clear()
                    self._acks.clear()
                    self._batch_acks = _reuse_redis_client(self._channel)
                    self._consumer = Consumer(
                        self._channel, queues=self._queues(), on_message=self._received,
                        accept=self.accept, prefetch_count=self.prefetch + self._held,
                    )
                    if not self._draining:
                        self._consumer.consume()
                    self._ready.set()
                    delay = 0.5
                    self._serve(connection)
                except errors as exc:
                    if self._stop.is_set():
                        break
                    logger.warning("coda.bridge.takeover.reconnect: %s (retrying in %.1fs)", exc, delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2, 5.0)
                    connection = connection.clone()
        except BaseException as exc:  # noqa: BLE001 - reported to start(), or logged
            self._error = exc
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

    def _serve(self, connection: Any) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            self._run_commands()
            if self._acks and (
                not self._batch_acks or self._idle or self._draining
                or len(self._acks) >= self.prefetch // 2
                or time.monotonic() - self._acks_since >= _ACK_DELAY
            ):
                self._flush_acks()
            self._keep_invisible()
            if self._unsettled >= self.prefetch + self._held and not self._draining:
                # The prefetch window is full: the broker has nothing to give until an ack, and
                # blocking in drain_events would hold back the acks the loop is posting.
                if self._wake.wait(_BUSY_POLL if self._later or self._acks else _IDLE_POLL):
                    continue
            busy = self._unsettled > self._held or self._commands
            self._idle = False
            try:
                connection.drain_events(timeout=_BUSY_POLL if busy else _IDLE_POLL)
            except socket.timeout:
                self._idle = True
            except connection.connection_errors + connection.channel_errors:
                raise
            except Exception as exc:  # noqa: BLE001 - the transport could not even make a message of it
                logger.error("coda.bridge.takeover.bad_envelope: queues %s: %s: %s",
                             ",".join(self.config.queues), type(exc).__name__, exc)

    def _flush_acks(self) -> None:
        acks, self._acks = self._acks, []
        live = [m for m in acks if m.channel is self._channel]  # others went back with their connection
        for message in live:
            self._unacked_tags.discard(message.delivery_tag)
        self._unsettled -= len(live)
        if len(live) > 1 and self._batch_acks:
            # kombu acks one message per round trip; this is its Redis ack for many at once.
            qos = self._channel.qos
            with qos.pipe_or_acquire() as pipe:
                for message in live:
                    qos._remove_from_indices(message.delivery_tag, pipe)
                pipe.execute()
            for message in live:
                VirtualQoS.ack(qos, message.delivery_tag)
                message._state = "ACK"
        else:
            for message in live:
                message.ack()

    def _keep_invisible(self) -> None:
        """On Redis, an unacked message older than ``visibility_timeout`` is handed out again
        (celery#2599: a long eta runs twice). While this supervisor lives it re-stamps what it
        holds, so only the messages of a dead supervisor come back."""
        now = time.monotonic()
        if now < self._next_refresh:
            return
        channel = self._channel
        timeout = getattr(channel, "visibility_timeout", None)
        if timeout is None or not hasattr(channel, "unacked_index_key"):
            self._next_refresh = float("inf")  # not Redis: the broker tracks the consumer itself
            return
        self._next_refresh = now + max(float(timeout) / 3, 0.2)
        if self._unacked_tags:
            stamp = time.time()
            # A pooled connection: channel.client may be waiting on BRPOP.
            with channel.conn_or_acquire() as client:
                client.zadd(channel.unacked_index_key, {tag: stamp for tag in self._unacked_tags}, xx=True)

    def _run_commands(self) -> None:
        commands = self._commands
        while commands:
            commands.popleft()()
        if self._later:
            now = time.monotonic()
            due = [entry for entry in self._later if entry[0] <= now]
            if due:
                self._later = [entry for entry in self._later if entry[0] > now]
                for _, action in due:
                    action()

    def _cancel_consumer(self) -> None:
        if self._consumer is not None:
            self._consumer.cancel()

    def _update_qos(self) -> None:
        if self._consumer is not None:
            self._consumer.qos(prefetch_count=self.prefetch + self._held)

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
        delivery = _Delivery(next(self._tags), message, queue, msg_id, name)
        if name == START_WORKFLOW:
            try:
                _, kwargs, _ = message.decode()
                delivery.args = (str(kwargs["workflow"]), dict(kwargs["args"]), kwargs.get("run_id"))
            except Exception as exc:  # noqa: BLE001 - any bad payload is rejected, named
                self._bad(message, queue, msg_id, f"bad workflow start request: {type(exc).__name__}: {exc}")
                return
        else:
            task = self.app.tasks.get(name)
            if task is None:
                logger.error(
                    "coda.bridge.takeover.unknown_task: queue %s message %s: no task %r is registered; "
                    "rejected back to the broker", queue, msg_id, name,
                )
                self._later.append((time.monotonic() + _UNKNOWN_REQUEUE_DELAY, lambda: self._reject(message, True)))
                return
            from celery.worker.request import Request

            try:
                # Decodes the body (accept list, serializer, protocol-2 shape) and parses
                # eta/expires/timelimit, as `celery worker` does on receipt.
                request = Request(message, app=self.app, task=task, hostname=HOSTNAME)
            except Exception as exc:  # noqa: BLE001
                self._bad(message, queue, msg_id, f"{type(exc).__name__}: {exc}")
                return
            body = message.body
            delivery.request = request
            delivery.timeout = request.time_limits[0] or task.time_limit or self.app.conf.task_time_limit
            delivery.args = {
                "headers": _data(headers),
                "properties": _data({k: message.properties.get(k) for k in ("correlation_id", "reply_to", "priority")}),
                "delivery_info": _data({k: info.get(k) for k in ("exchange", "routing_key", "redelivered")}),
                "body": body.encode() if isinstance(body, str) else bytes(body),
                "content_type": message.content_type,
                "content_encoding": message.content_encoding,
            }
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._arrived, delivery)

    def _bad(self, message: Any, queue: str, msg_id: str, why: str) -> None:
        logger.error("coda.bridge.takeover.bad_message: queue %s message %s rejected: %s", queue, msg_id, why)
        self._unacked_tags.discard(message.delivery_tag)
        message.reject(requeue=False)
        self._unsettled -= 1
