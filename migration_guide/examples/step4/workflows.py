"""``ingest_event``: the chain as one workflow. Each step's result is memoized under the
event's key, so a rerun after a late failure does not preprocess or symbolicate again."""

from __future__ import annotations

from typing import Any

import coda
from migration_guide.examples import domain

from .tasks import drop_event, preprocess_event, process_event, save_event, symbolicate_event


@coda.workflow(name="pipeline.ingest_event", max_retries=2, retry_delay=0.1)
async def ingest_event(event: dict[str, Any] | None, event_id: str, project_id: int) -> dict[str, Any]:
    if event is None:
        await coda.context.spawn_task(drop_event, args={"event_id": event_id, "reason": "payload missing"})
        return {"event_id": event_id, "saved": False}
    key = [event_id, project_id]
    data = await coda.context.spawn_task(preprocess_event, args={"data": event, "project_id": project_id}, cache_key=key)
    if domain.needs_symbolication(data):
        data = await coda.context.spawn_task(symbolicate_event, args={"data": data}, cache_key=key)
    data = await coda.context.spawn_task(process_event, args={"data": data}, cache_key=key)
    saved = await coda.context.spawn_task(save_event, args={"data": data}, cache_key=key)
    return {"event_id": event_id, "saved": saved}
