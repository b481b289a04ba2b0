"""The Celery side of every workload: the same tasks on a Celery app (``shared=False``, so that
the bench process can hold one app per broker without their tasks mixing).

``make_app`` builds one app per broker for the bench process; the module-level :data:`app` is
what ``celery -A bench.celery_app worker`` loads, configured from ``CODA_BENCH_*`` variables that
the bench sets when it starts the worker, so each run has its own queue and key prefix.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from celery import Celery

__all__ = ["CeleryTarget", "app", "make_app"]


@dataclass(frozen=True)
class CeleryTarget:
    """Where one Celery side of the bench lives."""

    label: str  # "redis" or "rabbitmq"
    broker: str
    backend: str
    queue: str
    key_prefix: str  # Redis key prefix for broker and results ("" when not on Redis)

    def env(self) -> dict[str, str]:
        return {
            "CODA_BENCH_BROKER": self.broker,
            "CODA_BENCH_BACKEND": self.backend,
            "CODA_BENCH_QUEUE": self.queue,
            "CODA_BENCH_KEY_PREFIX": self.key_prefix,
        }

    @classmethod
    def from_env(cls) -> CeleryTarget:
        return cls(
            label="env",
            broker=os.environ.get("CODA_BENCH_BROKER", "redis://127.0.0.1:6379/0"),
            backend=os.environ.get("CODA_BENCH_BACKEND", "redis://127.0.0.1:6379/0"),
            queue=os.environ.get("CODA_BENCH_QUEUE", "coda-bench"),
            key_prefix=os.environ.get("CODA_BENCH_KEY_PREFIX", ""),
        )


def make_app(target: CeleryTarget) -> Celery:
    """A Celery app for ``target`` with the bench's tasks registered on it."""
    celery = Celery("bench", set_as_current=False)
    conf: dict[str, Any] = {
        "broker_url": target.broker,
        "result_backend": target.backend,
        "task_default_queue": target.queue,
        "broker_connection_retry_on_startup": True,
        "result_expires": 3600,
        "worker_hijack_root_logger": False,
    }
    if target.key_prefix:
        # Keeps this run's queues, bindings and results apart from anything else on the server.
        if target.broker.startswith("redis"):
            conf["broker_transport_options"] = {"global_keyprefix": target.key_prefix}
        if target.backend.startswith("redis"):
            conf["result_backend_transport_options"] = {"global_keyprefix": target.key_prefix}
    celery.conf.update(conf)

    # Named apart from the Coda tasks (bench.*): a bridge supervisor that knows both must send
    # these to Celery, not run the Coda twin.
    @celery.task(name="legacy.noop", shared=False)
    def noop() -> None:
        return None

    @celery.task(name="legacy.inc", shared=False)
    def inc(x: int) -> int:
        return x + 1

    @celery.task(name="legacy.collect", shared=False)
    def collect(results: list[Any]) -> int:
        return len(results)

    @celery.task(name="legacy.sleep_ms", shared=False)
    def sleep_ms(ms: float, step: int) -> int:
        time.sleep(ms / 1000)
        return step

    return celery


app = make_app(CeleryTarget.from_env())
