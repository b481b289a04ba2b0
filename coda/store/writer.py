"""StoreWriter: the supervisor's I/O edge to its store — group commit on one thread, reads
on a small pool, both awaited from the event loop.

Group commit: :meth:`StoreWriter.submit` hands a :class:`~coda.store.base.Batch` to the
writer thread and returns a future. Everything submitted while a commit is in flight is merged
into the next one (puts coalesce), so durability costs one transaction per commit, however
many loop turns and steps it holds. Futures are resolved on the loop, in submission order.

When a commit fails with :class:`~coda.errors.StoreUnavailable` (connection lost, disk full,
database locked) the writer keeps the batch, reports the outage once (``on_unavailable``, on
the loop), retries with backoff (50 ms doubling to 1 s) for as long as it takes, folds what is
submitted meanwhile into the same retry (in order: the retried batch is the older), and reports
``on_available`` after the first commit that succeeds. An accepted batch is never dropped.

Bounded memory: at most ``max_pending`` records (run, step, memo and timer puts after
coalescing, default 100,000 — about 30 MB of record objects, plus the values they share with
the supervisor's memory) wait for a commit. Past that :meth:`submit` raises
:class:`~coda.errors.StoreUnavailable` at once instead of growing without bound.

Any other error of a commit (a bug, a store that turned out corrupt) fails the futures of
that commit with a :class:`~coda.errors.StoreError` and is logged; later batches go on.

For a store that is not durable (the in-memory one) there is no thread: :meth:`submit`
commits inline and returns a future that is already done, and reads run inline.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from coda.errors import StoreError, StoreUnavailable
from coda.store.base import Batch, BatchResult, LoadedRun, RunQuery, RunRecord, StepRecord, Store

__all__ = ["DEFAULT_MAX_PENDING", "StoreWriter"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_PENDING = 100_000
BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0
_T = TypeVar("_T")
Waiting = list["asyncio.Future[BatchResult]"]


class StoreWriter:
    """Commits batches to ``store`` on a thread of its own and answers on ``loop``.

    ``on_unavailable(error)`` and ``on_available()`` are called on the loop when the store
    goes away and when a commit succeeds again. ``sweep_every``: seconds between retention
    sweeps (``store.sweep(clock())``, on the writer thread); None: never.
    """

    def __init__(
        self,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        *,
        on_unavailable: Callable[[StoreError], None] | None = None,
        on_available: Callable[[], None] | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
        readers: int = 2,
        sweep_every: float | None = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be >= 1, got {max_pending}")
        self.store = store
        self.loop = loop
        self.max_pending = max_pending
        self._on_unavailable = on_unavailable
        self._on_available = on_available
        self._sweep_every = sweep_every
        self._clock = clock
        self._inline = not store.durable
        self._cond = threading.Condition()
        self._pending = Batch()
        self._waiting: Waiting = []
        self._in_flight = 0  # records in the commit under way (counted against max_pending)
        self._available = True
        self._down_since: float | None = None
        #: Commits that succeeded, and the records they held (for status and metrics).
        self.commits = 0
        self.records = 0
        self._closing = False
        self._abandon = False
        self._closed = False
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._sweep_handle: asyncio.TimerHandle | None = None
        if self._inline:
            self._schedule_inline_sweep()
        else:
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=readers, thread_name_prefix="coda-store-read")
            self._thread = threading.Thread(target=self._run, name="coda-store-writer", daemon=True)
            self._thread.start()

    # -- the loop's side -----------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False from a failed commit until the next one that succeeds."""
        return self._available

    @property
    def pending(self) -> int:
        """Records submitted and not yet committed."""
        with self._cond:
            return self._in_flight + len(self._pending)

    def submit(self, batch: Batch) -> asyncio.Future[BatchResult]:
        """Queue ``batch`` for the next commit; the future resolves once it is committed.
        Raises :class:`StoreUnavailable` when ``max_pending`` records already wait."""
        if self._closing:
            raise StoreError(f"{self.store.describe()}: the store writer is closed")
        future: asyncio.Future[BatchResult] = self.loop.create_future()
        if self._inline:
            future.set_result(self.store.commit(batch))
            self.commits += 1
            self.records += len(batch)
            return future
        with self._cond:
            waiting = self._in_flight + len(self._pending)
            if waiting + len(batch) > self.max_pending:
                state = "unavailable" if not self._available else "behind"
                raise StoreUnavailable(
                    f"{self.store.describe()} is {state}: {waiting} records wait for a commit "
                    f"(the limit is {self.max_pending}); refusing more until it catches up"
                )
            self._pending.merge(batch)
            self._waiting.append(future)
            self._cond.notify()
        return future

    async def flush(self) -> None:
        """Wait until everything submitted so far is committed."""
        if not self._inline and self.pending:
            await self.submit(Batch())

    async def read(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` (a store read) on the read pool, awaited."""
        if self._pool is None:
            return fn(*args)
        return await self.loop.run_in_executor(self._pool, fn, *args)

    async def load_active(self) -> list[LoadedRun]:
        return await self.read(self.store.load_active)

    async def load_run(self, run_id: str) -> LoadedRun | None:
        return await self.read(self.store.load_run, run_id)

    async def list_runs(self, query: RunQuery) -> list[RunRecord]:
        return await self.read(self.store.list_runs, query)

    async def steps(self, run_id: str) -> list[StepRecord]:
        return await self.read(self.store.steps, run_id)

    async def close(self, timeout: float | None = 30.0) -> None:
        """Commit what is pending (waiting up to ``timeout`` seconds for an unavailable store),
        then stop and close the store. What could not be committed by then fails its futures
        with :class:`StoreUnavailable` and is logged."""
        if self._closed:
            return
        self._closed = True
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
        thread = self._thread
        if thread is not None:
            await asyncio.to_thread(thread.join, timeout)
            if thread.is_alive():
                with self._cond:
                    self._abandon = True
                    self._cond.notify_all()
                await asyncio.to_thread(thread.join)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.store.close()

    # -- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        next_sweep = None if self._sweep_every is None else time.monotonic() + self._sweep_every
        while True:
            with self._cond:
                while not self._waiting and not self._closing:
                    if next_sweep is not None and time.monotonic() >= next_sweep:
                        break
                    self._cond.wait(None if next_sweep is None else max(0.0, next_sweep - time.monotonic()))
                if self._closing and not self._waiting:
                    return
                batch, waiting = self._pending, self._waiting
                self._pending, self._waiting = Batch(), []
                self._in_flight = len(batch)
            if waiting:
                self._commit(batch, waiting)
            if next_sweep is not None and time.monotonic() >= next_sweep:
                self._sweep()
                next_sweep = time.monotonic() + (self._sweep_every or 0.0)

    def _commit(self, batch: Batch, waiting: Waiting) -> None:
        delay = BACKOFF_MIN
        while True:
            try:
                result = self.store.commit(batch) if len(batch) else BatchResult()
            except StoreUnavailable as exc:
                self._went_down(exc, batch)
                with self._cond:
                    if not self._abandon:
                        self._cond.wait(delay)
                    if self._abandon:
                        self._in_flight = 0
                        self._give_up(waiting + self._waiting, len(batch) + len(self._pending), exc)
                        self._pending, self._waiting = Batch(), []
                        return
                    # One retry for everything so far: coalesced, the failed batch first.
                    batch.merge(self._pending)
                    waiting += self._waiting
                    self._pending, self._waiting = Batch(), []
                    self._in_flight = len(batch)
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            except Exception as exc:
                error = exc if isinstance(exc, StoreError) else StoreError(f"{self.store.describe()}: commit failed: {exc!r}")
                logger.error(
                    "coda.store.commit_failed", exc_info=exc,
                    extra={"store": self.store.describe(), "error": repr(exc), "records": len(batch), "waiters": len(waiting)},
                )
                with self._cond:
                    self._in_flight = 0
                self._answer(waiting, None, error)
                return
            with self._cond:
                self._in_flight = 0
            self.commits += 1
            self.records += len(batch)
            if not self._available:
                self._came_back()  # first: the loop hears the store is back before the acks
            self._answer(waiting, result, None)
            return

    def _went_down(self, exc: StoreUnavailable, batch: Batch) -> None:
        if not self._available:
            return
        self._available = False
        self._down_since = time.monotonic()
        logger.warning(
            "coda.store.unavailable", extra={"store": self.store.describe(), "error": str(exc), "records_kept": len(batch)},
        )
        if self._on_unavailable is not None:
            self._call_soon(self._on_unavailable, exc)

    def _came_back(self) -> None:
        down = time.monotonic() - (self._down_since or time.monotonic())
        self._available = True
        self._down_since = None
        logger.warning("coda.store.available", extra={"store": self.store.describe(), "down_seconds": round(down, 3)})
        if self._on_available is not None:
            self._call_soon(self._on_available)

    def _give_up(self, waiting: Waiting, records: int, exc: StoreUnavailable) -> None:
        logger.error(
            "coda.store.unflushed", extra={"store": self.store.describe(), "records_not_committed": records, "error": str(exc)},
        )
        error = StoreUnavailable(f"{self.store.describe()}: closed before the store came back ({records} records not committed)")
        self._answer(waiting, None, error)

    def _sweep(self) -> None:
        try:
            removed = self.store.sweep(self._clock())
        except StoreError as exc:
            logger.warning("coda.store.sweep_failed", extra={"store": self.store.describe(), "error": str(exc)})
            return
        if removed:
            logger.info("coda.store.swept", extra={"store": self.store.describe(), "runs_removed": removed})

    def _answer(self, waiting: Waiting, result: BatchResult | None, error: BaseException | None) -> None:
        def resolve() -> None:
            for future in waiting:
                if future.done():
                    continue
                if error is None:
                    future.set_result(result)  # type: ignore[arg-type]
                else:
                    future.set_exception(error)

        self._call_soon(resolve)

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass

    # -- inline (a store that is not durable) --------------------------------------------------

    def _schedule_inline_sweep(self) -> None:
        if self._sweep_every is not None and not self._closing:
            self._sweep_handle = self.loop.call_later(self._sweep_every, self._inline_sweep)

    def _inline_sweep(self) -> None:
        self._sweep()
        self._schedule_inline_sweep()
