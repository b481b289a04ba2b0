"""2. A 3-step workflow (each step awaits the last) vs a Celery ``chain`` of the same three tasks,
both timed by the caller from start to result."""

from __future__ import annotations

import time

from celery import chain

from bench.scale import Scale
from bench.stats import percentile
from bench.workloads.base import CODA, Figure, Services, Workload
from coda.client import Client

__all__ = ["Chain"]


class Chain(Workload):
    number = 2
    name = "chain"
    title = "3-step workflow vs a Celery chain of three tasks"

    def figures(self, scale: Scale) -> list[Figure]:
        return [Figure("p50_ms", "p50", "ms"), Figure("p99_ms", "p99", "ms")]

    def measure(self, services: Services, side: str) -> dict[str, float]:
        n = services.scale.chains
        samples: list[float] = []
        if side == CODA:
            samples = services.run(_coda_samples(services.client, n))
        else:
            inc = services.celery[side].app.tasks["legacy.inc"]
            for i in range(n):
                started = time.perf_counter_ns()
                result = chain(inc.s(i), inc.s(), inc.s()).apply_async().get(timeout=30)
                samples.append((time.perf_counter_ns() - started) / 1e6)
                assert result == i + 3, result
        return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99)}


async def _coda_samples(client: Client, n: int) -> list[float]:
    samples = []
    for i in range(n):
        started = time.perf_counter_ns()
        result = await client.run("bench.three_step", {"x": i}, timeout=30)
        samples.append((time.perf_counter_ns() - started) / 1e6)
        assert result == i + 3, result
    return samples
