"""A Celery app whose queue a ``coda supervisor -Q`` takes over: plain ``@shared_task`` tasks,
as a team has them, plus one Coda workflow started through the broker.

Broker, backend and queue come from the environment (``make_app`` builds the same app in the
test process); every run of a task is counted in Redis under ``CODA_TAKEOVER_PREFIX``.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import redis
from celery import Celery, shared_task

import coda
from coda.compat import task as compat_task

PREFIX = os.environ.get("CODA_TAKEOVER_PREFIX", "coda-takeover-dev")
QUEUE = os.environ.get("CODA_TAKEOVER_QUEUE", "coda-takeover-dev")
COUNTS_URL = os.environ.get("CODA_TAKEOVER_COUNTS", "redis://127.0.0.1:6379/0")


def make_app(broker: str, backend: str | None, queue: str, prefix: str) -> Celery:
    app = Celery("takeover", set_as_current=False)
    options: dict[str, Any] = {"visibility_timeout": 3}
    if broker.startswith("redis"):
        # A short visibility timeout and a restore sweep on every idle poll: messages of a
        # killed supervisor come back within seconds.
        options.update(global_keyprefix=f"{prefix}:", unacked_restore_throttle=1)
    app.conf.update(
        broker_url=broker,
        result_backend=backend,
        task_default_queue=queue,
        accept_content=["json"],
        broker_transport_options=options,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        result_extended=True,
    )
    return app


app = make_app(os.environ.get("CODA_TAKEOVER_BROKER", "redis://127.0.0.1:6379/0"),
               os.environ.get("CODA_TAKEOVER_BACKEND") or None, QUEUE, PREFIX)

_redis: redis.Redis | None = None


def counts() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(COUNTS_URL)
    return _redis


def _count(key: str) -> int:
    return int(counts().incr(f"{PREFIX}:{key}"))


@shared_task(name="takeover.add")
def add(x: int, y: int) -> int:
    return x + y


@shared_task(name="takeover.tsum")
def tsum(values: list[int]) -> int:
    return sum(values)


@shared_task(name="takeover.counted", bind=True)
def counted(self: Any, i: int) -> int:
    _count(f"runs:{i}")
    _count("by:coda" if str(self.request.hostname).startswith("coda@") else "by:celery")
    return i


@shared_task(name="takeover.slow_counted")
def slow_counted(i: int, seconds: float) -> int:
    time.sleep(seconds)
    _count(f"runs:{i}")
    return i


@shared_task(name="takeover.fail")
def fail(message: str) -> None:
    raise ValueError(message)


@shared_task(name="takeover.record_error")
def record_error(request: Any, exc: Any, traceback: Any, key: str) -> None:
    counts().set(f"{PREFIX}:{key}", f"{request.id}:{exc!r}")


@shared_task(name="takeover.whoami", bind=True)
def whoami(self: Any) -> dict[str, Any]:
    r = self.request
    return {"id": r.id, "hostname": r.hostname, "is_eager": r.is_eager, "called_directly": r.called_directly,
            "retries": r.retries, "routing_key": (r.delivery_info or {}).get("routing_key")}


@shared_task(name="takeover.retry_twice", bind=True, max_retries=5)
def retry_twice(self: Any) -> int:
    if self.request.retries < 2:
        raise self.retry(countdown=0.5)
    return int(self.request.retries)


@shared_task(name="takeover.flaky", autoretry_for=(KeyError,), retry_kwargs={"countdown": 0.2, "max_retries": 3})
def flaky(key: str) -> int:
    runs = _count(key)
    if runs < 3:
        raise KeyError(key)
    return runs


@shared_task(name="takeover.sleeper")
def sleeper(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


@shared_task(name="takeover.limited", rate_limit="10/s")
def limited(i: int) -> float:
    return time.time()


@shared_task(name="takeover.where")
def where() -> dict[str, Any]:
    """Which thread runs a taken-over task, and whether code written for a plain process works."""

    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    return {"main_thread": threading.current_thread() is threading.main_thread(), "asyncio_run": asyncio.run(answer())}


@coda.workflow(name="takeover.nap")
async def nap(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "rested"


@coda.workflow(name="takeover.double")
async def double(x: int) -> int:
    return x * 2


@compat_task(name="takeover.compat_add", bind=True)
def compat_add(self: Any, x: int, y: int) -> dict[str, Any]:
    return {"sum": x + y, "hostname": self.request.hostname}
