"""Coda tasks and workflows that orchestrate the legacy Celery tasks of ``celery_app``.

The "migrated" steps are plain ``@coda.task`` functions (run on Coda workers); the legacy ones
are the untouched Celery task objects, or their Celery names as strings (as when the legacy
module lives in another codebase).
"""

from __future__ import annotations

import asyncio
from typing import Any

import coda
from coda.errors import TaskFailed, UnknownName
from tests.bridge import celery_app
from tests.bridge.celery_app import enrich


@coda.task
def normalize(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "message": str(event.get("message", "")).strip(), "steps": ["coda.normalize"]}


@coda.task
async def tag(event: dict[str, Any]) -> dict[str, Any]:
    return {**event, "tagged": True, "steps": [*event["steps"], "coda.tag"]}


@coda.workflow
async def mixed(event: dict[str, Any]) -> dict[str, Any]:
    """migrated → legacy → migrated → legacy, data passed along."""
    key = event["id"]
    event = await coda.context.spawn_task(normalize, args={"event": event}, cache_key=[key])
    event = await coda.context.spawn_task(enrich, args={"event": event, "key": key}, cache_key=[key])
    event = await coda.context.spawn_task(tag, args={"event": event}, cache_key=[key])
    return await coda.context.spawn_task(  # type: ignore[no-any-return]
        "legacy.store", args={"event": event, "key": key}, cache_key=[key]
    )


@coda.workflow
async def mixed_late_failure(event: dict[str, Any]) -> list[Any]:
    """Legacy side effects first, then a legacy step that fails while flagged."""
    stored = await mixed.fn(event)
    last = await coda.context.spawn_task(
        celery_app.fail_while_flagged, args={"key": event["id"]}, cache_key=[event["id"]]
    )
    return [stored, last, coda.context.attempt]


@coda.workflow
async def call(task: str, args: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    """Spawn a legacy task by Celery name; its result, or its failure as data."""
    try:
        value = await coda.context.spawn_task(task, args=args, cache_key=None if key is None else [key])
    except TaskFailed as exc:
        return {"failed": {"class": type(exc).__name__, "task": exc.task_name, "exc_type": exc.exc_type,
                           "message": exc.message, "traceback": exc.traceback}}
    except UnknownName as exc:
        return {"unknown": str(exc)}
    return {"ok": value}


@coda.workflow
async def twice(task: str, args: dict[str, Any], key: str) -> list[Any]:
    """Two concurrent spawns under one key: one Celery message."""
    a = coda.context.spawn_task(task, args=args, cache_key=[key])
    b = coda.context.spawn_task(task, args=args, cache_key=[key])
    return list(await asyncio.gather(a, b))


@coda.workflow
async def timed_echo(n: int) -> list[float]:
    """Seconds each of ``n`` sequential spawns of ``legacy.echo`` took, spawn to result."""
    import time

    took = []
    for i in range(n):
        started = time.perf_counter()
        assert await coda.context.spawn_task(celery_app.echo, args={"value": i}) == i
        took.append(time.perf_counter() - started)
    return took
