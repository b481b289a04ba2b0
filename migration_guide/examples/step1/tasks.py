"""preprocess → symbolicate (per platform) → process → save, each re-reading the payload from
the processing store by key, writing it back if it changed, dropping the event if it is gone."""

from __future__ import annotations

import logging
import time

from coda.compat import task
from migration_guide.examples import domain
from . import store
from .celery_app import app  # noqa: F401 - the app shared tasks bind to

logger = logging.getLogger(__name__)


def _dropped(stage: str, cache_key: str, event_id: str) -> None:
    domain.record_call("dropped", event_id)
    logger.warning("pipeline.%s.payload_missing: %s (event %s dropped)", stage, cache_key, event_id)


@task(name="pipeline.preprocess_event")
def preprocess_event(cache_key: str, event_id: str, project_id: int, start_time: float | None = None) -> None:
    domain.record_call("preprocess", event_id)
    data = store.get(cache_key)
    if data is None:
        return _dropped("preprocess", cache_key, event_id)
    data = domain.normalize(data, project_id)
    store.set(cache_key, data)
    following = symbolicate_event if domain.needs_symbolication(data) else process_event
    following.delay(cache_key=cache_key, event_id=event_id, project_id=project_id, start_time=start_time)


@task(name="pipeline.symbolicate_event", bind=True, max_retries=5, default_retry_delay=0.2)
def symbolicate_event(self, cache_key: str, event_id: str, project_id: int, start_time: float | None = None) -> None:  # type: ignore[no-untyped-def]
    data = store.get(cache_key)
    if data is None:
        return _dropped("symbolicate", cache_key, event_id)
    try:
        data = domain.symbolicate(data)
    except domain.SymbolicatorUnavailable as exc:
        raise self.retry(exc=exc)
    store.set(cache_key, data)
    process_event.delay(cache_key=cache_key, event_id=event_id, project_id=project_id, start_time=start_time)


@task(name="pipeline.process_event", time_limit=65, soft_time_limit=60)
def process_event(cache_key: str, event_id: str, project_id: int, start_time: float | None = None) -> None:
    domain.record_call("process", event_id)
    data = store.get(cache_key)
    if data is None:
        return _dropped("process", cache_key, event_id)
    store.set(cache_key, domain.enrich(data))
    save_event.delay(cache_key=cache_key, event_id=event_id, project_id=project_id, start_time=start_time)


@task(name="pipeline.save_event")
def save_event(cache_key: str, event_id: str, project_id: int, start_time: float | None = None) -> None:
    domain.record_call("save", event_id)
    data = store.get(cache_key)
    if data is None:
        return _dropped("save", cache_key, event_id)
    domain.save(data)
    store.delete(cache_key)
    if start_time is not None:
        logger.info("pipeline.saved: %s in %.3fs", event_id, time.time() - start_time)

