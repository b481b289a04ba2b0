"""The README's example: normalize an event, then store it, each step memoized by event id."""

from __future__ import annotations

import asyncio
from typing import Any

import coda

STORED: dict[str, dict[str, Any]] = {}


@coda.task(retry_on=(ConnectionError,), max_retries=3, retry_delay=0.1)
async def normalize_event(project_id: int, event_data: dict[str, Any]) -> dict[str, Any]:
    return {**event_data, "project_id": project_id, "message": event_data.get("message", "").strip()}


@coda.task
def store_event(event_data: dict[str, Any]) -> dict[str, Any]:
    # A plain def task: runs on a worker thread, off the event loop.
    STORED[event_data["event_id"]] = event_data
    return {"event_id": event_data["event_id"], "stored": True}


@coda.workflow(max_retries=2)
async def process_event(project_id: int, event_data: dict[str, Any]) -> dict[str, Any]:
    event_data = await coda.context.spawn_task(
        normalize_event,
        args={"project_id": project_id, "event_data": event_data},
        cache_key=[event_data["event_id"]],
    )
    return await coda.context.spawn_task(  # type: ignore[no-any-return]
        store_event, args={"event_data": event_data}, cache_key=[event_data["event_id"]]
    )


async def main(address: str) -> None:
    async with coda.Client(address) as client:
        events = [{"event_id": f"ev{i}", "message": f"  hello {i} "} for i in range(3)]
        results = await asyncio.gather(
            *(client.run(process_event, {"project_id": 1, "event_data": e}, timeout=30) for e in events)
        )
        for result in results:
            print(result)
