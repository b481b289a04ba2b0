"""One execution of a Celery task on a Coda worker, through Celery's own tracer.

Celery's tracer (``celery.app.trace.build_tracer``) pushes ``self.request``, sends
``task_prerun``/``task_postrun``/``task_success``/``task_failure``/``task_retry``, runs the
autoretry wrapper and maps ``Retry``/``Ignore``/``Reject`` to states. Reusing it keeps all of
that exactly as on a Celery worker. Two things differ, on purpose:

- the tracer runs with ``eager=True`` so it stores nothing in the Celery result backend: the
  supervisor holds the outcome (``request.is_eager`` is still False, as on a worker);
- ``self.retry()`` would publish a retry message; under Coda the mixin's ``apply_async``
  captures it instead (see :func:`capture_retry`), and the worker hands the delay to the
  supervisor, which owns the timer.

Outcomes, as Celery documents them, under Coda:

- ``Retry`` after ``self.retry()`` (or ``autoretry_for``): the same execution runs again after
  ``countdown``/``eta``; ``request.retries`` is the Coda attempt minus one, so ``max_retries``
  counts the same attempts. Past ``max_retries`` Celery raises the exception (or
  ``MaxRetriesExceededError``), which is the final failure: ``coda.TaskFailed`` in the workflow.
- ``Ignore``: Celery records no state and no result. A workflow cannot wait forever for a result
  that never comes, so the spawn fails with ``TaskFailed(exc_type="celery.exceptions.Ignore")``,
  never retried and never memoized.
- ``Reject(requeue=True)``: Celery puts the message back and it runs again; under Coda the task
  runs again at once (the supervisor counts it as an attempt). ``Reject(requeue=False)``: the
  message is dropped (or dead-lettered); under Coda the spawn fails with ``TaskFailed``.
"""

from __future__ import annotations

import datetime
import logging
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from celery import states
from celery.exceptions import Reject

from coda.compat import _celery
from coda.errors import CompatError
from coda.registry import ExecInfo

__all__ = ["RetryScheduled", "build_tracer", "capture_retry", "current_execution", "run_under_coda"]

logger = logging.getLogger(__name__)

# Task ids under Coda derive from the run and the execution, so every attempt of one
# execution sees the same ``request.id``, as Celery keeps the id across retries.
_ID_NAMESPACE = uuid.UUID("6f1c3c8e-5d0a-4c9b-9a53-2f0b7f0c0da1")
_HOSTNAME = f"coda@{socket.gethostname()}"


class RetryScheduled(BaseException):
    """Raised from ``invoke`` when Celery asked for a retry: the worker reports the failure with
    ``retry_in=delay``. A control-flow signal between this module and the worker (no user code
    runs in between), hence ``BaseException``."""

    def __init__(self, delay: float, reason: BaseException) -> None:
        super().__init__(str(reason))
        self.delay = delay
        self.reason = reason


@dataclass
class _Execution:
    """What the running execution knows while Celery's tracer runs its body."""

    task_id: str
    kwargs: dict[str, Any]
    retry_options: dict[str, Any] | None = None
    unsupported: str | None = None


_local = threading.local()


def current_execution() -> _Execution | None:
    """The Coda execution running on this thread, if any (sync tasks run on pool threads)."""
    stack: list[_Execution] | None = getattr(_local, "stack", None)
    return stack[-1] if stack else None


def capture_retry(
    task_name: str, task_id: str | None, args: Any, kwargs: Any, options: dict[str, Any]
) -> bool:
    """Called by the mixin's ``apply_async``: True when this is ``self.retry()`` re-sending the
    running execution, which Coda schedules itself instead of publishing it."""
    execution = current_execution()
    if execution is None or task_id != execution.task_id or "retries" not in options:
        return False
    if (args or []) != [] or (kwargs if kwargs is not None else execution.kwargs) != execution.kwargs:
        # The supervisor runs the same execution again with the same args.
        execution.unsupported = (
            f"task {task_name!r}: self.retry(args=..., kwargs=...) that change the arguments "
            "cannot be honoured under Coda (a retry runs with the spawn's args)"
        )
    execution.retry_options = options
    return True


def _delay(options: dict[str, Any]) -> float:
    """Seconds until the retry, from the options Celery's ``retry()`` sent with."""
    eta = options.get("eta")
    if eta is not None:
        if isinstance(eta, str):
            eta = datetime.datetime.fromisoformat(eta)
        now = datetime.datetime.now(eta.tzinfo) if eta.tzinfo else datetime.datetime.now()
        return max(0.0, (eta - now).total_seconds())
    countdown = options.get("countdown")
    return max(0.0, float(countdown)) if countdown is not None else 0.0


def _queue_of(task: Any) -> str:
    return getattr(task, "queue", None) or task.app.conf.task_default_queue or "celery"


def run_under_coda(tracer: Any, task: Any, kwargs: dict[str, Any], info: ExecInfo) -> Any:
    """Run ``task`` (the registered Celery task) once with ``tracer`` and map the outcome onto
    Coda: the return value, :class:`RetryScheduled`, or the exception that fails the spawn."""
    task_id = str(uuid.uuid5(_ID_NAMESPACE, f"{info.run_id}/{info.exec_id}"))
    request = {
        "id": task_id,
        "task": task.name,
        "root_id": task_id,
        "parent_id": None,
        "retries": info.attempt - 1,
        "is_eager": False,
        "hostname": _HOSTNAME,
        "delivery_info": {"exchange": "", "routing_key": _queue_of(task), "priority": None, "redelivered": False},
        "correlation_id": task_id,
    }
    execution = _Execution(task_id, kwargs)
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    stack.append(execution)
    try:
        outcome = tracer(task_id, [], kwargs, request)
    finally:
        stack.pop()
    trace_info = outcome.info
    if trace_info is None:
        if execution.retry_options is not None:
            # retry(throw=False) and then returned: Celery would run the task again *and*
            # record this success; Coda keeps the success.
            logger.warning(
                "coda.compat.retry_ignored", extra={"task_name": task.name, "reason": "returned after retry(throw=False)"}
            )
        return outcome.retval
    state, exc = trace_info.state, trace_info.retval
    if state == states.RETRY and execution.retry_options is not None:
        if execution.unsupported is not None:
            raise CompatError(execution.unsupported) from exc
        raise RetryScheduled(_delay(execution.retry_options), exc)
    if state == states.REJECTED and isinstance(exc, Reject) and exc.requeue:
        raise RetryScheduled(0.0, exc)
    # FAILURE (including max retries exceeded), IGNORED, REJECTED without requeue, and a bare
    # ``raise Retry()`` that re-sent nothing (Celery would never run it again either).
    raise exc


def build_tracer(task: Any) -> Any:
    """Celery's tracer for ``task``, looked up at call time so instrumentation that patches
    ``celery.app.trace.build_tracer`` (error-tracking SDKs do) sees Coda executions too."""
    return _celery.build_tracer(task, _HOSTNAME)
