"""Durable state: where a supervisor keeps its runs, memo, steps and timers (``--store``).

::

    base.py     the Store interface, the records, Batch
    codec.py    records <-> bytes (msgpack, a version byte per record)
    memory.py   MemoryStore: the in-memory twin (--store memory, the default)
    sqlite.py   SQLiteStore: embedded, durable on one machine (--store sqlite:///PATH)
    redis.py    RedisStore: shared (--store redis://HOST:PORT/DB)
    writer.py   StoreWriter: group commit on a thread, reads on a pool (the I/O edge)
    url.py      open_store(url), parse_duration(text)

Nothing outside a backend's own module knows which backend it is: a new backend is one new
module and one line in :func:`~coda.store.url.store_from_url`.
"""

from __future__ import annotations

from coda.store.base import (
    Batch,
    BatchResult,
    LoadedRun,
    RunQuery,
    RunRecord,
    StepRecord,
    Store,
    TimerRecord,
)
from coda.store.memory import MemoryStore
from coda.store.url import DEFAULT_PREFIX, open_store, parse_duration, store_from_url
from coda.store.writer import StoreWriter

__all__ = [
    "Batch",
    "BatchResult",
    "DEFAULT_PREFIX",
    "LoadedRun",
    "MemoryStore",
    "RunQuery",
    "RunRecord",
    "StepRecord",
    "Store",
    "StoreWriter",
    "TimerRecord",
    "open_store",
    "parse_duration",
    "store_from_url",
]
