"""Worker side of the queue takeover: one Celery message, run by Celery's own worker code.

A worker of a supervisor started with ``-Q`` imports this module after the ``-A`` ones. It
loads the Celery app named by ``CODA_CELERY_APP`` and registers one Coda task,
:data:`TASK_NAME`, whose arguments are a Celery message as it came off the broker. Running it
builds Celery's ``celery.worker.request.Request`` from that message and calls its
``execute()``, exactly what a ``celery worker`` does with a message: expiry/revocation,
``self.request``, signals, the result backend, link/link_error, chain continuation, chord
counting and ``self.retry``/``autoretry_for`` are Celery's code, not a copy of it.

So this process talks to the result backend and publishes follow-up messages itself (as a
Celery pool process does); it never *consumes* from the broker. Acknowledging the message is
the supervisor's job, once this task has returned.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from kombu import message as kombu_message
from kombu import serialization

from coda.bridge._settings import CELERY_APP_ENV, HOSTNAME, TASK_NAME, load_celery_app
from coda.errors import BridgeError, UnknownName
from coda.registry import REGISTRY, Task

__all__ = ["run_celery_message"]

logger = logging.getLogger(__name__)

# kombu ships no annotations for these.
_Message: Any = kombu_message.Message
_prepare_accept: Any = serialization.prepare_accept_content


_APP: Any = None
_ACCEPT: Any = None


def _load_app() -> Any:
    global _APP, _ACCEPT
    if _APP is None:
        spec = os.environ.get(CELERY_APP_ENV)
        if not spec:
            raise BridgeError(f"coda.bridge._execute needs {CELERY_APP_ENV} (the supervisor's --celery-app)")
        app = load_celery_app(spec)
        # What `celery worker` imports besides the app module (`imports`/`include` settings).
        app.loader.import_default_modules()
        app.finalize(auto=True)
        _ACCEPT = _prepare_accept(app.conf.accept_content)
        _APP = app
    return _APP


# A supervisor's worker has CODA_CELERY_APP: fail at startup, not at the first message.
if os.environ.get(CELERY_APP_ENV):
    _load_app()


def run_celery_message(
    headers: dict[str, Any],
    properties: dict[str, Any],
    delivery_info: dict[str, Any],
    body: bytes,
    content_type: str,
    content_encoding: str,
) -> None:
    """Run one Celery message through ``Request.execute`` (the worker's own path)."""
    from celery.worker.request import Request

    app = _load_app()
    name = headers.get("task")
    task = app.tasks.get(name)
    if task is None:
        raise UnknownName(f"no Celery task {name!r} is registered in this worker")
    message = _Message(
        body=body, content_type=content_type, content_encoding=content_encoding,
        delivery_info=delivery_info, properties=properties, headers=headers, accept=_ACCEPT,
    )
    # on_ack/on_reject stay no-ops: the supervisor acknowledges once this returns.
    Request(message, app=app, task=task, hostname=HOSTNAME).execute()


class _CeleryMessageTask(Task[..., None]):
    # As in a Celery prefork child: the task runs on the process's main thread, one at a time.
    main_thread = True
    local_start = False  # submitted by the takeover, never spawned


REGISTRY.add_task(_CeleryMessageTask(run_celery_message, name=TASK_NAME))
