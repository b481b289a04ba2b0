"""Mixed workflows on every broker and result-backend setting: migrated → legacy → migrated →
legacy, with real ``celery worker`` processes and a real ``coda supervisor --celery-app``."""

from __future__ import annotations

import pytest

from tests.bridge import app

REDIS = "redis://127.0.0.1:6379/0"
AMQP = "amqp://guest:guest@127.0.0.1:5672//"


@pytest.mark.parametrize("backend", ["redis", "rpc", "none"])
@pytest.mark.parametrize("broker", ["redis", "amqp"])
async def test_mixed_workflow(broker: str, backend: str, legacy_factory, redis_url, amqp_url) -> None:
    broker_url = {"redis": redis_url, "amqp": amqp_url}[broker]
    backend_url = {"redis": redis_url, "rpc": "rpc://", "none": None}[backend]
    legacy = legacy_factory(broker_url, backend_url)
    legacy.worker()
    sup = legacy.supervisor()
    async with sup.client() as client:
        event = {"id": f"e-{broker}-{backend}", "message": "  hello  "}
        result = await client.run(app.mixed, {"event": event}, timeout=30)
        assert result == {
            "id": event["id"], "message": "hello", "enriched": True, "tagged": True, "stored": True,
            "steps": ["coda.normalize", "legacy.enrich", "coda.tag", "legacy.store"],
        }
        assert (legacy.count("enrich", event["id"]), legacy.count("store", event["id"])) == (1, 1)

        # A final failure after Celery's own handling: the remote type, message and traceback.
        failed = await client.run(app.call, {"task": "legacy.boom", "args": {"key": "b1"}}, timeout=30)
        assert failed["failed"]["class"] == "TaskFailed"
        assert failed["failed"]["task"] == "legacy.boom"
        assert (failed["failed"]["exc_type"], failed["failed"]["message"]) == ("ValueError", "boom b1")
        assert 'raise ValueError(f"boom {key}")' in failed["failed"]["traceback"]

        # Celery's Retry is not a failure: the task succeeds on its third attempt.
        retried = await client.run(app.call, {"task": "legacy.retry_twice", "args": {"key": "r1"}}, timeout=30)
        assert retried == {"ok": "succeeded on attempt 3"}
        assert legacy.count("retry_twice", "r1") == 3
