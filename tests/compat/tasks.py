"""Every test task twice: as a bare Celery ``@shared_task`` and as ``@coda.compat.task``, with
the same function and options, so one test body can run against both.

Side effects (one line per attempt, with a timestamp) go to files in the ``dir`` argument, so a
test counts attempts made in other processes. Celery signals are recorded in
``$CODA_TEST_SIGNALS`` (a JSON-lines file) when it is set, else in :data:`SIGNALS`.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from celery import shared_task, signals
from celery.exceptions import Ignore, Reject

import coda.compat

KINDS = ("bare", "compat")
TASKS: dict[str, dict[str, Any]] = {"bare": {}, "compat": {}}


def both(**options: Any) -> Any:
    """Declare the function as ``tests.compat.tasks.<kind>.<name>`` for both kinds."""

    def declare(fn: Any) -> Any:
        name = fn.__name__
        TASKS["bare"][name] = shared_task(name=f"tests.compat.tasks.bare.{name}", **options)(fn)
        TASKS["compat"][name] = coda.compat.task(name=f"tests.compat.tasks.compat.{name}", **options)(fn)
        return fn

    return declare


def attempt(dir: str, key: str) -> int:
    """Record one attempt of ``key``; the number of attempts so far."""
    path = os.path.join(dir, key)
    with open(path, "a") as f:
        f.write(f"{time.time()}\n")
    return len(attempts(dir, key))


def attempts(dir: str, key: str) -> list[float]:
    """When each attempt of ``key`` started."""
    path = os.path.join(dir, key)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [float(line) for line in f]


@both()
def add(x: int, y: int) -> int:
    """Add two numbers."""
    return x + y


@both()
def total(numbers: list[int], extra: int = 0) -> int:
    return sum(numbers) + extra


@both(bind=True)
def where(self: Any, dir: str | None = None, key: str | None = None) -> str:
    """Where the task ran: "celery" on a Celery worker or eagerly, "coda" on a Coda worker."""
    if dir is not None and key is not None:
        attempt(dir, key)
    return "coda" if str(self.request.hostname).startswith("coda@") else "celery"


@both(bind=True)
def request_info(self: Any, value: int) -> dict[str, Any]:
    request = self.request
    return {
        "id": request.id,
        "retries": request.retries,
        "args": list(request.args or []),
        "kwargs": dict(request.kwargs or {}),
        "called_directly": request.called_directly,
        "is_eager": request.is_eager,
        "has_hostname": bool(request.hostname),
        "routing_key": (request.delivery_info or {}).get("routing_key"),
        "is_self": self is self.app.tasks[self.name],
    }


@both(bind=True, max_retries=3)
def retry_countdown(self: Any, dir: str, key: str, fails: int, countdown: float) -> dict[str, Any]:
    """Fails ``fails`` times, retrying after ``countdown`` seconds each time."""
    n = attempt(dir, key)
    if n <= fails:
        raise self.retry(countdown=countdown, exc=ValueError(f"attempt {n} failed"))
    return {"attempts": n, "retries": self.request.retries}


@both(bind=True, max_retries=1, default_retry_delay=0.1)
def retry_exhaust(self: Any, dir: str, key: str) -> None:
    """Always asks for a retry: fails with its KeyError once max_retries (1) is used up."""
    attempt(dir, key)
    raise self.retry(exc=KeyError("still missing"))


@both(bind=True, default_retry_delay=0.05)
def retry_default_max(self: Any, dir: str, key: str) -> None:
    """Retries without exc: Celery's default max_retries (3), then MaxRetriesExceededError."""
    attempt(dir, key)
    raise self.retry()


@both(bind=True, max_retries=4)
def retry_override_max(self: Any, dir: str, key: str) -> None:
    """retry(max_retries=1) overrides the task's 4 for this call."""
    attempt(dir, key)
    raise self.retry(countdown=0.05, max_retries=1, exc=RuntimeError("gave up"))


@both(autoretry_for=(ConnectionError,), retry_backoff=1, retry_backoff_max=10, retry_jitter=False, max_retries=2)
def autoretry_backoff(dir: str, key: str, fails: int) -> int:
    """Raises ConnectionError ``fails`` times: Celery retries after 1 s, then 2 s."""
    n = attempt(dir, key)
    if n <= fails:
        raise ConnectionError(f"attempt {n} failed")
    return n


@both(autoretry_for=(Exception,), dont_autoretry_for=(ValueError,), default_retry_delay=0.05)
def autoretry_except(dir: str, key: str, exc: str) -> None:
    """autoretry_for=Exception but not ValueError."""
    n = attempt(dir, key)
    raise {"ValueError": ValueError, "OSError": OSError}[exc](f"attempt {n}")


@both()
def ignored(dir: str, key: str) -> None:
    attempt(dir, key)
    raise Ignore()


@both(bind=True)
def rejected(self: Any, dir: str, key: str, requeue_until: int) -> int:
    """Reject(requeue=True) until attempt ``requeue_until``, then succeed; 0: reject for good."""
    n = attempt(dir, key)
    if requeue_until == 0:
        raise Reject("not for us", requeue=False)
    if n < requeue_until:
        raise Reject("again", requeue=True)
    return n


@both()
def boom(message: str) -> None:
    raise ValueError(message)


# -- Coda-only extras ---------------------------------------------------------------------------


@coda.compat.task(name="tests.compat.tasks.keyed", cache_key=lambda dir, key, event_id: [event_id])
def keyed(dir: str, key: str, event_id: str) -> str:
    """Memoized by its default key (the event id) when a spawn gives no cache_key."""
    attempt(dir, key)
    return f"stored {event_id}"


@coda.compat.task(name="tests.compat.tasks.bad_key", cache_key=lambda value: (value,))
def bad_key(value: int) -> int:
    return value


@coda.compat.task(name="tests.compat.tasks.raising_key", cache_key=lambda value: [1 / value])
def raising_key(value: int) -> int:
    return value


# -- signals ------------------------------------------------------------------------------------

SIGNALS: list[dict[str, Any]] = []
_signals_lock = threading.Lock()


def _record(signal_name: str, sender: Any, **kwargs: Any) -> None:
    name = getattr(sender, "name", None) or str(sender)
    if not name.startswith("tests.compat.tasks."):
        return
    request = kwargs.get("request")
    entry = {
        "signal": signal_name,
        "task": name,
        "keys": sorted(kwargs),
        "task_id": kwargs.get("task_id") or getattr(request, "id", None),
        "kwargs": kwargs.get("kwargs") if "kwargs" in kwargs else getattr(request, "kwargs", None),
        "state": kwargs.get("state"),
        "result": kwargs.get("result", kwargs.get("retval")),
        "exception": type(kwargs["exception"]).__name__ if "exception" in kwargs else None,
    }
    path = os.environ.get("CODA_TEST_SIGNALS")
    with _signals_lock:
        if path:
            with open(path, "a") as f:
                f.write(json.dumps(entry, default=repr) + "\n")
        else:
            SIGNALS.append(entry)


@signals.task_prerun.connect
def _prerun(sender: Any = None, **kwargs: Any) -> None:
    _record("task_prerun", sender, **kwargs)


@signals.task_postrun.connect
def _postrun(sender: Any = None, **kwargs: Any) -> None:
    _record("task_postrun", sender, **kwargs)


@signals.task_success.connect
def _success(sender: Any = None, **kwargs: Any) -> None:
    _record("task_success", sender, **kwargs)


@signals.task_failure.connect
def _failure(sender: Any = None, **kwargs: Any) -> None:
    _record("task_failure", sender, **kwargs)


@signals.task_retry.connect
def _retry(sender: Any = None, **kwargs: Any) -> None:
    _record("task_retry", sender, **kwargs)


def read_signals(path: str | None = None) -> list[dict[str, Any]]:
    if path is None:
        return list(SIGNALS)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]
