"""What is particular to one backend: what SQLite and Redis refuse at open (corrupt files,
foreign data, unreachable servers) — nothing is ever reset, so each refusal test checks that
what it planted is still there — and Redis's own expiry of finished runs."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import fakeredis
import pytest

from coda.errors import StoreError, StoreIncompatible, StoreUnavailable
from coda.store import RunQuery, open_store
from coda.store.redis import RedisStore
from coda.store.sqlite import SQLiteStore
from tests.store.conftest import Backend, free_port
from tests.store.records import batch, run, step


def test_a_file_that_is_not_sqlite_is_refused_and_left_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "coda.db"
    junk = b"this is not a database, it is a letter\n" * 200
    path.write_bytes(junk)
    with pytest.raises(StoreIncompatible, match="not a database") as info:
        open_store(f"sqlite://{path}")
    assert str(path) in str(info.value)
    assert "left as it is" in str(info.value)
    assert path.read_bytes() == junk


def test_a_sqlite_database_of_something_else_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.close()
    with pytest.raises(StoreIncompatible, match=r"not a Coda store \(tables: users\)"):
        open_store(f"sqlite://{path}")
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT name FROM users").fetchall() == [("ada",)]
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'runs'").fetchone() == (0,)
    conn.close()


def test_damaged_pages_are_reported_not_skipped(tmp_path: Path) -> None:
    path = tmp_path / "coda.db"
    store = open_store(f"sqlite://{path}")
    store.commit(batch(*(run(f"r{i:05}", state="pending") for i in range(2000)), *(step("r00001", s) for s in range(50))))
    store.close()
    data = bytearray(path.read_bytes())
    assert len(data) > 64 * 1024
    page = 4096
    data[2 * page : len(data) - page] = b"\xa5" * (len(data) - 3 * page)  # every page but the first two and the last
    path.write_bytes(bytes(data))
    with pytest.raises(StoreIncompatible, match=r"malformed|not a database|corrupt") as info:
        store = open_store(f"sqlite://{path}")
        store.load_active()
    assert str(path) in str(info.value)


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="does not exist") as info:
        open_store(f"sqlite://{tmp_path}/missing/coda.db")
    assert f"{tmp_path}/missing" in str(info.value)


def test_a_locked_database_is_unavailable_not_corrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("coda.store.sqlite._BUSY_TIMEOUT_MS", 50)
    path = tmp_path / "coda.db"
    store = open_store(f"sqlite://{path}")
    # Another process holds the write lock past the busy timeout: "database is locked".
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            store.commit(batch(run("r1")))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    store.commit(batch(run("r1")))  # the store itself is fine
    assert store.load_run("r1") is not None
    store.close()


def test_keys_under_the_prefix_that_are_not_a_store_are_refused(redis_backend: Backend) -> None:
    redis_backend.redis.set(f"{redis_backend.prefix}:celery-task-meta-1", b"{}")
    with pytest.raises(StoreIncompatible) as info:
        redis_backend.open()
    message = str(info.value)
    assert repr(redis_backend.prefix) in message and "celery-task-meta-1" in message and "--store-prefix" in message
    assert redis_backend.redis.get(f"{redis_backend.prefix}:schema") is None  # nothing written
    assert redis_backend.redis.get(f"{redis_backend.prefix}:celery-task-meta-1") == b"{}"


def test_a_schema_key_that_is_not_ours_is_refused(redis_backend: Backend) -> None:
    redis_backend.redis.set(f"{redis_backend.prefix}:schema", "v2")
    with pytest.raises(StoreIncompatible, match="which is not a Coda schema"):
        redis_backend.open()
    redis_backend.redis.delete(f"{redis_backend.prefix}:schema")
    redis_backend.redis.hset(f"{redis_backend.prefix}:schema", "x", "y")
    with pytest.raises(StoreIncompatible, match="WRONGTYPE"):
        redis_backend.open()
    assert redis_backend.redis.hgetall(f"{redis_backend.prefix}:schema") == {b"x": b"y"}


def test_a_prefix_that_only_shares_the_first_letters_is_not_foreign(redis_backend: Backend) -> None:
    redis_backend.redis.set(f"{redis_backend.prefix}x:other", 1)  # another deployment's "…x" prefix
    try:
        redis_backend.open().commit(batch(run("r1")))
    finally:
        redis_backend.redis.delete(f"{redis_backend.prefix}x:other")


def test_a_field_coda_does_not_write_is_an_error_naming_the_store(redis_backend: Backend) -> None:
    store = redis_backend.open()
    store.commit(batch(run("r1")))
    for field in ("zz", "m:not-hex", "s:1:x"):
        redis_backend.redis.hset(f"{redis_backend.prefix}:run:{{r1}}", field, b"\x01\xc0")
        with pytest.raises(StoreIncompatible, match=f"field b'{field}' that Coda did not write") as info:
            store.load_run("r1")
        assert store.describe() in str(info.value)
        redis_backend.redis.hdel(f"{redis_backend.prefix}:run:{{r1}}", field)
    assert store.load_run("r1") is not None


def test_two_stores_open_one_new_prefix_at_once() -> None:
    server = fakeredis.FakeServer()
    stores = [RedisStore("redis://fake/0", prefix="p", client=fakeredis.FakeRedis(server=server)) for _ in range(2)]
    for store in stores:
        store.open()
    stores[0].commit(batch(run("r1")))
    loaded = stores[1].load_run("r1")
    assert loaded is not None and loaded.run.run_id == "r1"


def test_an_unreachable_redis_is_unavailable_at_once_naming_the_url() -> None:
    url = f"redis://:s3cret@127.0.0.1:{free_port()}/3"
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as info:
        open_store(url, prefix="p")
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "redis://:***@127.0.0.1:" in message and "/3" in message and "'p'" in message
    assert "s3cret" not in message


def test_redis_expires_a_finished_run_itself(redis_backend: Backend) -> None:
    backend = redis_backend
    store = backend.open(retention=3600)
    now = time.time()
    store.commit(batch(run("r1", state="succeeded", created_at=now - 5, finished_at=now), run("r2", created_at=now - 1)))
    key_name = f"{backend.prefix}:run:{{r1}}"
    ttl = backend.redis.pttl(key_name)
    assert 3_590_000 < ttl <= 3_600_000
    assert backend.redis.pttl(f"{backend.prefix}:run:{{r2}}") == -1  # active runs never expire
    # A rerun makes it active again: the expiry goes.
    store.commit(batch(run("r1", attempt=2, created_at=now - 5)))
    assert backend.redis.pttl(key_name) == -1
    # Finished at once with retention 0 is gone at once.
    short = backend.open(retention=0)
    short.commit(batch(run("r3", state="cancelled", created_at=now, finished_at=now)))
    assert short.load_run("r3") is None
    assert short.sweep(time.time()) >= 1
    assert [r.run_id for r in short.list_runs(RunQuery())] == ["r2", "r1"]
