"""1. Round trip: one no-op task spawned from a workflow and awaited, vs ``noop.delay().get()``.

Coda's round trips are timed inside the workflow (worker → supervisor → worker → supervisor →
worker), which is the path a workflow pays per step; Celery's are timed in the caller, which is
where a Celery user waits. ``coda-pinned`` runs the same with the supervisor and its workers on
one CPU (``taskset -c 0``), where no cross-core wake-up is paid.
"""

from __future__ import annotations

import logging
import os
import shutil
import time

from bench.scale import Scale
from bench.services import pin
from bench.stats import percentile
from bench.workloads.base import CELERY_RABBITMQ, CELERY_REDIS, CODA, CODA_PINNED, Figure, Services, Workload

__all__ = ["RoundTrip"]

logger = logging.getLogger(__name__)


class RoundTrip(Workload):
    number = 1
    name = "round_trip"
    title = "round trip: one task spawned from a workflow and awaited vs delay().get()"

    def figures(self, scale: Scale) -> list[Figure]:
        return [Figure("p50_ms", "p50", "ms"), Figure("p99_ms", "p99", "ms")]

    def sides(self, services: Services, repetition: int) -> list[str]:
        sides = [CODA]
        if shutil.which("taskset") is not None:
            sides.append(CODA_PINNED)
        return [*sides, *(s for s in (CELERY_REDIS, CELERY_RABBITMQ) if s in services.celery)]

    def measure(self, services: Services, side: str) -> dict[str, float]:
        n = services.scale.round_trips
        if side == CODA:
            samples = self._coda(services, n)
        elif side == CODA_PINNED:
            pids = [services.supervisor.proc.pid, *services.supervisor.worker_pids()]  # type: ignore[union-attr]
            allowed = ",".join(str(cpu) for cpu in sorted(os.sched_getaffinity(pids[0])))
            pin(pids, "0")
            try:
                samples = self._coda(services, n)
            finally:
                pin(pids, allowed)
        else:
            noop = services.celery[side].app.tasks["legacy.noop"]
            samples = []
            for _ in range(n):
                started = time.perf_counter_ns()
                noop.delay().get(timeout=30)
                samples.append((time.perf_counter_ns() - started) / 1e6)
        return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99)}

    @staticmethod
    def _coda(services: Services, n: int) -> list[float]:
        durations_ns = services.run(services.client.run("bench.round_trips", {"n": n}, timeout=300))
        return [d / 1e6 for d in durations_ns]
