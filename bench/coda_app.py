"""The Coda side of every workload: the tasks and workflows the bench supervisor imports (``-A bench.coda_app``).

Tasks are no-ops unless a workload says otherwise. The no-ops are ``async def`` because that is
how a Coda task that does no blocking work is written; ``sleep_ms`` is a plain ``def`` that
blocks, as legacy work does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import coda
from coda.errors import CodaError

__all__ = [
    "FirstAttemptDone",
    "fan_out",
    "inc",
    "memo_steps",
    "noop",
    "one_task",
    "round_trips",
    "sleep_ms",
    "three_step",
    "throughput",
]


class FirstAttemptDone(CodaError):
    """Raised at the end of a memo workflow's first attempt, so that it can be rerun."""


@coda.task(name="bench.noop")
async def noop() -> None:
    return None


@coda.task(name="bench.inc")
async def inc(x: int) -> int:
    return x + 1


@coda.task(name="bench.sleep_ms")
def sleep_ms(ms: float, step: int) -> int:
    time.sleep(ms / 1000)
    return step


@coda.workflow(name="bench.round_trips")
async def round_trips(n: int) -> list[int]:
    """Spawn and await one no-op task ``n`` times; each round trip's duration in nanoseconds,
    timed inside the workflow so that the client's own connection is not part of it."""
    durations = []
    for _ in range(n):
        started = time.perf_counter_ns()
        await coda.context.spawn_task(noop)
        durations.append(time.perf_counter_ns() - started)
    return durations


@coda.workflow(name="bench.three_step")
async def three_step(x: int) -> int:
    a = await coda.context.spawn_task(inc, args={"x": x})
    b = await coda.context.spawn_task(inc, args={"x": a})
    return await coda.context.spawn_task(inc, args={"x": b})  # type: ignore[no-any-return]


@coda.workflow(name="bench.throughput")
async def throughput(n: int) -> int:
    results = await asyncio.gather(*(coda.context.spawn_task(noop) for _ in range(n)))
    return len(results)


@coda.workflow(name="bench.fan_out")
async def fan_out(n: int) -> int:
    results = await asyncio.gather(*(coda.context.spawn_task(inc, args={"x": i}) for i in range(n)))
    return sum(results)


@coda.workflow(name="bench.memo_steps")
async def memo_steps(n: int, ms: float) -> int:
    """``n`` memoized steps one after another; the first attempt fails after the last step so
    that ``Client.rerun`` replays the run under the same run id, from its memo."""
    for step in range(n):
        await coda.context.spawn_task(sleep_ms, args={"ms": ms, "step": step}, cache_key=["step", step])
    if coda.context.attempt == 1:
        raise FirstAttemptDone("first attempt finished its steps")
    return n


@coda.workflow(name="bench.one_task")
async def one_task(i: int) -> Any:
    """A minimal finished run that leaves a memo entry behind (the memory workload)."""
    return await coda.context.spawn_task(inc, args={"x": i}, cache_key=[i])
