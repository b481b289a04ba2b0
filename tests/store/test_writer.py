"""StoreWriter: group commit, outages (kept, retried, reported), the memory bound, close."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from coda.errors import StoreError, StoreUnavailable
from coda.store import Batch, BatchResult, LoadedRun, MemoryStore, StoreWriter, open_store
from tests.store.records import batch, run, step


class GatedStore(MemoryStore):
    """A MemoryStore that poses as durable (so the writer uses its thread) and that a test can
    hold (gate), take down (down), or poison (a run id whose commit raises a bug)."""

    durable = True

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.down = False
        self.commits: list[int] = []  # records per successful commit
        self.attempts = 0
        self.closed = False
        self.read_threads: list[str] = []

    def commit(self, batch: Batch) -> BatchResult:
        self.attempts += 1
        self.entered.set()
        self.gate.wait()
        if self.down:
            raise StoreUnavailable("gated: down")
        if "poison" in batch.runs:
            raise ValueError("a bug in the store")
        result = super().commit(batch)
        self.commits.append(len(batch))
        return result

    def load_run(self, run_id: str) -> LoadedRun | None:
        self.read_threads.append(threading.current_thread().name)
        return super().load_run(run_id)

    def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("coda.store.writer.BACKOFF_MAX", 0.1)


async def until(condition: Any, what: str, timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


async def test_everything_submitted_during_a_commit_becomes_the_next_single_commit() -> None:
    store = GatedStore()
    writer = StoreWriter(store, asyncio.get_running_loop())
    store.gate.clear()
    first = writer.submit(batch(run("r0"), step("r0", 0)))
    await until(store.entered.is_set, "the first commit to start")
    order: list[int] = []
    rest = []
    for n in range(1, 50):
        future = writer.submit(batch(run(f"r{n}"), step(f"r{n}", 0)))
        future.add_done_callback(lambda _f, n=n: order.append(n))
        rest.append(future)
    assert writer.pending == 100
    store.gate.set()
    await asyncio.gather(first, *rest)
    assert store.commits == [2, 98]  # one transaction for the 49 batches that waited
    assert (writer.commits, writer.records) == (2, 100)
    assert order == list(range(1, 50))  # resolved in submission order
    assert writer.pending == 0
    assert len(store.load_active()) == 50
    await writer.close()
    assert store.closed


async def test_an_outage_is_reported_once_and_nothing_accepted_is_lost() -> None:
    store = GatedStore()
    events: list[str] = []
    loop = asyncio.get_running_loop()
    on_loop: list[bool] = []

    def unavailable(error: StoreError) -> None:
        on_loop.append(threading.current_thread() is threading.main_thread())
        events.append(f"down: {error}")

    writer = StoreWriter(store, loop, on_unavailable=unavailable, on_available=lambda: events.append("up"))
    await writer.submit(batch(run("r1", counts={"n": 0})))
    store.down = True
    futures = [writer.submit(batch(run("r1", counts={"n": n}), step("r1", n))) for n in range(1, 21)]
    await until(lambda: events, "the outage to be reported")
    assert events == ["down: gated: down"] and on_loop == [True]
    assert not writer.available
    more = [writer.submit(batch(run("r2"))) for _ in range(5)]  # still accepted while down
    await until(lambda: store.attempts > 4, "a few retries")
    assert not any(f.done() for f in futures + more)
    store.down = False
    await asyncio.gather(*futures, *more)
    assert events == ["down: gated: down", "up"]
    assert writer.available
    loaded = store.load_run("r1")
    assert loaded is not None
    assert loaded.run.counts == {"n": 20}  # the last put, as if committed one by one
    assert [s.seq for s in loaded.steps] == list(range(1, 21))
    assert store.load_run("r2") is not None
    await writer.close()


async def test_past_the_bound_submit_fails_at_once_and_coalescing_keeps_under_it() -> None:
    store = GatedStore()
    writer = StoreWriter(store, asyncio.get_running_loop(), max_pending=10)
    store.down = True
    first = writer.submit(batch(run("a"), step("a", 0), step("a", 1)))
    await until(lambda: store.attempts >= 1, "the first failed commit")
    # A run's counts written at every step coalesce: a thousand puts of one run hold 1 record.
    for n in range(1000):
        writer.submit(batch(run("a", counts={"n": n})))
    accepted = [writer.submit(batch(run(f"b{n}"), step(f"b{n}", 0))) for n in range(3)]
    # 3 in the failed commit, then 1 + 6 waiting; 9 once the retry has folded them in.
    assert writer.pending in (9, 10)
    with pytest.raises(StoreUnavailable, match=r"is unavailable: (9|10) records wait for a commit \(the limit is 10\)"):
        writer.submit(batch(run("c"), step("c", 0)))
    store.down = False
    await asyncio.gather(first, *accepted)
    loaded = store.load_run("a")
    assert loaded is not None and loaded.run.counts == {"n": 999}
    assert store.load_run("c") is None
    await writer.close()


async def test_a_commit_that_fails_for_a_bug_fails_its_futures_and_later_ones_go_on(caplog: pytest.LogCaptureFixture) -> None:
    store = GatedStore()
    writer = StoreWriter(store, asyncio.get_running_loop())
    with pytest.raises(StoreError, match="commit failed: ValueError"):
        await writer.submit(batch(run("poison")))
    assert "coda.store.commit_failed" in caplog.text
    await writer.submit(batch(run("fine")))
    assert store.load_run("fine") is not None
    await writer.close()


async def test_close_commits_what_is_pending() -> None:
    store = GatedStore()
    writer = StoreWriter(store, asyncio.get_running_loop())
    store.gate.clear()
    futures = [writer.submit(batch(run(f"r{n}"))) for n in range(10)]
    await until(store.entered.is_set, "a commit to start")
    closing = asyncio.ensure_future(writer.close())
    await asyncio.sleep(0.05)
    assert not closing.done()
    store.gate.set()
    await closing
    assert all(f.done() and f.exception() is None for f in futures)
    assert len(store.load_active()) == 10
    with pytest.raises(StoreError, match="closed"):
        writer.submit(batch(run("late")))


async def test_close_gives_up_after_its_timeout_while_the_store_is_down(caplog: pytest.LogCaptureFixture) -> None:
    store = GatedStore()
    writer = StoreWriter(store, asyncio.get_running_loop())
    store.down = True
    futures = [writer.submit(batch(run(f"r{n}"))) for n in range(3)]
    await until(lambda: store.attempts >= 2, "retries")
    await writer.close(timeout=0.2)
    for future in futures:
        with pytest.raises(StoreUnavailable, match=r"closed before the store came back \(3 records not committed\)"):
            await future
    assert "coda.store.unflushed" in caplog.text


async def test_reads_run_on_the_pool_not_the_loop_or_the_writer() -> None:
    store = GatedStore()
    writer = StoreWriter(store, asyncio.get_running_loop())
    await writer.submit(batch(run("r1")))
    store.gate.clear()  # the writer thread is stuck in a commit; reads still answer
    pending = writer.submit(batch(run("r2")))
    await until(lambda: store.attempts == 2, "the second commit to start")
    loaded = await writer.load_run("r1")
    assert loaded is not None and loaded.run.run_id == "r1"
    assert store.read_threads[0].startswith("coda-store-read")
    store.gate.set()
    await pending
    await writer.close()


async def test_the_in_memory_store_commits_inline_with_no_thread() -> None:
    store = MemoryStore()
    writer = StoreWriter(store, asyncio.get_running_loop())
    future = writer.submit(batch(run("r1")))
    assert future.done() and future.result() == BatchResult()
    assert writer._thread is None
    assert (await writer.load_run("r1")) is not None
    await writer.close()


async def test_the_writer_sweeps_on_its_own_clock() -> None:
    fake_now = [0.0]
    store = open_store("memory", retention=60)
    writer = StoreWriter(store, asyncio.get_running_loop(), sweep_every=0.02, clock=lambda: fake_now[0])
    writer.submit(batch(run("old", state="succeeded", finished_at=1000.0), run("active")))
    fake_now[0] = 1059.0
    await asyncio.sleep(0.1)
    assert store.load_run("old") is not None
    fake_now[0] = 1060.0
    await until(lambda: store.load_run("old") is None, "the sweep")
    assert store.load_run("active") is not None
    await writer.close()


async def test_group_commit_on_a_real_sqlite_file_with_reads_beside_it(tmp_path: Path) -> None:
    store = open_store(f"sqlite://{tmp_path}/coda.db")
    writer = StoreWriter(store, asyncio.get_running_loop(), sweep_every=None)
    futures = []
    for n in range(200):
        futures.append(writer.submit(batch(run("r1", counts={"n": n}), step("r1", n))))
        if n % 50 == 0:
            loaded = await writer.load_run("r1")
            assert loaded is None or loaded.run.counts["n"] <= n
    await asyncio.gather(*futures)
    steps = await writer.steps("r1")
    assert [s.seq for s in steps] == list(range(200))
    await writer.close()


async def test_a_sqlite_file_locked_by_another_process_is_an_outage_ridden_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    monkeypatch.setattr("coda.store.sqlite._BUSY_TIMEOUT_MS", 20)
    path = tmp_path / "coda.db"
    events: list[str] = []
    writer = StoreWriter(open_store(f"sqlite://{path}"), asyncio.get_running_loop(), sweep_every=None,
                         on_unavailable=lambda e: events.append(f"down: {e}"), on_available=lambda: events.append("up"))
    await writer.submit(batch(run("r0")))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # holds the write lock, as a stuck backup or a full disk would
    futures = [writer.submit(batch(run(f"r{n}"), step(f"r{n}", 0))) for n in range(1, 30)]
    await until(lambda: events, "the outage to be reported")
    assert "database is locked" in events[0]
    assert not any(f.done() for f in futures)
    blocker.execute("ROLLBACK")
    blocker.close()
    await asyncio.gather(*futures)
    assert events[1:] == ["up"]
    assert len(await writer.load_active()) == 30
    await writer.close()
