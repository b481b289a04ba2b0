"""A legacy Celery app, as a team has it before moving anything to Coda: plain ``@app.task``
functions run by stock ``celery worker`` processes. Broker, result backend and queue come from
the environment, so one module serves every broker / backend combination the tests run.

Side effects are counted in Redis under ``CODA_BRIDGE_PREFIX`` so a test can prove how often
each legacy task really ran.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
from celery import Celery

import coda.bridge

PREFIX = os.environ.get("CODA_BRIDGE_PREFIX", "coda-bridge-dev")
QUEUE = os.environ.get("CODA_BRIDGE_QUEUE", "coda-bridge-dev")

app = Celery("legacy")
app.conf.update(
    broker_url=os.environ.get("CODA_BRIDGE_BROKER", "redis://127.0.0.1:6379/0"),
    result_backend=os.environ.get("CODA_BRIDGE_BACKEND") or None,
    task_default_queue=QUEUE,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    broker_transport_options={"visibility_timeout": float(os.environ.get("CODA_BRIDGE_VISIBILITY", "3600"))},
    result_backend_transport_options={"retry_policy": {"timeout": 20.0}},
    result_backend_always_retry=True,
    result_backend_max_retries=50,
)

# The one line a Celery app module needs for the bridge (required when there is no result
# backend). Tests of a legacy worker without it set CODA_BRIDGE_HOOK=0.
if os.environ.get("CODA_BRIDGE_HOOK", "1") == "1":
    coda.bridge.install(app)

_redis: Any = None


def counter() -> Any:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(os.environ.get("CODA_BRIDGE_REDIS", "redis://127.0.0.1:6379/0"))
    return _redis


def bump(name: str, key: str) -> int:
    """Count one run of ``name`` for ``key``; the count so far."""
    return int(counter().incr(f"{PREFIX}:{name}:{key}"))


@app.task(name="legacy.enrich")
def enrich(event: dict[str, Any], key: str) -> dict[str, Any]:
    bump("enrich", key)
    return {**event, "enriched": True, "steps": [*event.get("steps", []), "legacy.enrich"]}


@app.task(name="legacy.store")
def store(event: dict[str, Any], key: str) -> dict[str, Any]:
    bump("store", key)
    return {**event, "stored": True, "steps": [*event.get("steps", []), "legacy.store"]}


@app.task(name="legacy.echo")
def echo(value: Any) -> Any:
    return value


@app.task(name="legacy.boom")
def boom(key: str) -> None:
    bump("boom", key)
    raise ValueError(f"boom {key}")


@app.task(name="legacy.fail_while_flagged")
def fail_while_flagged(key: str) -> str:
    bump("flagged", key)
    if counter().exists(f"{PREFIX}:flag:{key}"):
        raise RuntimeError(f"{key} is flagged to fail")
    return f"ok {key}"


@app.task(name="legacy.retry_twice", bind=True, max_retries=3, default_retry_delay=0.05)
def retry_twice(self: Any, key: str) -> str:
    attempt = bump("retry_twice", key)
    if attempt <= 2:
        raise self.retry(exc=ConnectionError(f"attempt {attempt}"))
    return f"succeeded on attempt {attempt}"


@app.task(name="legacy.too_slow", time_limit=1)
def too_slow(key: str) -> str:
    bump("too_slow", key)
    time.sleep(30)
    return "never"


@app.task(name="legacy.hang", acks_late=True)
def hang(key: str, seconds: float) -> str:
    """Marks that it started (with its pid), then works for ``seconds``."""
    count = bump("hang", key)
    counter().set(f"{PREFIX}:hang-pid:{key}:{count}", os.getpid())
    time.sleep(seconds)
    bump("hang-done", key)
    return f"done {key}"


@app.task(name="legacy.killed_once", acks_late=True)
def killed_once(key: str) -> str:
    """The first delivery marks its pid and hangs (the test SIGKILLs its worker); the
    redelivered message finishes."""
    count = bump("killed_once", key)
    if count == 1:
        counter().set(f"{PREFIX}:killed_once-pid:{key}", os.getpid())
        time.sleep(60)
    return f"survived {key} after {count} deliveries"
