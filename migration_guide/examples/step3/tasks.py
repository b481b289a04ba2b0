"""The migrated stages: still Celery tasks (coda.compat), now taking and returning the event,
run on Coda workers when a workflow spawns them."""

from __future__ import annotations

import logging
from typing import Any

from coda.compat import task
from migration_guide.examples import domain

logger = logging.getLogger(__name__)


@task(name="pipeline.preprocess_event")
def preprocess_event(data: dict[str, Any], project_id: int) -> dict[str, Any]:
    domain.record_call("preprocess", data["event_id"])
    return domain.normalize(data, project_id)


@task(name="pipeline.process_event", time_limit=65)
def process_event(data: dict[str, Any]) -> dict[str, Any]:
    domain.record_call("process", data["event_id"])
    return domain.enrich(data)


@task(name="pipeline.drop_event")
def drop_event(event_id: str, reason: str) -> None:
    domain.record_call("dropped", event_id)
    logger.warning("pipeline.dropped: %s (%s)", event_id, reason)
