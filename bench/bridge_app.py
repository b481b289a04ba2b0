"""The bridge workload's workflow: a plain Celery task spawned from a Coda workflow. Only the
bridge supervisor imports this module, so that the other bench workers never load Celery (which
would inflate their memory figures)."""

from __future__ import annotations

import time

import coda
from bench.celery_app import app

__all__ = ["bridge_round_trips", "legacy_noop"]

legacy_noop = app.tasks["legacy.noop"]


@coda.workflow(name="bench.bridge_round_trips")
async def bridge_round_trips(n: int) -> list[int]:
    """Spawn the legacy no-op through the bridge and await it ``n`` times; durations in ns."""
    durations = []
    for _ in range(n):
        started = time.perf_counter_ns()
        await coda.context.spawn_task(legacy_noop)
        durations.append(time.perf_counter_ns() - started)
    return durations
