"""Latency of a legacy task spawned from a workflow next to a direct ``delay().get()`` of the
same task on the same broker, worker and result backend, measured in one run. Not a test:

    python -m tests.bridge.latency [redis|amqp] [redis|rpc] [n]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
import uuid

BROKERS = {"redis": "redis://127.0.0.1:6379/0", "amqp": "amqp://guest:guest@127.0.0.1:5672//"}
BACKENDS = {"redis": "redis://127.0.0.1:6379/0", "rpc": "rpc://"}


def main() -> None:
    broker, backend = (sys.argv[1:3] + ["redis", "redis"][len(sys.argv[1:3]):])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 300
    tag = f"lat-{uuid.uuid4().hex[:6]}"
    os.environ.update({"CODA_BRIDGE_BROKER": BROKERS[broker], "CODA_BRIDGE_BACKEND": BACKENDS[backend],
                       "CODA_BRIDGE_QUEUE": tag, "CODA_BRIDGE_PREFIX": tag, "CODA_LOG_LEVEL": "WARNING"})
    from coda.testing import CeleryWorkerProcess, SupervisorProcess
    from tests.bridge import app
    from tests.bridge.celery_app import echo
    from tests.bridge.conftest import CELERY_APP, CODA_APPS

    worker = CeleryWorkerProcess(CELERY_APP, [tag], name=f"w-{tag}").start()
    sup = SupervisorProcess(CODA_APPS, workers=1, args=["--celery-app", f"{CELERY_APP}:app", "--log-level", "WARNING"])
    try:
        sup.start()

        async def via_workflow() -> list[float]:
            async with sup.client() as client:
                await client.run(app.timed_echo, {"n": 20}, timeout=60)  # warm up
                return await client.run(app.timed_echo, {"n": n}, timeout=300)  # type: ignore[no-any-return]

        bridged = asyncio.run(via_workflow())
        for i in range(20):
            echo.delay(i).get(timeout=10)
        direct = []
        for i in range(n):
            started = time.perf_counter()
            assert echo.delay(i).get(timeout=10) == i
            direct.append(time.perf_counter() - started)
        print(f"broker={broker} backend={backend} n={n} worker: prefork -c 1")
        print(f"  delay().get()            median {statistics.median(direct) * 1e3:.2f} ms")
        print(f"  spawn_task from workflow median {statistics.median(bridged) * 1e3:.2f} ms")
    finally:
        sup.kill()
        worker.stop()


if __name__ == "__main__":
    main()
