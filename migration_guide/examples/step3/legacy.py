"""The stages still owned by Celery workers (say, another team's). They take and return the
event now instead of a processing-store key: the workflow carries the payload."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from migration_guide.examples import domain

from .celery_app import app  # noqa: F401 - the app shared tasks bind to


@shared_task(name="pipeline.legacy.symbolicate_event", bind=True, max_retries=5, default_retry_delay=0.2)
def symbolicate_event(self, data: dict[str, Any]) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    try:
        return domain.symbolicate(data)
    except domain.SymbolicatorUnavailable as exc:
        raise self.retry(exc=exc)


@shared_task(name="pipeline.legacy.save_event")
def save_event(data: dict[str, Any]) -> bool:
    domain.record_call("save", data["event_id"])
    return domain.save(data)
