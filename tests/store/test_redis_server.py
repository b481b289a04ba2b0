"""A redis-server of the test's own, stopped, killed and restarted under a StoreWriter: what
each persistence setting keeps, and how the writer rides through the outage."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable

import pytest

from coda.errors import StoreError, StoreIncompatible
from coda.store import Batch, RunQuery, StoreWriter, open_store
from tests.store.conftest import PrivateRedis
from tests.store.records import key, run, step

PREFIX = "coda"


def numbered(i: int) -> Batch:
    batch = Batch()
    batch.put_run(run("r", counts={"batch": i}))
    batch.put_step(step("r", i))
    batch.put_memo("r", key(str(i)), i)
    batch.put_run(run(f"b-{i}", state="pending"))
    return batch


def committed(url: str) -> set[int]:
    """The batch numbers in the store, checking that none is there in part."""
    store = open_store(url, prefix=PREFIX)
    try:
        loaded = store.load_run("r")
        if loaded is None:
            return set()
        seqs = {s.seq for s in store.steps("r")}
        memo = {int(value) for value in loaded.memo.values()}
        runs = {int(r.run_id[2:]) for r in store.list_runs(RunQuery(limit=10_000)) if r.run_id.startswith("b-")}
        assert seqs == memo == runs, "a batch is there in part"
        assert loaded.run.counts == {"batch": max(seqs)}
        return seqs
    finally:
        store.close()


class Events:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.down = asyncio.Event()
        self.up = asyncio.Event()

    def unavailable(self, error: StoreError) -> None:
        self.log.append("down")
        self.down.set()

    def available(self) -> None:
        self.log.append("up")
        self.up.set()


async def test_the_writer_keeps_batches_through_a_redis_restart_and_commits_them_when_it_is_back(
    private_redis: Callable[..., PrivateRedis],
) -> None:
    server = private_redis("always")
    events = Events()
    writer = StoreWriter(open_store(server.url, prefix=PREFIX), asyncio.get_running_loop(),
                         on_unavailable=events.unavailable, on_available=events.available, sweep_every=None)
    await asyncio.gather(*(writer.submit(numbered(i)) for i in range(10)))
    server.stop(signal.SIGTERM)
    during = [writer.submit(numbered(i)) for i in range(10, 20)]
    await asyncio.wait_for(events.down.wait(), 20)
    assert not writer.available and writer.pending > 0
    during += [writer.submit(numbered(i)) for i in range(20, 30)]  # still accepted while down
    assert not any(f.done() for f in during)
    server.start()
    await asyncio.wait_for(asyncio.gather(*during), 30)
    await asyncio.wait_for(events.up.wait(), 5)
    assert events.log == ["down", "up"] and writer.available
    await writer.close()
    assert committed(server.url) == set(range(30))


@pytest.mark.parametrize(
    ("appendfsync", "sig"),
    [
        # fsync before the reply: what EXEC acknowledged is on disk, even if Redis is killed.
        ("always", signal.SIGKILL),
        # fsync once a second: a clean restart keeps everything (shutdown writes and fsyncs
        # the AOF); a crash of the machine may lose the last second or two.
        ("everysec", signal.SIGTERM),
    ],
)
async def test_what_an_aof_restart_keeps(private_redis: Callable[..., PrivateRedis], appendfsync: str, sig: int) -> None:
    server = private_redis(appendfsync)
    writer = StoreWriter(open_store(server.url, prefix=PREFIX), asyncio.get_running_loop(), sweep_every=None)
    await asyncio.gather(*(writer.submit(numbered(i)) for i in range(50)))
    server.stop(sig)
    server.start()
    assert committed(server.url) == set(range(50))
    await writer.submit(numbered(50))  # the same writer goes on after the restart
    await writer.close()
    assert committed(server.url) == set(range(51))


async def test_a_redis_that_comes_back_empty_is_reported_not_written_into(private_redis: Callable[..., PrivateRedis]) -> None:
    server = private_redis(None)  # no persistence at all
    events = Events()
    writer = StoreWriter(open_store(server.url, prefix=PREFIX), asyncio.get_running_loop(),
                         on_unavailable=events.unavailable, sweep_every=None)
    await writer.submit(numbered(0))
    server.stop(signal.SIGTERM)
    during = writer.submit(numbered(1))
    await asyncio.wait_for(events.down.wait(), 20)
    server.start()
    with pytest.raises(StoreIncompatible, match="Redis came back without its data"):
        await asyncio.wait_for(during, 30)
    with pytest.raises(StoreIncompatible, match="schema key is gone"):
        await writer.submit(numbered(2))
    client = server.client()
    assert client.dbsize() == 0  # nothing was written into the empty Redis
    client.close()
    await writer.close()
