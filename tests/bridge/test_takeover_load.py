"""The takeover under load and under failure: a queue shared with a stock ``celery worker``,
a supervisor SIGKILLed with messages in flight, and the same producers on RabbitMQ."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from celery import chain
from celery.result import ResultSet
from kombu import Connection, Exchange, Queue

from coda.testing import CeleryWorkerProcess, SupervisorProcess
from tests.bridge.test_takeover import APP, Setup, redis_setup  # noqa: F401 - fixture
from tests.support import wait_until

__all__ = ["redis_setup"]


def test_queue_shared_with_a_celery_worker(redis_setup: Setup, coda_supervisor_factory: Callable[..., SupervisorProcess]) -> None:
    s = redis_setup
    s.supervisor(coda_supervisor_factory)
    with CeleryWorkerProcess(APP, [s.queue], concurrency=2, env=s.env):
        counted = s.task("takeover.counted")
        results = ResultSet([counted.delay(i) for i in range(2000)])
        assert results.join_native(timeout=90) == list(range(2000))
    keys = [f"{s.prefix}:runs:{i}" for i in range(2000)]
    assert [int(v or 0) for v in s.redis.mget(keys)] == [1] * 2000  # each ran exactly once
    by_coda, by_celery = s.runs("by:coda"), s.runs("by:celery")
    assert by_coda + by_celery == 2000 and by_coda > 0 and by_celery > 0, (by_coda, by_celery)


def test_sigkill_with_messages_in_flight_loses_none(redis_setup: Setup, coda_supervisor_factory: Callable[..., SupervisorProcess]) -> None:
    s = redis_setup
    first = s.supervisor(coda_supervisor_factory)
    counted = s.task("takeover.counted")
    # Held by the supervisor until their countdown: 100 unacked messages in its hands.
    results = [counted.apply_async((i,), countdown=2) for i in range(100)]
    wait_until(lambda: s.redis.llen(f"{s.prefix}:{s.queue}") == 0 and s.redis.hlen(f"{s.prefix}:unacked") == 100,
             15, "the supervisor to hold all 100 messages")
    assert first.proc is not None
    first.kill()  # SIGKILL
    assert s.runs("by:coda") == 0
    s.supervisor(coda_supervisor_factory)
    assert ResultSet(results).join_native(timeout=60) == list(range(100))
    counts = [int(v or 0) for v in s.redis.mget([f"{s.prefix}:runs:{i}" for i in range(100)])]
    assert counts == [1] * 100
    wait_until(lambda: s.redis.hlen(f"{s.prefix}:unacked") == 0, 10, "every message acked")


def test_acks_reach_the_broker_so_a_restart_runs_nothing_again(
    redis_setup: Setup, coda_supervisor_factory: Callable[..., SupervisorProcess]
) -> None:
    s = redis_setup  # visibility_timeout is 3 s: an unacked message would come back after it
    first = s.supervisor(coda_supervisor_factory)
    counted = s.task("takeover.counted")
    assert ResultSet([counted.delay(i) for i in range(300)]).join_native(timeout=60) == list(range(300))
    # Acks are batched on Redis (at most 10 ms late): all of them land, index and hash alike.
    wait_until(lambda: s.redis.hlen(f"{s.prefix}:unacked") == 0 and s.redis.zcard(f"{s.prefix}:unacked_index") == 0,
             5, "every message acked")
    first.kill()  # SIGKILL: nothing it held may come back
    s.supervisor(coda_supervisor_factory)
    assert s.task("takeover.add").delay(1, 2).get(timeout=10) == 3
    # Proof that the new supervisor's restore sweep ran past the visibility timeout: a message
    # a dead consumer left unacked an hour ago comes back and runs. It is the oldest entry, and
    # kombu restores the newest stale ones first, so anything of the 300 would be back by then.
    _left_unacked_by_a_dead_consumer(s, counted, 300)
    wait_until(lambda: s.runs("runs:300") == 1, 20, "the restore sweep to bring back the stale message")
    assert [int(v or 0) for v in s.redis.mget([f"{s.prefix}:runs:{i}" for i in range(300)])] == [1] * 300


def _left_unacked_by_a_dead_consumer(s: Setup, task: Any, arg: int) -> None:
    """Put a real message for ``task(arg)`` in the broker's unacked tables as a consumer that
    died an hour ago would have left it (kombu's Redis layout: the envelope, exchange and
    routing key by delivery tag, and the tag's timestamp)."""
    aside = f"{s.queue}-aside"  # a queue nobody consumes: only to get a real envelope
    task.apply_async((arg,), queue=aside)
    raw = wait_until(lambda: s.redis.rpop(f"{s.prefix}:{aside}"), 10, "the message set aside")
    envelope = json.loads(raw)
    tag = envelope["properties"]["delivery_tag"]
    s.redis.hset(f"{s.prefix}:unacked", tag, json.dumps([envelope, s.queue, s.queue]))
    s.redis.zadd(f"{s.prefix}:unacked_index", {tag: time.time() - 3600})


def test_eta_beyond_the_visibility_timeout_runs_once(redis_setup: Setup, coda_supervisor_factory: Callable[..., SupervisorProcess]) -> None:
    s = redis_setup  # visibility_timeout is 3 s in the test app
    s.supervisor(coda_supervisor_factory)
    result = s.task("takeover.counted").apply_async((7,), countdown=5)
    assert result.get(timeout=20) == 7
    assert s.runs("runs:7") == 1


def test_producers_unchanged_on_rabbitmq(amqp_url: str, redis_url: str, run_tag: str,
                                         coda_supervisor_factory: Callable[..., SupervisorProcess]) -> None:
    s = Setup(amqp_url, redis_url, run_tag)
    try:
        sup = s.supervisor(coda_supervisor_factory)
        add = s.task("takeover.add")
        assert add.delay(2, 3).get(timeout=10) == 5
        started = time.monotonic()
        assert add.apply_async((1, 1), countdown=1).get(timeout=10) == 2
        assert time.monotonic() - started >= 0.95
        assert chain(add.s(1, 2), add.s(3), add.s(4))().get(timeout=10) == 10
        assert s.task("takeover.retry_twice").delay().get(timeout=15) == 2
        # Bad input on AMQP: an unknown content type and an undecodable body are rejected, named.
        with Connection(amqp_url) as conn:
            producer = conn.Producer()
            queue = Queue(s.queue, Exchange(s.queue), routing_key=s.queue)
            for msg_id, body, content_type in (("amqp-bad-type", b"[[1,2],{},{}]", "application/x-unknown"),
                                               ("amqp-bad-json", b"[[1,2],{", "application/json")):
                producer.publish(body, exchange=queue.exchange, routing_key=s.queue, declare=[queue],
                                 content_type=content_type, content_encoding="utf-8",
                                 headers={"task": "takeover.add", "id": msg_id})
        assert add.delay(3, 4).get(timeout=10) == 7
        log: Any = wait_until(lambda: (text := sup.log()).count("bad_message") >= 2 and text, 10, "the log lines")
        assert "amqp-bad-type" in log and "amqp-bad-json" in log
    finally:
        s.app.close()
