"""3. Throughput: N no-op tasks with results. Coda: one workflow spawns all N and gathers them,
on 2 workers; Celery: N ``delay()`` calls, then every result (a native join), on ``-c 2``."""

from __future__ import annotations

import time

from celery.result import ResultSet

from bench.scale import Scale
from bench.workloads.base import CODA, Figure, Services, Workload

__all__ = ["Throughput"]


class Throughput(Workload):
    number = 3
    name = "throughput"
    title = "throughput: no-op tasks with results, Coda 2 workers vs celery -c 2"

    def figures(self, scale: Scale) -> list[Figure]:
        return [Figure("tasks_per_s", f"{scale.throughput_tasks:,} tasks", "tasks/s", higher_is_better=True)]

    def repetitions(self, scale: Scale) -> int:
        return scale.throughput_repetitions

    def measure(self, services: Services, side: str) -> dict[str, float]:
        n = services.scale.throughput_tasks
        started = time.perf_counter()
        if side == CODA:
            done = services.run(services.client.run("bench.throughput", {"n": n}, timeout=600))
        else:
            noop = services.celery[side].app.tasks["legacy.noop"]
            results = ResultSet([noop.delay() for _ in range(n)])
            done = len(results.get(timeout=600))
        elapsed = time.perf_counter() - started
        assert done == n, (done, n)
        return {"tasks_per_s": n / elapsed}
