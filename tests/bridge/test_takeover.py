"""``coda supervisor --celery-app ... -Q queue`` in place of ``celery worker -Q queue``: producers
unchanged, results read back through ``AsyncResult``; real Redis/RabbitMQ and real processes."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from celery import chain, chord, group
from celery.exceptions import TaskRevokedError, TimeLimitExceeded

from coda.bridge import workflow_entry
from coda.client import SyncClient
from coda.errors import RunNotFound
from coda.testing import SupervisorProcess
from tests.bridge import takeover_app
from tests.bridge.takeover_app import make_app
from tests.support import wait_until

APP = "tests.bridge.takeover_app"


class Setup:
    def __init__(self, broker: str, backend: str, tag: str) -> None:
        self.queue = f"takeover-{tag}"
        self.prefix = f"takeover-{tag}"
        self.env = {"CODA_TAKEOVER_BROKER": broker, "CODA_TAKEOVER_BACKEND": backend, "CODA_TAKEOVER_QUEUE": self.queue,
                    "CODA_TAKEOVER_PREFIX": self.prefix, "CODA_TAKEOVER_COUNTS": backend}
        self.app = make_app(broker, backend, self.queue, self.prefix)
        self.redis = redis.Redis.from_url(backend)

    def task(self, name: str) -> Any:
        return self.app.tasks[name]

    def supervisor(self, factory: Callable[..., SupervisorProcess], workers: int = 2) -> SupervisorProcess:
        return factory([APP], workers=workers, env=self.env,
                       args=["--celery-app", f"{APP}:app", "-Q", self.queue, "--log-level", "INFO"])

    def runs(self, key: str) -> int:
        return int(self.redis.get(f"{self.prefix}:{key}") or 0)


@pytest.fixture
def redis_setup(redis_url: str, run_tag: str) -> Iterator[Setup]:
    setup = Setup(redis_url, redis_url, run_tag)
    yield setup
    setup.app.close()


def test_producers_unchanged_on_redis(redis_setup: Setup, coda_supervisor_factory: Callable[..., SupervisorProcess]) -> None:
    s = redis_setup
    sup = s.supervisor(coda_supervisor_factory)
    add = s.task("takeover.add")

    assert add.delay(2, 3).get(timeout=10) == 5

    me = s.task("takeover.whoami").delay().get(timeout=10)
    assert me["hostname"].startswith("coda@") and me["is_eager"] is False and me["called_directly"] is False
    assert me["retries"] == 0 and me["id"]

    compat = s.task("takeover.compat_add").delay(4, 5).get(timeout=10)
    assert compat == {"sum": 9, "hostname": compat["hostname"]} and compat["hostname"].startswith("coda@")

    started = time.monotonic()
    assert add.apply_async((1, 1), countdown=1).get(timeout=10) == 2
    assert time.monotonic() - started >= 0.95

    assert chain(add.s(1, 2), add.s(3), add.s(4))().get(timeout=10) == 10
    assert group(add.s(i, i) for i in range(10))().get(timeout=10) == [2 * i for i in range(10)]
    assert chord((add.s(i, i) for i in range(10)), s.task("takeover.tsum").s())().get(timeout=15) == 90

    key = f"errback-{uuid.uuid4().hex}"
    failing = s.task("takeover.fail").apply_async(("boom",), link_error=s.task("takeover.record_error").s(key))
    with pytest.raises(ValueError, match="boom"):
        failing.get(timeout=10)
    recorded = wait_until(lambda: s.redis.get(f"{s.prefix}:{key}"), 10, "the link_error callback")
    assert recorded.decode().startswith(failing.id)

    started = time.monotonic()
    retried = s.task("takeover.retry_twice").delay()
    assert retried.get(timeout=15) == 2
    assert time.monotonic() - started >= 0.95  # two countdowns of 0.5 s

    flaky_key = f"flaky-{uuid.uuid4().hex}"
    assert s.task("takeover.flaky").delay(flaky_key).get(timeout=15) == 3
    assert s.runs(flaky_key) == 3

    # expires: due after it expired → revoked by Celery's request code, never run
    expired = add.apply_async((1, 2), countdown=1.5, expires=0.5)
    with pytest.raises(TaskRevokedError):
        expired.get(timeout=10)

    # rate_limit 10/s holds: 6 tasks take at least ~0.5 s
    stamps = sorted(r.get(timeout=15) for r in [s.task("takeover.limited").delay(i) for i in range(6)])
    assert stamps[-1] - stamps[0] >= 0.4

    # time_limit: the supervisor kills the worker past the hard limit; Celery's FAILURE is stored
    pids = sup.worker_pids()
    with pytest.raises(TimeLimitExceeded):
        s.task("takeover.sleeper").apply_async((30,), time_limit=1).get(timeout=15)
    sup.wait_for_workers(exclude=[p for p in pids if p not in sup.worker_pids()])
    assert add.delay(20, 22).get(timeout=10) == 42

    # a workflow started from Celery code, through the queue
    entry = workflow_entry("takeover.double", s.app, s.queue)
    run_id = entry.delay(x=21)
    client = SyncClient(sup.address)
    try:
        def result() -> Any:
            try:
                return [client.result(run_id, timeout=10)]
            except RunNotFound:
                return None
        assert wait_until(result, 10, "the workflow run") == [42]
    finally:
        client.close()
    assert s.redis.llen(f"{s.prefix}:{s.queue}") == 0


def test_tasks_run_on_the_main_thread_unless_a_workflow_shares_the_worker(
    redis_setup: Setup, coda_supervisor_factory: Callable[..., SupervisorProcess]
) -> None:
    s = redis_setup
    sup = s.supervisor(coda_supervisor_factory, workers=1)
    where = s.task("takeover.where")
    # As in a Celery prefork child: the main thread, and asyncio.run works inside the task.
    assert where.delay().get(timeout=10) == {"main_thread": True, "asyncio_run": 42}
    client = SyncClient(sup.address)
    try:
        run = client.start("takeover.nap", {"seconds": 2.0})
        wait_until(lambda: run.status().state == "running", 5, "the workflow to run")
        # The one worker hosts a waiting workflow: the task goes to its task thread instead, so
        # the workflow is not held up behind it.
        assert where.delay().get(timeout=10) == {"main_thread": False, "asyncio_run": 42}
        assert run.result(timeout=10) == "rested"
    finally:
        client.close()
    assert where.delay().get(timeout=10)["main_thread"] is True


def test_unknown_name_and_bad_messages_are_rejected(redis_setup: Setup, coda_supervisor_factory: Callable[..., SupervisorProcess]) -> None:
    s = redis_setup
    sup = s.supervisor(coda_supervisor_factory)
    queue_key = f"{s.prefix}:{s.queue}"

    unknown = s.app.send_task("takeover.nobody_knows_me", queue=s.queue)

    def raw(headers: dict[str, Any], body: str, content_type: str, tag: str) -> None:
        envelope = {"body": base64.b64encode(body.encode()).decode(), "content-encoding": "utf-8",
                    "content-type": content_type, "headers": headers,
                    "properties": {"correlation_id": tag, "delivery_tag": tag, "body_encoding": "base64",
                                   "delivery_info": {"exchange": "", "routing_key": s.queue}, "delivery_mode": 2, "priority": 0}}
        s.redis.lpush(queue_key, json.dumps(envelope))

    raw({}, json.dumps({"task": "takeover.add", "id": "v1-style", "args": [1, 2], "kwargs": {}}), "application/json", "bad-v1")
    raw({"task": "takeover.add", "id": "bad-type"}, "[[1, 2], {}, {}]", "application/x-unknown", "bad-type")
    raw({"task": "takeover.add", "id": "bad-json"}, "[[1, 2], {", "application/json", "bad-json")

    # The consumer carries on.
    assert s.task("takeover.add").delay(1, 2).get(timeout=10) == 3
    log = wait_until(lambda: (text := sup.log()).count("coda.bridge.takeover.bad_message") >= 3 and "takeover.nobody_knows_me" in text and text, 10, "the log lines")
    for msg_id in ("bad-v1", "bad-type", "bad-json"):
        line = next(line for line in log.splitlines() if msg_id in line and "bad_message" in line)
        assert f"queue={s.queue}" in line
    assert "unknown_task" in log and unknown.id in log
    # Rejected back to the broker: the unknown message is never acked; the bad ones are gone.
    sup.terminate()
    wait_until(lambda: s.redis.llen(queue_key) == 1, 10, "the unknown message back in the queue")
    body = json.loads(s.redis.lindex(queue_key, 0))
    assert body["headers"]["task"] == "takeover.nobody_knows_me"
    assert unknown.state == "PENDING"
