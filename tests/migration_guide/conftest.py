"""The guide's acceptance setup: isolated queues, store prefix and events database (which also
records every stage's calls)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from migration_guide.examples import domain, events


@dataclass
class Pipeline:
    env: dict[str, str]

    def feed(self, module: str, **env: str) -> None:
        """Run the step's consumer as its own process, as in production."""
        subprocess.run([sys.executable, "-m", module], env={**os.environ, **self.env, **env}, check=True, timeout=120)

    def wait_settled(self, duplicate_runs: int = 2, timeout: float = 60.0) -> None:
        """Until every fed event was saved or dropped: each event once, the duplicate
        ``duplicate_runs`` times. Under Celery that is twice (its second copy shares the first's
        processing-store key, so it is saved again idempotently or finds the key gone,
        depending on timing — as in Sentry); under a workflow keyed by event, once."""
        def settled(event_id: str) -> int:
            return domain.count_calls("save", event_id) + domain.count_calls("dropped", event_id)

        expected = {e["event_id"]: 1 for e in events.EVENTS} | {events.DUPLICATE["event_id"]: duplicate_runs, events.MISSING_ID: 1}
        self.wait_for(lambda: all(settled(e) >= n for e, n in expected.items()), "every event saved or dropped", timeout)

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} did not happen within {timeout}s")
            time.sleep(0.1)


def _pipeline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run_tag: str, **env: str) -> Pipeline:
    env = {
        "PIPELINE_QUEUE_PREFIX": f"{run_tag}.",
        "PIPELINE_STORE_PREFIX": f"{run_tag}:",
        "PIPELINE_DB": str(tmp_path / "events.sqlite3"),
        **env,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return Pipeline(env)


@pytest.fixture(params=["redis", "amqp"])
def pipeline(request: pytest.FixtureRequest, run_tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """The pipeline's settings for a step with Celery in it, once per broker."""
    broker = request.getfixturevalue("redis_url" if request.param == "redis" else "amqp_url")
    request.getfixturevalue("redis_url")  # the processing store is Redis in every broker setting
    return _pipeline(monkeypatch, tmp_path, run_tag, PIPELINE_BROKER_URL=broker,
                     PIPELINE_REDIS_URL="redis://127.0.0.1:6379/0")


@pytest.fixture
def coda_pipeline(run_tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pipeline:
    """The pipeline's settings for the all-Coda step: no broker, no Redis."""
    return _pipeline(monkeypatch, tmp_path, run_tag)


def assert_acceptance(saved: dict[str, dict[str, object]]) -> None:
    """Same stored output at every step: every event once, the missing one dropped."""
    assert saved == events.expected_output()
    assert events.MISSING_ID not in saved
    assert domain.count_calls("symbolicate", "ev-flaky") == 3  # down twice, then fine
    assert domain.count_calls("dropped", events.MISSING_ID) == 1
