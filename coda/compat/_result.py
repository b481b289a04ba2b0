"""Calls routed to Coda by the rollout switch: the built-in ``coda.compat.run_task`` workflow
that runs one task, and :class:`CodaAsyncResult`, the ``AsyncResult`` the caller gets back.

The supervisor is found at ``$CODA_URL`` (else 127.0.0.1:42069), with ``$CODA_TOKEN`` if set.
One :class:`~coda.SyncClient` per process is opened on the first routed call (never at import),
and again in a forked child.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeoutError

from coda import context
from coda.client import SyncClient
from coda.errors import RunTimeout, TaskFailed, WorkflowFailed, class_named
from coda.registry import workflow

__all__ = ["CodaAsyncResult", "RUN_TASK", "run_task", "sync_client"]

RUN_TASK = "coda.compat.run_task"


@workflow(name=RUN_TASK)
async def run_task(task: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """Run one task for a routed ``delay()``/``apply_async()``. Its failure is returned as data,
    as a Celery result backend stores a FAILURE state, so the caller can rebuild the exception."""
    try:
        return {"ok": await context.spawn_task(task, args=kwargs)}
    except TaskFailed as exc:
        return {"failed": {"exc_type": exc.exc_type, "message": exc.message, "traceback": exc.traceback}}


_client_lock = threading.Lock()
_client: tuple[int, str | None, SyncClient] | None = None


def sync_client() -> SyncClient:
    """This process's client for routed calls: made on first use, and made again in a forked
    child or when ``$CODA_URL`` changed."""
    global _client
    with _client_lock:
        pid, address = os.getpid(), os.environ.get("CODA_URL")
        if _client is None or _client[:2] != (pid, address):
            if _client is not None and _client[0] == pid:
                _client[2].close()
            _client = (pid, address, SyncClient(address))
        return _client[2]


def _exception_parts(exc_type: str) -> tuple[str, str] | None:
    """``module.Qual.Name`` → (module, Qual.Name) when that module is imported here."""
    if "." not in exc_type:
        return "builtins", exc_type
    parts = exc_type.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        if module in sys.modules:
            return module, ".".join(parts[cut:])
    return None


class CodaAsyncResult:
    """The ``AsyncResult`` interface for a call that runs on Coda: ``id``, ``get(timeout=)``,
    ``ready()``, ``successful()``, ``failed()``, ``state``, ``result``, ``traceback``. The id is
    the run id; a failure is re-raised as the task's exception type when it can be rebuilt (with
    Celery's own ``exception_to_python``), else as :class:`coda.TaskFailed`."""

    def __init__(self, run_id: str, task_name: str, app: Any, client: SyncClient) -> None:
        self.id = self.task_id = run_id
        self.task_name = task_name
        self.app = app
        self._client = client
        self._outcome: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"<CodaAsyncResult: {self.id}>"

    def _fetch(self, timeout: float | None) -> dict[str, Any]:
        if self._outcome is None:
            try:
                value = self._client.result(self.id, timeout=timeout)
            except RunTimeout:
                raise CeleryTimeoutError("The operation timed out.") from None
            except WorkflowFailed as exc:
                # The run itself failed (cancelled, or the task name is unknown to Coda).
                value = {"failed": {"exc_type": exc.exc_type, "message": exc.message, "traceback": exc.traceback}}
            self._outcome = value
        return self._outcome

    def _exception(self, failed: dict[str, Any]) -> BaseException:
        exc_type, message, traceback = failed["exc_type"], failed["message"], failed["traceback"]
        parts = _exception_parts(exc_type)
        coda_error = class_named(exc_type)
        if coda_error is not None and issubclass(coda_error, TaskFailed):
            return coda_error(self.task_name, exc_type, message, traceback)
        if parts is not None:
            try:
                exc = self.app.backend.exception_to_python(
                    {"exc_type": parts[1], "exc_module": parts[0], "exc_message": [message]}
                )
            except Exception:  # noqa: BLE001 - not an exception class, or its constructor differs
                exc = None
            if isinstance(exc, BaseException):
                return exc
        return TaskFailed(self.task_name, exc_type, message, traceback)

    def get(self, timeout: float | None = None, propagate: bool = True, **_ignored: Any) -> Any:
        """Wait for the result; raise the task's exception (``propagate=False``: return it)."""
        outcome = self._fetch(timeout)
        if "ok" in outcome:
            return outcome["ok"]
        exc = self._exception(outcome["failed"])
        if propagate:
            raise exc
        return exc

    wait = get

    def ready(self) -> bool:
        if self._outcome is not None:
            return True
        if self._client.status(self.id).state in ("succeeded", "failed", "cancelled"):
            self._fetch(None)
            return True
        return False

    def successful(self) -> bool:
        return self.ready() and "ok" in self._fetch(None)

    def failed(self) -> bool:
        return self.ready() and "failed" in self._fetch(None)

    @property
    def state(self) -> str:
        if self.ready():
            return "SUCCESS" if "ok" in self._fetch(None) else "FAILURE"
        return "STARTED" if self._client.status(self.id).state == "running" else "PENDING"

    status = state

    @property
    def result(self) -> Any:
        """The return value, the exception if it failed, or None while it runs."""
        if not self.ready():
            return None
        return self.get(propagate=False)

    @property
    def traceback(self) -> str | None:
        if not self.ready() or "failed" not in self._fetch(None):
            return None
        return str(self._fetch(None)["failed"]["traceback"])
