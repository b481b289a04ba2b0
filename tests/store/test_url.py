"""Store URLs and retention durations: what a user types, and the errors for what is wrong."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coda.errors import StoreError
from coda.store import DEFAULT_PREFIX, MemoryStore, open_store, parse_duration, store_from_url
from coda.store.redis import RedisStore
from coda.store.sqlite import SQLiteStore


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("600", 600), ("90s", 90), ("10m", 600), ("36h", 36 * 3600), ("7d", 7 * 86400), ("0", 0), ("1.5h", 5400),
     (" 2D ", 2 * 86400), (30, 30), (2.5, 2.5)],
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "7x", "-5", "1e3", "10 m s", "inf", "nan", "7dd", "1,5h", float("inf"), -1])
def test_bad_durations_name_the_option_and_the_forms(text: str | float) -> None:
    with pytest.raises(StoreError) as info:
        parse_duration(text, "--retention")
    message = str(info.value)
    assert message.startswith(f"--retention {text!r} is not a duration")
    assert "600, 90s, 10m, 36h, 7d" in message


def test_memory_urls() -> None:
    for url in ("memory", "memory://", "MEMORY"):
        store = open_store(url, retention=5)
        assert isinstance(store, MemoryStore) and store.retention == 5 and not store.durable
    with pytest.raises(StoreError, match="takes no path"):
        store_from_url("memory://x")


def test_sqlite_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkdir("data")
    cases = {
        f"sqlite://{tmp_path}/a.db": (f"{tmp_path}/a.db", "normal"),
        f"sqlite:///{tmp_path}/b.db": (f"{tmp_path}/b.db", "normal"),  # four slashes, as SQLAlchemy writes
        "sqlite:data/c.db": (f"{tmp_path}/data/c.db", "normal"),
        f"sqlite://{tmp_path}/d.db?synchronous=FULL": (f"{tmp_path}/d.db", "full"),
        f"sqlite://{tmp_path}/e.db?synchronous=normal": (f"{tmp_path}/e.db", "normal"),
    }
    for url, (path, synchronous) in cases.items():
        store = open_store(url, retention=7)
        assert isinstance(store, SQLiteStore)
        assert (store.path, store.synchronous, store.retention) == (path, synchronous, 7)
        assert os.path.exists(path)
        store.close()
    assert store_from_url(f"sqlite://{tmp_path}/d.db?synchronous=full").describe() == f"sqlite://{tmp_path}/d.db?synchronous=full"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://host/x.db", "has no host"),
        ("sqlite:", "no database file"),
        ("sqlite:///", "no database file"),
        ("sqlite::memory:", "use the 'memory' store"),
        ("sqlite:///tmp/x.db?journal=wal", "unknown option.*journal"),
        ("sqlite:///tmp/x.db?synchronous=off", "synchronous='off'"),
        ("postgres://db/coda", "unknown scheme 'postgres'"),
        ("/var/lib/coda.db", "unknown scheme"),
        ("redis://127.0.0.1:notaport/0", "Port could not be cast|port"),
        ("redis://127.0.0.1:6379/two", "the database 'two' is not a number"),
        ("redis:///0", "no host"),
        ("unix://", "needs the socket path"),
    ],
)
def test_bad_urls_name_the_url_and_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as info:
        store_from_url(url)
    assert repr(url) in str(info.value)


def test_redis_urls_keep_the_prefix_and_mask_the_password() -> None:
    store = store_from_url("redis://:hunter2@cache.internal:6380/2", prefix="team-a", retention=9)
    assert isinstance(store, RedisStore)
    assert (store.prefix, store.retention) == ("team-a", 9)
    assert store.describe() == "redis://:***@cache.internal:6380/2 (prefix 'team-a')"
    assert store.run_key("r1") == "team-a:run:{r1}"
    assert isinstance(store_from_url("rediss://user:pw@h:6379/0"), RedisStore)
    assert store_from_url("rediss://user:pw@h:6379/0").describe().startswith("rediss://user:***@h:6379/0")
    assert DEFAULT_PREFIX == "coda"
    with pytest.raises(StoreError, match="prefix 'a b'"):
        store_from_url("redis://h/0", prefix="a b")
