"""Sentry's "processing store": the event payload in Redis under ``e:{event_id}:{project_id}``
for 24 hours, so that tasks pass only the key between them."""

from __future__ import annotations

import json
import os
from typing import Any

import redis

TTL = 24 * 3600
_client = redis.Redis.from_url(os.environ.get("PIPELINE_REDIS_URL", "redis://127.0.0.1:6379/0"))


def cache_key(event_id: str, project_id: int) -> str:
    return f"{os.environ.get('PIPELINE_STORE_PREFIX', '')}e:{event_id}:{project_id}"


def put(data: dict[str, Any], project_id: int) -> str:
    key = cache_key(data["event_id"], project_id)
    # A redelivered event must not put the raw payload back under a copy already in flight (a
    # later stage would read it un-preprocessed); it follows the stored one instead.
    _client.set(key, json.dumps(data), ex=TTL, nx=True)
    return key


def get(key: str) -> dict[str, Any] | None:
    raw = _client.get(key)
    return None if raw is None else json.loads(raw)  # type: ignore[arg-type]


def set(key: str, data: dict[str, Any]) -> None:  # noqa: A001 - the store's verb
    _client.set(key, json.dumps(data), ex=TTL)


def delete(key: str) -> None:
    _client.delete(key)
