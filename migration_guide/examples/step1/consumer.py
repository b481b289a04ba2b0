"""The ingest consumer: store the payload, start the chain with the key.

``python -m migration_guide.examples.step1.consumer`` feeds the acceptance batch: every event,
one of them twice, and one whose payload is already gone from the processing store.
"""

from __future__ import annotations

import time
from typing import Any

from migration_guide.examples import events
from . import store
from .tasks import preprocess_event


def ingest(event: dict[str, Any], project_id: int) -> None:
    key = store.put(event, project_id)
    preprocess_event.delay(cache_key=key, event_id=event["event_id"], project_id=project_id, start_time=time.time())


def main() -> None:
    for event in [*events.EVENTS, events.DUPLICATE]:
        ingest(event, events.PROJECT_ID)
    missing = store.cache_key(events.MISSING_ID, events.PROJECT_ID)
    preprocess_event.delay(cache_key=missing, event_id=events.MISSING_ID, project_id=events.PROJECT_ID)


if __name__ == "__main__":
    main()
