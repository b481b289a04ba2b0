"""Coda workflows that spawn the compat tasks (run by real supervisors in the tests)."""

from __future__ import annotations

from typing import Any

import coda
from coda.errors import CodaError, TaskFailed
from tests.compat import tasks
from tests.compat.tasks import attempt

compat = tasks.TASKS["compat"]


def _failure(exc: TaskFailed) -> dict[str, Any]:
    return {"class": type(exc).__name__, "task": exc.task_name, "exc_type": exc.exc_type,
            "message": exc.message, "traceback": exc.traceback}


@coda.workflow
async def spawn_one(task: str, args: dict[str, Any], cache_key: list[Any] | None = None) -> dict[str, Any]:
    """Spawn the compat task ``task`` (by its function name); its result or failure as data."""
    try:
        return {"ok": await coda.context.spawn_task(compat[task], args=args, cache_key=cache_key)}
    except TaskFailed as exc:
        return {"failed": _failure(exc)}


@coda.workflow(max_retries=1)
async def memo_pipeline(dir: str, tag: str) -> list[Any]:
    """Two memoized compat steps (an explicit key, then the task's default key); attempt 1
    fails afterwards, so attempt 2 must get both from the memo."""
    total = await coda.context.spawn_task(compat["where"], args={"dir": dir, "key": "where"}, cache_key=[tag])
    stored = await coda.context.spawn_task(tasks.keyed, args={"dir": dir, "key": "keyed", "event_id": tag})
    again = await coda.context.spawn_task(tasks.keyed, args={"dir": dir, "key": "keyed", "event_id": tag})
    if coda.context.attempt == 1:
        attempt(dir, "pipeline-failed")
        raise RuntimeError("fail attempt 1 after the memoized steps")
    return [total, stored, again, coda.context.attempt]


@coda.workflow
async def bad_default_key(task: str) -> str:
    """The error a broken default cache_key raises at spawn time, as text."""
    try:
        coda.context.spawn_task(task, args={"value": 0})
    except (CodaError, TypeError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"
