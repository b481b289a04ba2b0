"""8. Memory. Idle: resident memory summed over every process of a freshly started side (the
supervisor and its 2 workers; ``celery worker -c 2`` and its pool), after a few warm-up tasks.
Summed RSS counts pages shared after fork once per process, so the proportional set size (PSS)
is shown too. Runs: the supervisor's own RSS after a small and a large number of finished
workflows, with its default retention settings."""

from __future__ import annotations

import asyncio
import time

from bench.rss import descendants, rss_bytes
from bench.scale import Scale
from bench.services import CeleryWorker, new_tag, rabbitmq_target, redis_target, start_supervisor
from bench.workloads.base import CELERY_RABBITMQ, CELERY_REDIS, CODA, CODA_RUNS, Figure, Services, Workload
from coda.client import Client

__all__ = ["Memory"]

MIB = 2**20
_WARM_UP = 20
_SETTLE_S = 1.0
_IN_FLIGHT = 200


def _pss_bytes(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def _idle(pids: list[int]) -> dict[str, float]:
    return {
        "idle_rss_mib": sum(rss_bytes(p) for p in pids) / MIB,
        "idle_pss_mib": sum(_pss_bytes(p) for p in pids) / MIB,
        "processes": float(len(pids)),
    }


class Memory(Workload):
    number = 8
    name = "memory"
    title = "memory: idle RSS of all processes, and supervisor RSS after many finished runs"

    def figures(self, scale: Scale) -> list[Figure]:
        return [
            Figure("idle_rss_mib", "idle RSS, all processes", "MiB"),
            Figure("idle_pss_mib", "idle PSS, all processes", "MiB"),
            Figure("processes", "processes", "", compare=False),
            Figure("rss_after_small_mib", f"supervisor RSS after {scale.memory_small_runs:,} runs", "MiB"),
            Figure("rss_after_large_mib", f"supervisor RSS after {scale.memory_large_runs:,} runs", "MiB"),
            Figure("runs_per_s", "finished runs/s while filling", "runs/s", higher_is_better=True),
        ]

    def repetitions(self, scale: Scale) -> int:
        return scale.memory_repetitions

    def sides(self, services: Services, repetition: int) -> list[str]:
        sides = [CODA, *(s for s in (CELERY_REDIS, CELERY_RABBITMQ) if s in services.celery)]
        return [*sides, CODA_RUNS] if repetition == 0 else sides  # the long fill runs once

    def measure(self, services: Services, side: str) -> dict[str, float]:
        if side == CODA:
            supervisor = start_supervisor()
            try:
                services.run(_warm_coda(supervisor.client()))
                time.sleep(_SETTLE_S)
                assert supervisor.proc is not None
                return _idle([supervisor.proc.pid, *descendants(supervisor.proc.pid)])
            finally:
                supervisor.kill()
        if side == CODA_RUNS:
            return self._runs(services)
        target = (redis_target if side == CELERY_REDIS else rabbitmq_target)(new_tag())
        worker = CeleryWorker(target).start()
        try:
            noop = worker.app.tasks["legacy.noop"]
            for _ in range(_WARM_UP):
                noop.delay().get(timeout=30)
            time.sleep(_SETTLE_S)
            return _idle(worker.pids())
        finally:
            worker.stop()

    def _runs(self, services: Services) -> dict[str, float]:
        scale = services.scale
        supervisor = start_supervisor()
        try:
            assert supervisor.proc is not None
            pid = supervisor.proc.pid
            client = supervisor.client()
            services.run(_fill(client, 0, scale.memory_small_runs))
            time.sleep(_SETTLE_S)
            small = rss_bytes(pid)
            started = time.perf_counter()
            services.run(_fill(client, scale.memory_small_runs, scale.memory_large_runs))
            rate = (scale.memory_large_runs - scale.memory_small_runs) / (time.perf_counter() - started)
            time.sleep(_SETTLE_S)
            large = rss_bytes(pid)
            services.run(client.close())
        finally:
            supervisor.kill()
        return {"rss_after_small_mib": small / MIB, "rss_after_large_mib": large / MIB, "runs_per_s": rate}


async def _warm_coda(client: Client) -> None:
    for i in range(_WARM_UP):
        await client.run("bench.one_task", {"i": i}, timeout=30)
    await client.close()


async def _fill(client: Client, start: int, stop: int) -> None:
    """Finish runs ``start`` .. ``stop - 1`` of ``bench.one_task``, ``_IN_FLIGHT`` at a time."""
    numbers = iter(range(start, stop))

    async def lane() -> None:
        for i in numbers:
            assert await client.run("bench.one_task", {"i": i}, timeout=120) == i + 1

    await asyncio.gather(*(lane() for _ in range(_IN_FLIGHT)))
