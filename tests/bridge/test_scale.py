"""Many mixed workflows at once: nothing lost, nothing run twice."""

from __future__ import annotations

import asyncio

import redis

from tests.bridge import app

N = 200


async def test_200_concurrent_mixed_workflows(legacy_factory, redis_url) -> None:
    legacy = legacy_factory(redis_url, redis_url)
    legacy.worker(concurrency=2)
    sup = legacy.supervisor(workers=2)
    async with sup.client() as client:
        events = [{"id": f"s{i}", "message": f" m{i} "} for i in range(N)]
        handles = await asyncio.gather(*(client.start(app.mixed, {"event": e}) for e in events))
        results = await asyncio.gather(*(h.result(timeout=90) for h in handles))
    for event, result in zip(events, results, strict=True):
        assert result["id"] == event["id"] and result["message"] == event["message"].strip()
        assert result["steps"] == ["coda.normalize", "legacy.enrich", "coda.tag", "legacy.store"]
    counters = redis.Redis.from_url(legacy.counter_url)
    for step in ("enrich", "store"):
        counts = counters.mget([f"{legacy.prefix}:{step}:{e['id']}" for e in events])
        assert [int(c or 0) for c in counts] == [1] * N, step
