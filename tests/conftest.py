"""Shared fixtures: real servers (skipped locally when missing, required under CI=true)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

# One tag per test run: Redis key prefixes and queue names include it, so runs never collide.
RUN_TAG = uuid.uuid4().hex[:8]
IN_CI = os.environ.get("CI") == "true"


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def require_server(name: str, port: int) -> None:
    if not _reachable("127.0.0.1", port):
        message = f"{name} is not reachable on 127.0.0.1:{port}"
        if IN_CI:
            pytest.fail(f"{message}, and CI=true requires it (scripts/services.sh starts it)")
        pytest.skip(message)


@pytest.fixture
def redis_url() -> str:
    require_server("Redis", 6379)
    return "redis://127.0.0.1:6379/0"


@pytest.fixture
def amqp_url() -> str:
    require_server("RabbitMQ", 5672)
    return "amqp://guest:guest@127.0.0.1:5672//"


@pytest.fixture
def run_tag() -> str:
    """Unique per test: for key prefixes and queue names."""
    return f"{RUN_TAG}-{uuid.uuid4().hex[:6]}"


@pytest.fixture
def state_dir(tmp_path: os.PathLike[str]) -> Iterator[str]:
    """A directory that tasks in other processes write their side effects to (CODA_TEST_DIR)."""
    path = str(tmp_path)
    old = os.environ.get("CODA_TEST_DIR")
    os.environ["CODA_TEST_DIR"] = path
    yield path
    if old is None:
        os.environ.pop("CODA_TEST_DIR", None)
    else:
        os.environ["CODA_TEST_DIR"] = old
