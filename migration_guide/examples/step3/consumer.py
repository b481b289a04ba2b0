"""The ingest consumer: one workflow run per event, its run id the event's key — so a
duplicate delivery finds the run already there and nothing runs twice.

``python -m migration_guide.examples.step3.consumer`` feeds the acceptance batch to the
supervisor at ``$CODA_URL``.
"""

from __future__ import annotations

from typing import Any

import coda
from migration_guide.examples import events

from .workflows import ingest_event


def ingest(client: coda.SyncClient, event: dict[str, Any] | None, event_id: str, project_id: int) -> coda.SyncRunHandle:
    return client.start(ingest_event, {"event": event, "event_id": event_id, "project_id": project_id},
                        run_id=f"event-{event_id}-{project_id}")


def main() -> None:
    with coda.SyncClient() as client:
        runs = [ingest(client, e, e["event_id"], events.PROJECT_ID) for e in [*events.EVENTS, events.DUPLICATE]]
        runs.append(ingest(client, None, events.MISSING_ID, events.PROJECT_ID))
        for run in runs:
            run.result(timeout=120)


if __name__ == "__main__":
    main()
