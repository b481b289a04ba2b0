"""The worker-side hook: one line in the Celery app module, ``coda.bridge.install(app)``.

Stock Celery workers need nothing from Coda when the app has a Redis or ``rpc://`` result
backend. The hook adds two things, and only for messages the bridge sent (recognised by their
``reply_to``, which names a bridge reply queue):

- a ``STARTED`` notice when the task begins, so the bridge can bound how long a message may
  wait for a worker (and fail loudly naming the task and queue instead of waiting forever);
- when the app has **no** result backend, every outcome Celery would store (success, final
  failure, time limit, revoked, unregistered name) is published to the bridge's reply queue
  with Celery's own rpc result format. Other tasks still see no backend at all.
"""

from __future__ import annotations

import os
import socket
import weakref
from typing import Any

from celery import Celery, signals, states
from celery.backends.base import DisabledBackend
from celery.backends.rpc import RPCBackend

__all__ = ["REPLY_PREFIX", "ReplyOnlyBackend", "hooked", "install", "is_bridge_reply"]

REPLY_PREFIX = "coda.bridge."

_HOOKED: weakref.WeakSet[Any] = weakref.WeakSet()


def is_bridge_reply(reply_to: Any) -> bool:
    """Whether a request's ``reply_to`` names a bridge reply queue."""
    return isinstance(reply_to, str) and reply_to.startswith(REPLY_PREFIX)


def hooked(app: Any) -> bool:
    """Whether ``install(app)`` ran in this process (the supervisor imports the same module)."""
    return app in _HOOKED


# celery ships no annotations, so its class is Any to mypy: subclassing it is the one way in.
class ReplyOnlyBackend(DisabledBackend):  # type: ignore[misc]
    """Stands in for "no result backend" on a hooked worker: reads still raise as before, and
    results are published only for bridge messages, to the queue the message names."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._rpc = RPCBackend(app)

    def store_result(self, task_id: str, result: Any, state: str, traceback: Any = None,
                     request: Any = None, **kwargs: Any) -> Any:
        if request is not None and is_bridge_reply(getattr(request, "reply_to", None)):
            return self._rpc.store_result(task_id, result, state, traceback=traceback, request=request, **kwargs)
        return result


def install(app: Celery) -> None:
    """Call once in the Celery app module (``coda.bridge.install(app)``) so that workers report
    to the Coda bridge. Without a result backend the bridge cannot work without it."""
    _HOOKED.add(app)

    def on_worker_init(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is not app:
            return
        if type(app.backend) is DisabledBackend:
            # Before the pool forks, so every child inherits it; backend_cls covers the threads
            # that build their own backend later (Celery caches one per thread).
            app.backend_cls = ReplyOnlyBackend
            app._backend = ReplyOnlyBackend(app=app)

    def on_prerun(sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any) -> None:
        if task is None or task.app is not app:
            return
        request = task.request
        if is_bridge_reply(getattr(request, "reply_to", None)):
            meta = {"pid": os.getpid(), "hostname": request.hostname or socket.gethostname()}
            task.backend.store_result(task_id, meta, states.STARTED, request=request)

    signals.worker_init.connect(on_worker_init, weak=False, dispatch_uid=f"coda.bridge.init.{id(app)}")
    signals.task_prerun.connect(on_prerun, weak=False, dispatch_uid=f"coda.bridge.prerun.{id(app)}")
