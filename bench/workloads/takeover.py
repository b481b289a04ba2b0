"""7. Queue takeover: N no-op tasks published to one Celery queue with ``delay()`` and collected,
consumed by ``coda supervisor --workers 2 --celery-app ... -Q queue`` vs ``celery worker -c 2``.

Runs only once the supervisor can consume a Celery queue (``coda.bridge.celery_in``, issue 5);
until then it says so rather than measure something else.
"""

from __future__ import annotations

import importlib.util
import time

from celery.result import ResultSet

from bench.scale import Scale
from bench.services import CeleryWorker, new_tag, redis_target, start_supervisor
from bench.workloads.base import CELERY_REDIS, CODA, Figure, Services, Workload

__all__ = ["Takeover"]

_PROBE_S = 20.0


class Takeover(Workload):
    number = 7
    name = "queue_takeover"
    title = "queue takeover: tasks/s from one Celery queue, coda supervisor --workers 2 vs celery worker -c 2"

    def figures(self, scale: Scale) -> list[Figure]:
        return [Figure("tasks_per_s", f"{scale.throughput_tasks:,} tasks", "tasks/s", higher_is_better=True)]

    def repetitions(self, scale: Scale) -> int:
        return scale.throughput_repetitions

    def sides(self, services: Services, repetition: int) -> list[str]:
        return [CODA, CELERY_REDIS]

    def unavailable(self, services: Services) -> str | None:
        if CELERY_REDIS in services.unavailable:
            return services.unavailable[CELERY_REDIS]
        if importlib.util.find_spec("coda.bridge") is None or not hasattr(importlib.import_module("coda.bridge"), "Takeover"):
            return "needs queue takeover (issue 5): coda supervisor cannot consume a Celery queue yet"
        # Takeover is under construction: one task through a fresh queue within a deadline tells
        # whether it works here.
        try:
            self._one(CODA, tasks=1, wait=_PROBE_S)
        except Exception as exc:
            return f"needs queue takeover (issue 5): one task through it did not finish within {_PROBE_S:g} s ({type(exc).__name__}: {exc})"
        return None

    def measure(self, services: Services, side: str) -> dict[str, float]:
        n = services.scale.throughput_tasks
        return {"tasks_per_s": n / self._one(side, n, wait=60)}

    @staticmethod
    def _one(side: str, tasks: int, wait: float) -> float:
        """Seconds to publish and collect ``tasks`` no-ops through ``side`` on a fresh queue (so
        that neither side sees the other's leftovers)."""
        target = redis_target(new_tag())
        client_side = CeleryWorker(target)
        if side == CODA:
            consumer = start_supervisor(
                args=["--celery-app", "bench.celery_app:app", "-Q", target.queue],
                apps=("bench.coda_app", "bench.celery_app"),
                env=target.env(),
            )
            stop = consumer.kill
        else:
            worker = CeleryWorker(target).start()
            stop = worker.stop
        try:
            noop = client_side.app.tasks["legacy.noop"]
            noop.delay().get(timeout=wait)  # the consumer is up
            started = time.perf_counter()
            done = len(ResultSet([noop.delay() for _ in range(tasks)]).get(timeout=wait + tasks * 0.05))
            elapsed = time.perf_counter() - started
            assert done == tasks, (done, tasks)
        finally:
            stop()
            client_side.stop()
        return elapsed
