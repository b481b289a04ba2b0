"""Fixtures for the bridge: real ``celery worker`` subprocesses and a real ``coda supervisor``
with ``--celery-app``, configured through the environment of ``tests.bridge.celery_app``."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis

from coda.testing import CeleryWorkerProcess, SupervisorProcess

CELERY_APP = "tests.bridge.celery_app"
CODA_APPS = ["tests.bridge.app"]
REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass
class Legacy:
    """One test's Celery setup: broker, backend, queue, Redis counters, workers, supervisor."""

    env: dict[str, str]
    queue: str
    prefix: str
    counter_url: str
    start_supervisor: Callable[..., SupervisorProcess]
    workers: list[CeleryWorkerProcess] = field(default_factory=list)

    def worker(self, name: str = "w1", concurrency: int = 1) -> CeleryWorkerProcess:
        worker = CeleryWorkerProcess(CELERY_APP, [self.queue], concurrency=concurrency, name=f"{name}-{self.prefix}",
                                     env=self.env, startup_timeout=30.0)
        self.workers.append(worker)
        return worker.start()

    def supervisor(self, workers: int = 2, **env: str) -> SupervisorProcess:
        return self.start_supervisor(CODA_APPS, workers=workers, args=["--celery-app", f"{CELERY_APP}:app"],
                                     env={**self.env, **env})

    def count(self, name: str, key: str) -> int:
        value = redis.Redis.from_url(self.counter_url).get(f"{self.prefix}:{name}:{key}")
        return 0 if value is None else int(value)

    def set_flag(self, key: str, on: bool) -> None:
        client = redis.Redis.from_url(self.counter_url)
        if on:
            client.set(f"{self.prefix}:flag:{key}", 1)
        else:
            client.delete(f"{self.prefix}:flag:{key}")

    def get(self, key: str) -> Any:
        return redis.Redis.from_url(self.counter_url).get(f"{self.prefix}:{key}")


@pytest.fixture
def legacy_factory(run_tag: str, coda_supervisor_factory: Callable[..., SupervisorProcess]) -> Iterator[Callable[..., Legacy]]:
    """``legacy_factory(broker, backend, hook=True, counter_url=..., **env)`` → a :class:`Legacy`."""
    made: list[Legacy] = []

    def make(broker: str, backend: str | None, hook: bool = True, counter_url: str = REDIS_URL, **extra: str) -> Legacy:
        queue = f"coda-bridge-{run_tag}"
        env = {
            **os.environ,
            "CODA_BRIDGE_BROKER": broker,
            "CODA_BRIDGE_BACKEND": backend or "",
            "CODA_BRIDGE_QUEUE": queue,
            "CODA_BRIDGE_PREFIX": run_tag,
            "CODA_BRIDGE_REDIS": counter_url,
            "CODA_BRIDGE_HOOK": "1" if hook else "0",
            "CODA_LOG_LEVEL": "WARNING",
            **extra,
        }
        legacy = Legacy(env, queue, run_tag, counter_url, coda_supervisor_factory)
        made.append(legacy)
        return legacy

    yield make
    for legacy in made:
        for worker in legacy.workers:
            worker.stop()
            os.unlink(worker.log_path)
