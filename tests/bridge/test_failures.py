"""Failure paths of the bridge: reruns, time limits, unknown names, missing hook, cancel,
a SIGKILLed Celery worker, a restarted Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis

from coda.bridge import celery_task_id
from coda.errors import WorkflowFailed
from coda.keys import memo_key
from tests.bridge import app
from tests.support import until, wait_until


async def test_rerun_after_late_failure_runs_legacy_side_effects_once(legacy_factory, redis_url) -> None:
    legacy = legacy_factory(redis_url, None)  # no result backend: the hook reports
    legacy.worker()
    sup = legacy.supervisor()
    key = "late"
    legacy.set_flag(key, True)
    async with sup.client() as client:
        handle = await client.start(app.mixed_late_failure, {"event": {"id": key, "message": "m"}})
        with pytest.raises(WorkflowFailed) as failed:
            await handle.result(timeout=30)
        assert "late is flagged to fail" in failed.value.message
        legacy.set_flag(key, False)
        await client.rerun(handle.run_id)
        stored, last, attempt = await handle.result(timeout=30)
        assert stored["stored"] and last == "ok late" and attempt == 2
    # Memoized legacy steps were not sent again; only the failed one ran twice.
    assert (legacy.count("enrich", key), legacy.count("store", key), legacy.count("flagged", key)) == (1, 1, 2)


async def test_same_run_id_on_a_new_supervisor_finds_the_stored_result(legacy_factory, redis_url) -> None:
    """The Celery id derives from the memo key: with a Redis backend, a run started again under
    its run id (a new supervisor has no memo) finds the finished legacy task instead of resending."""
    legacy = legacy_factory(redis_url, redis_url)
    legacy.worker()
    event = {"id": "again", "message": "m"}
    for _ in range(2):
        sup = legacy.supervisor(workers=1)
        async with sup.client() as client:
            handle = await client.start(app.mixed, {"event": event}, run_id=f"fixed-{legacy.prefix}")
            assert (await handle.result(timeout=30))["stored"]
        sup.kill()
    assert (legacy.count("enrich", "again"), legacy.count("store", "again")) == (1, 1)


async def test_concurrent_spawns_of_one_key_send_one_message(legacy_factory, redis_url) -> None:
    legacy = legacy_factory(redis_url, "rpc://")
    legacy.worker()
    sup = legacy.supervisor(workers=1)
    async with sup.client() as client:
        args = {"task": "legacy.hang", "args": {"key": "dup", "seconds": 0.2}, "key": "dup"}
        assert await client.run(app.twice, args, timeout=30) == ["done dup", "done dup"]
    assert legacy.count("hang", "dup") == 1


async def test_time_limit_is_a_failure_with_its_reason(legacy_factory, redis_url) -> None:
    legacy = legacy_factory(redis_url, redis_url)
    legacy.worker()
    sup = legacy.supervisor(workers=1)
    async with sup.client() as client:
        failed = (await client.run(app.call, {"task": "legacy.too_slow", "args": {"key": "t"}}, timeout=30))["failed"]
    assert failed["exc_type"].endswith("TimeLimitExceeded")
    assert "time limit exceeded" in failed["message"] and "legacy.too_slow" in failed["message"]


@pytest.mark.parametrize("backend", ["redis", "none"])
async def test_name_no_worker_knows_fails_naming_task_and_queue(backend: str, legacy_factory, redis_url) -> None:
    legacy = legacy_factory(redis_url, redis_url if backend == "redis" else None)
    legacy.worker()
    sup = legacy.supervisor(workers=1)
    async with sup.client() as client:
        result = await client.run(app.call, {"task": "legacy.nobody_has_this", "args": {}}, timeout=30)
    assert "legacy.nobody_has_this" in result["unknown"] and legacy.queue in result["unknown"]


async def test_queue_nobody_consumes_fails_after_the_pickup_bound(legacy_factory, redis_url) -> None:
    legacy = legacy_factory(redis_url, redis_url)  # hooked app module, but no worker at all
    sup = legacy.supervisor(workers=1, CODA_BRIDGE_PICKUP_TIMEOUT="1.5")
    async with sup.client() as client:
        started = time.monotonic()
        result = await client.run(app.call, {"task": "legacy.echo", "args": {"value": 1}}, timeout=30)
    failed = result["failed"]
    assert failed["class"] == "TaskTimeout" and time.monotonic() - started >= 1.5
    assert "legacy.echo" in failed["message"] and legacy.queue in failed["message"]


async def test_worker_without_the_hook_fails_loudly_naming_it(legacy_factory, redis_url) -> None:
    legacy = legacy_factory(redis_url, None, hook=False)  # no backend, no hook: nothing reports
    legacy.worker()
    sup = legacy.supervisor(workers=1, CODA_BRIDGE_PICKUP_TIMEOUT="2")
    async with sup.client() as client:
        result = await client.run(app.call, {"task": "legacy.echo", "args": {"value": 1}}, timeout=30)
    failed = result["failed"]
    assert failed["class"] == "TaskTimeout"
    assert "with no result backend only workers whose Celery app module calls coda.bridge.install(app)" in failed["message"]
    assert "legacy.echo" in failed["message"] and legacy.queue in failed["message"]


async def test_cancel_revokes_the_running_legacy_task(legacy_factory, redis_url) -> None:
    legacy = legacy_factory(redis_url, redis_url)
    worker = legacy.worker()
    sup = legacy.supervisor(workers=1)
    async with sup.client() as client:
        handle = await client.start(app.call, {"task": "legacy.hang", "args": {"key": "c", "seconds": 60}, "key": "c"})
        await until(lambda: legacy.count("hang", "c") == 1, 15, "the legacy task to start")
        await client.cancel(handle.run_id)
        assert (await client.status(handle.run_id)).state == "cancelled"
        celery_id = celery_task_id(memo_key(handle.run_id, "legacy.hang", ["c"]))
        await until(lambda: f"Terminating {celery_id}" in worker.log(), 15, "the Celery worker to terminate it")
        # The worker (concurrency 1) is free again long before the 60 s task would have ended.
        result = await client.run(app.call, {"task": "legacy.echo", "args": {"value": "next"}}, timeout=15)
        assert result == {"ok": "next"}
    assert legacy.count("hang-done", "c") == 0


async def test_sigkilled_worker_acks_late_task_is_redelivered(legacy_factory, amqp_url) -> None:
    legacy = legacy_factory(amqp_url, "rpc://")
    first = legacy.worker("w1")
    sup = legacy.supervisor(workers=1)
    async with sup.client() as client:
        handle = await client.start(app.call, {"task": "legacy.killed_once", "args": {"key": "k"}, "key": "k"})
        await until(lambda: legacy.get("killed_once-pid:k") is not None, 15, "the first delivery to start")
        first.kill()
        legacy.worker("w2")
        assert await handle.result(timeout=30) == {"ok": "survived k after 2 deliveries"}
    assert legacy.count("killed_once", "k") == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _OwnRedis:
    """A redis-server of this test alone (restarting the shared one would disturb others)."""

    def __init__(self, directory: Path) -> None:
        self.port = _free_port()
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # Append-only with fsync on every write: a restart keeps the queued messages.
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers, 10, f"the redis-server on port {self.port}")

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port).ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


async def test_redis_restart_while_tasks_are_in_flight(legacy_factory, redis_url, tmp_path: Path) -> None:
    if not any(os.access(os.path.join(d, "redis-server"), os.X_OK) for d in os.environ["PATH"].split(os.pathsep)):
        pytest.skip("redis-server is not installed")
    own = _OwnRedis(tmp_path)
    own.start()
    try:
        url = f"redis://127.0.0.1:{own.port}/0"
        legacy = legacy_factory(url, url, counter_url=redis_url)
        legacy.worker()
        sup = legacy.supervisor(workers=2)
        async with sup.client() as client:
            keys = [f"r{i}" for i in range(20)]
            handles = [await client.start(app.call, {"task": "legacy.hang", "args": {"key": k, "seconds": 0.1}, "key": k})
                       for k in keys]
            await until(lambda: legacy.count("hang", "r3") == 1, 15, "some tasks to run")
            own.stop()
            own.start()
            results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
        assert results == [{"ok": f"done {k}"} for k in keys]
        assert [legacy.count("hang-done", k) for k in keys] == [1] * len(keys)
        assert "coda.bridge.redis_results.reconnect" in sup.log()  # the bridge did see the outage
    finally:
        own.stop()
