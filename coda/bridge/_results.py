"""Results coming back from Celery, without polling: each listener blocks on its socket in a
thread of its own and hands every result (a Celery meta dict) to a callback.

- :class:`RedisResults`: a Redis result backend publishes each stored result on a channel named
  like its key; one pattern subscription covers every task id the bridge made.
- :class:`ReplyQueue`: an ``rpc://`` backend, or the worker-side hook when there is no backend,
  publishes results to the bridge's own reply queue (kombu's consumer loop reconnects).

:func:`outcome` turns a meta dict into what the dispatcher needs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kombu import entity, messaging
from kombu.mixins import ConsumerMixin

from coda.errors import ErrorInfo, ErrorKind, UnknownName, type_name

__all__ = ["ID_PREFIX", "Outcome", "RedisResults", "ReplyQueue", "outcome"]

logger = logging.getLogger(__name__)

ID_PREFIX = "coda-"

OnMeta = Callable[[dict[str, Any]], None]

# kombu ships no annotations for these.
Consumer: Any = messaging.Consumer
Exchange: Any = entity.Exchange
Queue: Any = entity.Queue


@dataclass(frozen=True, slots=True)
class Outcome:
    """``state`` is started, retry, success or failure; ``value`` the result or an ErrorInfo."""

    state: str
    value: Any


def _exc_fields(exc: Any) -> tuple[str, str, str]:
    """(module, type, message) of a remote exception, as JSON meta or as an unpickled instance."""
    if isinstance(exc, dict):
        module = str(exc.get("exc_module") or "builtins")
        raw = exc.get("exc_message")
        if isinstance(raw, (list, tuple)):
            message = str(raw[0]) if len(raw) == 1 else ", ".join(map(str, raw))
        else:
            message = "" if raw is None else str(raw)
        return module, str(exc.get("exc_type") or "Exception"), message
    if isinstance(exc, BaseException):
        return type(exc).__module__, type(exc).__qualname__, str(exc)
    return "builtins", "Exception", repr(exc)


def outcome(meta: dict[str, Any], task: str, queue: str) -> Outcome | None:
    """What a Celery result meta dict means for the bridge; None for states it ignores."""
    status = meta.get("status")
    if status == "SUCCESS":
        return Outcome("success", meta.get("result"))
    if status == "STARTED":
        return Outcome("started", None)
    if status == "RETRY":  # Celery will run it again: not a failure
        return Outcome("retry", None)
    if status not in ("FAILURE", "REVOKED"):
        return None
    module, name, message = _exc_fields(meta.get("result"))
    exc_type = name if module == "builtins" else f"{module}.{name}"
    traceback = str(meta.get("traceback") or "")
    kind = ErrorKind.ERROR
    if name == "NotRegistered":
        kind, exc_type = ErrorKind.UNKNOWN_NAME, type_name(UnknownName)
        message = f"no Celery worker consuming queue {queue!r} knows task {task!r} (celery NotRegistered)"
    elif name in ("TimeLimitExceeded", "SoftTimeLimitExceeded"):
        message = f"Celery time limit exceeded ({message}s) for task {task!r}"
    elif status == "REVOKED":
        message = f"task {task!r} was revoked ({message or 'revoked'})"
    return Outcome("failure", ErrorInfo(exc_type, message, traceback, kind))


class RedisResults:
    """Listens to a Redis result backend: ``PSUBSCRIBE`` to the keys of bridge task ids. After
    every (re)subscription it reads the keys of the ids still awaited, so a result stored while
    the connection was down is not missed."""

    def __init__(self, backend: Any, on_meta: OnMeta, awaited: Callable[[], Iterable[str]]) -> None:
        self.backend = backend
        self.on_meta = on_meta
        self.awaited = awaited
        prefix = backend.get_key_for_task(ID_PREFIX)
        self.pattern = (prefix.decode() if isinstance(prefix, bytes) else str(prefix)) + "*"
        self.ready = threading.Event()
        self._stop = threading.Event()

    def run(self) -> None:
        delay = 0.1
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.backend.client.pubsub(ignore_subscribe_messages=True)
                pubsub.psubscribe(self.pattern)
                self._catch_up()
                self.ready.set()
                delay = 0.1
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "pmessage":
                        self.on_meta(self.backend.decode_result(message["data"]))
            except Exception as exc:  # noqa: BLE001 - any connection trouble: resubscribe
                if self._stop.is_set():
                    break
                logger.warning("coda.bridge.redis_results.reconnect", extra={"reason": str(exc), "retry_in": delay})
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)
            finally:
                if pubsub is not None:
                    try:
                        pubsub.close()
                    except Exception:  # noqa: BLE001, S110 - closing a dead connection
                        pass

    def _catch_up(self) -> None:
        ids = list(self.awaited())
        if not ids:
            return
        values = self.backend.client.mget([self.backend.get_key_for_task(i) for i in ids])
        for value in values:
            if value is not None:
                self.on_meta(self.backend.decode_result(value))

    def stop(self) -> None:
        self._stop.set()


class ReplyQueue(ConsumerMixin):
    """Consumes the bridge's reply queue, where the ``rpc://`` backend (and the hook when there
    is no backend) publish results with the task id as correlation id."""

    def __init__(self, app: Any, name: str, on_meta: OnMeta) -> None:
        self.connection = app.connection_for_read()
        self.name = name
        self.on_meta = on_meta
        self.accept = list(app.conf.result_accept_content or app.conf.accept_content or ["json"])
        # The anonymous exchange routes by queue name, as Celery's rpc backend publishes.
        self.queue = Queue(name, Exchange("", type="direct"), routing_key=name, durable=False,
                           auto_delete=False, expires=3600.0)
        self.ready = threading.Event()

    def get_consumers(self, consumer_cls: Any, channel: Any) -> list[Any]:
        return [Consumer(channel, queues=[self.queue], callbacks=[self._on_message], accept=self.accept, no_ack=True)]

    def on_consume_ready(self, connection: Any, channel: Any, consumers: Any, **kwargs: Any) -> None:
        self.ready.set()

    def on_connection_error(self, exc: Exception, interval: float) -> None:
        logger.warning("coda.bridge.reply_queue.reconnect", extra={"reason": str(exc), "retry_in": interval})

    def _on_message(self, body: Any, message: Any) -> None:
        if isinstance(body, dict):
            meta = dict(body)
            meta.setdefault("task_id", message.properties.get("correlation_id"))
            self.on_meta(meta)

    def stop(self) -> None:
        self.should_stop = True

    def close(self) -> None:
        self.connection.release()
