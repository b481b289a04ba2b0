"""6. Bridge: a legacy Celery task spawned from a workflow (published through kombu, run by a
stock ``celery worker -c 2`` on Redis) vs its own ``delay().get()`` on the same worker.

Runs only once Coda can spawn a plain Celery task (``coda.bridge``); until then it says why.
"""

from __future__ import annotations

import time

from bench.scale import Scale
from bench.services import CeleryWorker, new_tag, redis_target, start_supervisor
from bench.stats import percentile
from bench.workloads.base import CELERY_REDIS, CODA, Figure, Services, Workload
from coda.registry import task_name_of
from coda.supervisor.launcher import SupervisorProcess

__all__ = ["Bridge"]

_PROBE_S = 20.0


class Bridge(Workload):
    number = 6
    name = "bridge"
    title = "bridge: a legacy Celery task spawned from a workflow vs its own delay().get()"

    def __init__(self) -> None:
        self._worker: CeleryWorker | None = None
        self._supervisor: SupervisorProcess | None = None

    def figures(self, scale: Scale) -> list[Figure]:
        return [Figure("p50_ms", "p50", "ms"), Figure("p99_ms", "p99", "ms")]

    def sides(self, services: Services, repetition: int) -> list[str]:
        return [CODA, CELERY_REDIS]

    def unavailable(self, services: Services) -> str | None:
        if CELERY_REDIS in services.unavailable:
            return services.unavailable[CELERY_REDIS]
        from bench.celery_app import app  # the bench process needs Celery anyway; the probe is cheap

        try:
            task_name_of(app.tasks["legacy.noop"])
        except TypeError as exc:
            return f"needs the bridge (coda.bridge): a workflow cannot spawn a plain Celery task yet ({exc})"
        # The bridge is under construction: one spawn within a deadline tells whether it works here.
        try:
            _, supervisor = self._start()
            client = supervisor.client()
            try:
                services.run(client.run("bench.bridge_round_trips", {"n": 1}, timeout=_PROBE_S))
            finally:
                services.run(client.close())
        except Exception as exc:
            self.close()
            return f"the bridge did not run a Celery task from a workflow within {_PROBE_S:g} s ({type(exc).__name__}: {exc})"
        return None

    def measure(self, services: Services, side: str) -> dict[str, float]:
        worker, supervisor = self._start()
        n = services.scale.round_trips
        if side == CODA:
            client = supervisor.client()
            durations = services.run(client.run("bench.bridge_round_trips", {"n": n}, timeout=30 + n * 0.1))
            services.run(client.close())
            samples = [d / 1e6 for d in durations]
        else:
            noop = worker.app.tasks["legacy.noop"]
            samples = []
            for _ in range(n):
                started = time.perf_counter_ns()
                noop.delay().get(timeout=30)
                samples.append((time.perf_counter_ns() - started) / 1e6)
        return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99)}

    def _start(self) -> tuple[CeleryWorker, SupervisorProcess]:
        if self._worker is None or self._supervisor is None:
            target = redis_target(new_tag())
            self._worker = CeleryWorker(target).start()
            self._supervisor = start_supervisor(
                args=["--celery-app", "bench.celery_app:app"],
                apps=("bench.coda_app", "bench.bridge_app"),
                env=target.env(),
            )
        return self._worker, self._supervisor

    def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.kill()
        if self._worker is not None:
            self._worker.stop()
        self._worker = self._supervisor = None
