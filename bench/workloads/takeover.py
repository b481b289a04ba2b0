"""7. Queue takeover: N no-op tasks on one Celery queue, consumed by ``coda supervisor --workers 2
--celery-app ... -Q queue`` vs ``celery worker -c 2``.

Two figures, both timed to the moment the consumer stored the last result (the ``date_done``
its process wrote to the result backend), not to when the bench process had collected them all:
collecting 10,000 results is Celery client code that is the same for both sides, and its cost
depends on how many results are already there when it starts, so timing it measured the
collector more than the consumer (a consumer that finished sooner made the collector slower).

- ``backlog``: the consumer is started and warm, then stopped (SIGSTOP) while N messages are
  published, then let go: the tasks/s of draining a backlog.
- ``live``: N ``delay()`` calls while the consumer runs, from the first publish: the tasks/s of
  keeping up with a publisher on the same two cores.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime

import redis
from celery.result import ResultSet

from bench.rss import descendants
from bench.scale import Scale
from bench.services import REDIS_URL, CeleryWorker, new_tag, redis_target, start_supervisor
from bench.workloads.base import CELERY_REDIS, CODA, Figure, Services, Workload

__all__ = ["Takeover"]

_PROBE_S = 20.0


class Takeover(Workload):
    number = 7
    name = "queue_takeover"
    title = "queue takeover: tasks/s from one Celery queue, coda supervisor --workers 2 vs celery worker -c 2"

    def figures(self, scale: Scale) -> list[Figure]:
        n = f"{scale.throughput_tasks:,}"
        return [
            Figure("backlog_tasks_per_s", f"{n}-message backlog drained", "tasks/s", higher_is_better=True),
            Figure("live_tasks_per_s", f"{n} delay()s while consuming", "tasks/s", higher_is_better=True),
        ]

    def repetitions(self, scale: Scale) -> int:
        return scale.throughput_repetitions

    def sides(self, services: Services, repetition: int) -> list[str]:
        return [CODA, CELERY_REDIS]

    def unavailable(self, services: Services) -> str | None:
        if CELERY_REDIS in services.unavailable:
            return services.unavailable[CELERY_REDIS]
        if importlib.util.find_spec("coda.bridge") is None or not hasattr(importlib.import_module("coda.bridge"), "Takeover"):
            return "needs queue takeover (issue 5): coda supervisor cannot consume a Celery queue yet"
        # One task through a fresh queue within a deadline tells whether takeover works here.
        try:
            self._one(CODA, tasks=1, backlog=False, wait=_PROBE_S)
        except Exception as exc:
            return f"needs queue takeover (issue 5): one task through it did not finish within {_PROBE_S:g} s ({type(exc).__name__}: {exc})"
        return None

    def measure(self, services: Services, side: str) -> dict[str, float]:
        n = services.scale.throughput_tasks
        return {
            "backlog_tasks_per_s": n / self._one(side, n, backlog=True, wait=60),
            "live_tasks_per_s": n / self._one(side, n, backlog=False, wait=60),
        }

    @staticmethod
    def _one(side: str, tasks: int, backlog: bool, wait: float) -> float:
        """Seconds from the start (publishing, or releasing the backlog) to the last result
        stored, for ``tasks`` no-ops through ``side`` on a fresh queue (so that neither side
        sees the other's leftovers)."""
        target = redis_target(new_tag())
        client_side = CeleryWorker(target)
        pids: Callable[[], list[int]]
        if side == CODA:
            consumer = start_supervisor(
                args=["--celery-app", "bench.celery_app:app", "-Q", target.queue],
                apps=("bench.coda_app", "bench.celery_app"),
                env=target.env(),
            )
            assert consumer.proc is not None
            root = consumer.proc.pid
            pids = lambda: [root, *descendants(root)]  # noqa: E731
            stop = consumer.kill
        else:
            worker = CeleryWorker(target).start()
            pids = worker.pids
            stop = worker.stop
        stopped: list[int] = []
        try:
            noop = client_side.app.tasks["legacy.noop"]
            noop.delay().get(timeout=wait)  # the consumer is up and warm
            if backlog:
                stopped = pids()
                _signal(stopped, signal.SIGSTOP)
                results = [noop.delay() for _ in range(tasks)]
                started = time.time()
                _signal(stopped, signal.SIGCONT)
                stopped = []
            else:
                started = time.time()
                results = [noop.delay() for _ in range(tasks)]
            done = len(ResultSet(results).get(timeout=wait + tasks * 0.05))
            assert done == tasks, (done, tasks)
            return _last_stored(target.key_prefix, [r.id for r in results]) - started
        finally:
            _signal(stopped, signal.SIGCONT)
            stop()
            client_side.stop()


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _last_stored(key_prefix: str, task_ids: list[str]) -> float:
    """When the last of ``task_ids`` was stored: the latest ``date_done`` in the result backend."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        latest = 0.0
        for start in range(0, len(task_ids), 1000):
            keys = [f"{key_prefix}celery-task-meta-{task_id}" for task_id in task_ids[start:start + 1000]]
            for raw in client.mget(keys):
                if raw is None:
                    raise RuntimeError("a collected result is missing from the backend")
                latest = max(latest, datetime.fromisoformat(json.loads(raw)["date_done"]).timestamp())
        return latest
    finally:
        client.close()
