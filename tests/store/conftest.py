"""Every store backend behind one fixture, and a private redis-server for outage tests.

``backend`` is parametrized over memory, SQLite (normal and full, a real file), fakeredis and
real Redis (127.0.0.1:6379, a prefix of the test's own, only that prefix deleted afterwards;
skipped locally when Redis is down, a failure under CI=true).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import redis

from coda.store import Store
from coda.store.memory import MemoryStore
from coda.store.redis import RedisStore
from coda.store.sqlite import SQLiteStore
from tests.conftest import IN_CI, require_server

BACKENDS = ["memory", "sqlite", "sqlite-full", "fakeredis", "redis"]


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


@dataclass
class Backend:
    """One backend under test: ``make(retention)`` gives a new, unopened store on the same
    data (so closing and making again is a reopen); the rest reach under the interface to
    plant what the refusal tests need."""

    name: str
    make: Callable[..., Store]
    redis: Any = None  # a client on the same data (redis backends)
    prefix: str = ""
    path: Path | None = None
    opened: list[Store] = field(default_factory=list)

    @property
    def durable(self) -> bool:
        return self.name != "memory"

    def open(self, retention: float = 3600.0) -> Store:
        store = self.make(retention)
        store.open()
        self.opened.append(store)
        return store

    def forge_schema_version(self, version: int) -> None:
        if self.path is not None:
            import sqlite3

            conn = sqlite3.connect(self.path)
            with conn:
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
            conn.close()
        else:
            self.redis.set(f"{self.prefix}:schema", f"coda-store/{version}")


def _cleanup(client: Any, prefix: str) -> None:
    keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


def _backend(name: str, tmp_path: Path, run_tag: str) -> Backend:
    if name == "memory":
        shared = MemoryStore()

        def make_memory(retention: float) -> Store:
            shared.retention = retention
            return shared

        return Backend(name, make_memory)
    if name.startswith("sqlite"):
        path = tmp_path / "coda.db"
        synchronous = "full" if name == "sqlite-full" else "normal"
        return Backend(name, lambda retention: SQLiteStore(str(path), synchronous=synchronous, retention=retention), path=path)
    prefix = f"coda-test:{run_tag}"
    if name == "fakeredis":
        server = fakeredis.FakeServer()
        return Backend(
            name,
            lambda retention: RedisStore("redis://fake:6379/0", prefix=prefix, retention=retention, client=fakeredis.FakeRedis(server=server)),
            redis=fakeredis.FakeRedis(server=server),
            prefix=prefix,
        )
    require_server("Redis", 6379)
    url = "redis://127.0.0.1:6379/0"
    return Backend(name, lambda retention: RedisStore(url, prefix=prefix, retention=retention), redis=redis.Redis.from_url(url), prefix=prefix)


def _finish(made: Backend) -> None:
    for store in made.opened:
        store.close()
    if made.redis is not None:
        _cleanup(made.redis, made.prefix)
        made.redis.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, run_tag: str) -> Iterator[Backend]:
    made = _backend(request.param, tmp_path, run_tag)
    yield made
    _finish(made)


@pytest.fixture(params=["fakeredis", "redis"])
def redis_backend(request: pytest.FixtureRequest, tmp_path: Path, run_tag: str) -> Iterator[Backend]:
    """The Redis backends alone, for what only Redis has (prefixes, foreign keys, EXPIRE)."""
    made = _backend(request.param, tmp_path, run_tag)
    yield made
    _finish(made)


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.open()


# -- a redis-server of the test's own ---------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server on a free port with its data in ``directory``, which a test may stop,
    kill and restart (the shared one on 6379 must never be disturbed)."""

    def __init__(self, directory: Path, *, appendfsync: str | None) -> None:
        self.port = free_port()
        self.dir = directory
        self.appendfsync = appendfsync
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)

    def start(self) -> PrivateRedis:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir", str(self.dir)]
        if self.appendfsync is None:
            argv += ["--appendonly", "no"]
        else:
            argv += ["--appendonly", "yes", "--appendfsync", self.appendfsync]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()

        def up() -> bool:
            try:
                return bool(client.ping())
            except (redis.ConnectionError, redis.BusyLoadingError):
                return False

        try:
            wait_until(up, f"redis-server on port {self.port}", timeout=15)
        finally:
            client.close()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(15)
        self.proc = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[Callable[..., PrivateRedis]]:
    if shutil.which("redis-server") is None:
        if IN_CI:
            pytest.fail("redis-server is not installed, and CI=true requires it")
        pytest.skip("redis-server is not installed")
    started: list[PrivateRedis] = []

    def start(appendfsync: str | None = "always") -> PrivateRedis:
        directory = tmp_path / f"redis-{len(started)}"
        directory.mkdir()
        server = PrivateRedis(directory, appendfsync=appendfsync).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(signal.SIGKILL)


def subprocess_env() -> dict[str, str]:
    """The environment for a child Python that must import this worktree's coda and tests."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env
