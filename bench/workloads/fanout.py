"""4. Fan-out/fan-in: a workflow gathering W tasks vs a Celery ``chord`` of W tasks and a callback.

A chord needs a result backend that keeps group state, so Celery runs it on Redis only
(``rpc://`` cannot hold a chord).
"""

from __future__ import annotations

import statistics
import time

from celery import chord

from bench.scale import Scale
from bench.workloads.base import CELERY_REDIS, CODA, Figure, Services, Workload
from coda.client import Client

__all__ = ["FanOut"]


class FanOut(Workload):
    number = 4
    name = "fan_out"
    title = "fan-out/fan-in: tasks gathered in a workflow vs a Celery chord"

    def figures(self, scale: Scale) -> list[Figure]:
        return [Figure("wall_ms", f"{scale.fan_out_width} → 1 wall time", "ms")]

    def sides(self, services: Services, repetition: int) -> list[str]:
        return [CODA, *(s for s in (CELERY_REDIS,) if s in services.celery)]

    def measure(self, services: Services, side: str) -> dict[str, float]:
        width, runs = services.scale.fan_out_width, services.scale.fan_outs
        expected = sum(range(1, width + 1))
        if side == CODA:
            samples = services.run(_coda_samples(services.client, width, runs, expected))
        else:
            app = services.celery[side].app
            inc, collect = app.tasks["legacy.inc"], app.tasks["legacy.collect"]
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                count = chord(inc.s(i) for i in range(width))(collect.s()).get(timeout=120)
                samples.append((time.perf_counter() - started) * 1e3)
                assert count == width, count
        return {"wall_ms": statistics.median(samples)}


async def _coda_samples(client: Client, width: int, runs: int, expected: int) -> list[float]:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        total = await client.run("bench.fan_out", {"n": width}, timeout=120)
        samples.append((time.perf_counter() - started) * 1e3)
        assert total == expected, total
    return samples
