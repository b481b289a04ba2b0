"""5. Memoized rerun: a workflow of N steps that each sleep 10 ms, run once, then rerun under the
same run id; every step of the rerun is a memo hit. The first attempt fails after its last step
(``FirstAttemptDone``) because ``Client.rerun`` replays failed runs."""

from __future__ import annotations

import time

from bench.scale import Scale
from bench.workloads.base import CODA, Figure, Services, Workload
from coda.client import Client
from coda.errors import WorkflowFailed

__all__ = ["MemoRerun"]


class MemoRerun(Workload):
    number = 5
    name = "memo_rerun"
    title = "memoized rerun: a workflow of sleeping steps, run once, then rerun from its memo"

    def figures(self, scale: Scale) -> list[Figure]:
        steps = f"{scale.memo_steps} × {scale.memo_step_ms:g} ms"
        return [Figure("first_run_ms", f"first run ({steps})", "ms"), Figure("rerun_ms", "rerun", "ms")]

    def sides(self, services: Services, repetition: int) -> list[str]:
        return [CODA]  # Celery has nothing to compare: it keeps no results to rerun from

    def measure(self, services: Services, side: str) -> dict[str, float]:
        first, rerun = services.run(_first_and_rerun(services.client, services.scale.memo_steps, services.scale.memo_step_ms))
        return {"first_run_ms": first, "rerun_ms": rerun}


async def _first_and_rerun(client: Client, steps: int, ms: float) -> tuple[float, float]:
    started = time.perf_counter()
    handle = await client.start("bench.memo_steps", {"n": steps, "ms": ms})
    try:
        await handle.result(timeout=600)
    except WorkflowFailed as exc:
        if not exc.exc_type.endswith("FirstAttemptDone"):
            raise
    else:
        raise AssertionError("the first attempt of bench.memo_steps should have failed")
    first = time.perf_counter() - started
    started = time.perf_counter()
    rerun = await client.rerun(handle.run_id)
    result = await rerun.result(timeout=600)
    second = time.perf_counter() - started
    assert result == steps, result
    status = await client.status(handle.run_id)
    # The rerun is only a memo replay if no step ran twice.
    assert status.tasks["executed"] == steps, status.tasks
    return first * 1e3, second * 1e3
