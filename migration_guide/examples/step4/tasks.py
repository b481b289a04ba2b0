"""The stages as Coda tasks: data in, data out. No processing store: the payload travels as
each task's memoized result."""

from __future__ import annotations

import logging
from typing import Any

import coda
from migration_guide.examples import domain

logger = logging.getLogger(__name__)


@coda.task(name="pipeline.preprocess_event")
def preprocess_event(data: dict[str, Any], project_id: int) -> dict[str, Any]:
    domain.record_call("preprocess", data["event_id"])
    return domain.normalize(data, project_id)


@coda.task(name="pipeline.symbolicate_event", retry_on=(domain.SymbolicatorUnavailable,),
           max_retries=5, retry_delay=0.2)
def symbolicate_event(data: dict[str, Any]) -> dict[str, Any]:
    return domain.symbolicate(data)


@coda.task(name="pipeline.process_event", timeout=65)
def process_event(data: dict[str, Any]) -> dict[str, Any]:
    domain.record_call("process", data["event_id"])
    return domain.enrich(data)


@coda.task(name="pipeline.save_event")
def save_event(data: dict[str, Any]) -> bool:
    domain.record_call("save", data["event_id"])
    return domain.save(data)


@coda.task(name="pipeline.drop_event")
def drop_event(event_id: str, reason: str) -> None:
    domain.record_call("dropped", event_id)
    logger.warning("pipeline.dropped: %s (%s)", event_id, reason)
