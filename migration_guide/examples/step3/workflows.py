"""``ingest_event``: the chain as one workflow. Each step's result is memoized under the
event's key, so a rerun after a late failure does not preprocess or symbolicate again —
whether the step ran on a Coda worker or on a Celery worker."""

from __future__ import annotations

from typing import Any

import coda
from migration_guide.examples import domain

from . import legacy
from .tasks import drop_event, preprocess_event, process_event


@coda.workflow(name="pipeline.ingest_event", max_retries=2, retry_delay=0.1)
async def ingest_event(event: dict[str, Any] | None, event_id: str, project_id: int) -> dict[str, Any]:
    if event is None:
        await coda.context.spawn_task(drop_event, args={"event_id": event_id, "reason": "payload missing"})
        return {"event_id": event_id, "saved": False}
    key = [event_id, project_id]
    data = await coda.context.spawn_task(preprocess_event, args={"data": event, "project_id": project_id}, cache_key=key)
    if domain.needs_symbolication(data):
        # A plain Celery task: published through kombu, run by a stock celery worker.
        data = await coda.context.spawn_task(legacy.symbolicate_event, args={"data": data}, cache_key=key)
    data = await coda.context.spawn_task(process_event, args={"data": data}, cache_key=key)
    saved = await coda.context.spawn_task(legacy.save_event, args={"data": data}, cache_key=key)
    return {"event_id": event_id, "saved": saved}
