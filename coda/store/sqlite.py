"""SQLiteStore: the embedded durable store (``--store sqlite:///PATH``), stdlib :mod:`sqlite3`.

WAL journal: readers never block the writer and the writer never blocks readers. One writer
connection, used by whoever commits (the :class:`~coda.store.writer.StoreWriter` thread); each
reading thread gets a connection of its own. A batch is one ``BEGIN IMMEDIATE … COMMIT``.

Durability (``PRAGMA synchronous``):

- ``NORMAL`` (the default): a commit is in the WAL file when :meth:`commit` returns, so it
  survives the process being killed (SIGKILL, OOM); the WAL is fsynced at checkpoints, so a
  power loss or kernel crash may lose the last commits (never corrupt the database).
- ``FULL`` (``?synchronous=full``): the WAL is fsynced at every commit, so a commit that
  returned survives a power loss too; each commit costs an fsync.

Schema version :data:`SCHEMA_VERSION` lives in table ``meta`` beside a ``coda`` marker. A file
that is not SQLite, a database with tables that are not Coda's, or a newer schema version is
refused at :meth:`open` with the path and the versions named; nothing is ever reset.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from coda.errors import StoreError, StoreIncompatible, StoreUnavailable
from coda.store import codec
from coda.store.base import (
    ACTIVE,
    Batch,
    BatchResult,
    LoadedRun,
    RunQuery,
    RunRecord,
    SCHEMA_VERSION,
    StepRecord,
    Store,
    TimerRecord,
)

__all__ = ["SQLiteStore"]

logger = logging.getLogger(__name__)

_MARKER = "coda-store"
_BUSY_TIMEOUT_MS = 10_000
_SWEEP_CHUNK = 1_000
_ACTIVE_SQL = "('" + "','".join(sorted(ACTIVE)) + "')"

_SCHEMA = [
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID",
    "CREATE TABLE runs (run_id TEXT PRIMARY KEY, state TEXT NOT NULL, workflow TEXT NOT NULL,"
    " attempt INTEGER NOT NULL, created_at REAL NOT NULL, finished_at REAL, record BLOB NOT NULL)",
    "CREATE INDEX runs_by_state ON runs (state, created_at)",
    "CREATE INDEX runs_by_workflow ON runs (workflow, created_at)",
    "CREATE INDEX runs_by_created ON runs (created_at)",
    "CREATE INDEX runs_by_finished ON runs (finished_at) WHERE finished_at IS NOT NULL",
    # Rowid tables with a unique key: the records append to the table's last pages and only
    # the small key entries land all over the index — what keeps a commit that touches a
    # hundred runs to a few dirty pages a run (a WITHOUT ROWID table rewrites a page per run).
    "CREATE TABLE steps (run_id TEXT NOT NULL, attempt INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " record BLOB NOT NULL, UNIQUE (run_id, attempt, seq))",
    "CREATE TABLE memo (run_id TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL, UNIQUE (run_id, key))",
    "CREATE TABLE timers (run_id TEXT NOT NULL, attempt INTEGER NOT NULL, seq INTEGER NOT NULL,"
    " record BLOB NOT NULL, PRIMARY KEY (run_id, attempt, seq)) WITHOUT ROWID",
]
_TABLES = frozenset({"meta", "runs", "steps", "memo", "timers"})
# Upserts that set only what can change, so the indexes on what cannot (a run's workflow and
# created_at) are left alone.
_PUT_RUN = (
    "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id) DO UPDATE SET"
    " state = excluded.state, attempt = excluded.attempt, finished_at = excluded.finished_at, record = excluded.record"
)
_PUT_STEP = "INSERT INTO steps VALUES (?, ?, ?, ?) ON CONFLICT (run_id, attempt, seq) DO UPDATE SET record = excluded.record"
_PUT_MEMO = "INSERT INTO memo VALUES (?, ?, ?) ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value"

# Primary result codes that mean "not now" (busy, I/O, full, cannot open, read-only, no
# memory): the writer keeps the batch and retries. Anything else is not transient.
_TRANSIENT = frozenset({5, 6, 7, 8, 10, 13, 14, 15})
_SYNCHRONOUS = {"normal": "NORMAL", "full": "FULL"}


class SQLiteStore(Store):
    """A store in one SQLite file. ``synchronous``: ``"normal"`` (default) or ``"full"``."""

    def __init__(self, path: str, *, synchronous: str = "normal", retention: float = 600.0) -> None:
        super().__init__(retention=retention)
        if synchronous not in _SYNCHRONOUS:
            raise StoreError(f"sqlite store {path!r}: synchronous must be 'normal' or 'full', got {synchronous!r}")
        self.path = os.path.abspath(path)
        self.synchronous = synchronous
        self._writer: sqlite3.Connection | None = None
        self._writer_lock = threading.Lock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False

    def describe(self) -> str:
        suffix = "?synchronous=full" if self.synchronous == "full" else ""
        return f"sqlite://{self.path}{suffix}"

    # -- connections ---------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise StoreError(f"{self.describe()}: the store is closed")
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=_BUSY_TIMEOUT_MS / 1000)
            conn.execute(f"PRAGMA synchronous={_SYNCHRONOUS[self.synchronous]}")
        except sqlite3.Error as exc:
            raise self._error(exc, "cannot open") from None
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect()
            with self._readers_lock:
                self._readers.append(conn)
            self._local.conn = conn
        return conn

    def _error(self, exc: sqlite3.Error, doing: str) -> StoreError:
        code = getattr(exc, "sqlite_errorcode", None)
        name = getattr(exc, "sqlite_errorname", type(exc).__name__)
        where = f"{self.describe()}: {doing}: {exc} ({name})"
        if code is not None and code & 0xFF in _TRANSIENT:
            return StoreUnavailable(where)
        if isinstance(exc, sqlite3.ProgrammingError):  # a closed connection, a misuse
            return StoreError(where)
        return StoreIncompatible(f"{where}; the file is corrupt or not a Coda store, and is left as it is")

    @contextmanager
    def _reading(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query inside sees the same snapshot."""
        conn = self._reader()
        try:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")
        except sqlite3.Error as exc:
            raise self._error(exc, doing) from None
        except StoreIncompatible as exc:  # a record the codec cannot read
            raise StoreIncompatible(f"{self.describe()}: {doing}: {exc}") from None

    # -- schema --------------------------------------------------------------------------------

    def open(self) -> None:
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise StoreError(f"{self.describe()}: directory {directory!r} does not exist (Coda does not create it)")
        with self._writer_lock:
            if self._writer is None:
                conn = self._connect()
                try:
                    self._check_schema(conn)
                    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                except sqlite3.Error as exc:
                    conn.close()
                    raise self._error(exc, "cannot read the schema") from None
                except StoreError:
                    conn.close()
                    raise
                if str(mode).lower() != "wal":
                    conn.close()
                    raise StoreUnavailable(f"{self.describe()}: cannot switch to WAL journal mode (got {mode!r})")
                self._writer = conn
        logger.info("coda.store.opened", extra={"store": self.describe()})

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # two supervisors opening one new file: one creates it
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("marker", _MARKER), ("schema_version", str(SCHEMA_VERSION))],
                )
            else:
                self._check_existing(conn, tables)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _check_existing(self, conn: sqlite3.Connection, tables: set[str]) -> None:
        meta: dict[str, str] = {}
        if "meta" in tables:
            meta = {str(k): str(v) for k, v in conn.execute("SELECT key, value FROM meta")}
        if meta.get("marker") != _MARKER:
            found = ", ".join(sorted(tables))
            raise StoreIncompatible(
                f"{self.describe()} is a SQLite database that is not a Coda store (tables: {found}); "
                "point --store at another file"
            )
        raw = meta.get("schema_version", "")
        if not raw.isdigit():
            raise StoreIncompatible(f"{self.describe()}: schema version {raw!r} is not a number")
        version = int(raw)
        if version > SCHEMA_VERSION:
            raise StoreIncompatible(
                f"{self.describe()} has schema version {version}, written by a newer Coda; this Coda "
                f"reads schema version {SCHEMA_VERSION} at most: upgrade Coda, or use another store"
            )
        if version < 1:
            raise StoreIncompatible(f"{self.describe()}: schema version {version} is not one Coda ever wrote")
        missing = _TABLES - tables
        if missing:
            raise StoreIncompatible(f"{self.describe()}: the Coda schema is incomplete (missing tables: {', '.join(sorted(missing))})")

    # -- writes --------------------------------------------------------------------------------

    def commit(self, batch: Batch) -> BatchResult:
        # Encode first: no lock is held while msgpack works.
        runs = [
            (r.run_id, r.state, r.workflow, r.attempt, r.created_at, r.finished_at, codec.encode_run(r))
            for r in batch.runs.values()
        ]
        steps = [(s.run_id, s.attempt, s.seq, codec.encode_step(s)) for s in batch.steps.values()]
        memo = [(run_id, key, codec.encode_value(v)) for (run_id, key), v in batch.memo.items()]
        timers = [(t.run_id, t.attempt, t.seq, codec.encode_timer(t)) for t in batch.timers.values() if t is not None]
        untimed: list[tuple[Any, ...]] = [key for key, t in batch.timers.items() if t is None]
        untimed += [(r.run_id,) for r in batch.runs.values() if r.finished]  # a finished run has no timers
        deletes = [(run_id,) for run_id in batch.deletes]
        with self._writer_lock:
            conn = self._writer
            if conn is None:
                raise StoreError(f"{self.describe()}: commit before open() (or after close())")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    if deletes:
                        for table in ("runs", "steps", "memo", "timers"):
                            conn.executemany(f"DELETE FROM {table} WHERE run_id = ?", deletes)
                    if runs:
                        conn.executemany(_PUT_RUN, runs)
                    if steps:
                        conn.executemany(_PUT_STEP, steps)
                    if memo:
                        conn.executemany(_PUT_MEMO, memo)
                    for key in untimed:
                        where = "run_id = ? AND attempt = ? AND seq = ?" if len(key) == 3 else "run_id = ?"
                        conn.execute(f"DELETE FROM timers WHERE {where}", key)
                    if timers:
                        conn.executemany("INSERT OR REPLACE INTO timers VALUES (?, ?, ?, ?)", timers)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._error(exc, f"commit of {batch!r}") from None
        return BatchResult()

    def sweep(self, now: float) -> int:
        horizon = now - self.retention
        removed = 0
        with self._writer_lock:
            conn = self._writer
            if conn is None:
                raise StoreError(f"{self.describe()}: sweep before open() (or after close())")
            try:
                while True:
                    # In chunks: a long sweep must not hold the write lock against commits.
                    conn.execute("BEGIN IMMEDIATE")
                    try:
                        ids = [
                            row[:1]
                            for row in conn.execute(
                                f"SELECT run_id FROM runs WHERE finished_at IS NOT NULL AND finished_at <= ?"
                                f" AND state NOT IN {_ACTIVE_SQL} LIMIT {_SWEEP_CHUNK}",
                                (horizon,),
                            )
                        ]
                        for table in ("runs", "steps", "memo", "timers"):
                            conn.executemany(f"DELETE FROM {table} WHERE run_id = ?", ids)
                        conn.execute("COMMIT")
                    except BaseException:
                        if conn.in_transaction:
                            conn.execute("ROLLBACK")
                        raise
                    removed += len(ids)
                    if len(ids) < _SWEEP_CHUNK:
                        return removed
            except sqlite3.Error as exc:
                raise self._error(exc, "sweep") from None

    # -- reads ---------------------------------------------------------------------------------

    def load_active(self) -> list[LoadedRun]:
        with self._reading("load the active runs") as conn:
            runs = [
                codec.decode_run(row[0])
                for row in conn.execute(f"SELECT record FROM runs WHERE state IN {_ACTIVE_SQL} ORDER BY created_at, run_id")
            ]
            memo: dict[str, dict[bytes, Any]] = {r.run_id: {} for r in runs}
            steps: dict[str, list[StepRecord]] = {r.run_id: [] for r in runs}
            timers: dict[str, list[TimerRecord]] = {r.run_id: [] for r in runs}
            joined = f"JOIN runs r ON r.run_id = x.run_id WHERE r.state IN {_ACTIVE_SQL}"
            for run_id, key, value in conn.execute(f"SELECT x.run_id, x.key, x.value FROM memo x {joined}"):
                memo[run_id][key] = codec.decode_value(value)
            current = f"{joined} AND x.attempt = r.attempt"
            for run_id, attempt, seq, record in conn.execute(f"SELECT x.run_id, x.attempt, x.seq, x.record FROM steps x {current}"):
                steps[run_id].append(codec.decode_step(run_id, attempt, seq, record))
            for run_id, attempt, seq, record in conn.execute(f"SELECT x.run_id, x.attempt, x.seq, x.record FROM timers x {current}"):
                timers[run_id].append(codec.decode_timer(run_id, attempt, seq, record))
        return [LoadedRun.assemble(r, memo[r.run_id], steps[r.run_id], timers[r.run_id]) for r in runs]

    def load_run(self, run_id: str) -> LoadedRun | None:
        with self._reading(f"load run {run_id!r}") as conn:
            row = conn.execute("SELECT record FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                return None
            run = codec.decode_run(row[0])
            memo = {k: codec.decode_value(v) for k, v in conn.execute("SELECT key, value FROM memo WHERE run_id = ?", (run_id,))}
            if run.finished:
                return LoadedRun(run, memo)
            args = (run_id, run.attempt)
            steps = [
                codec.decode_step(run_id, run.attempt, seq, record)
                for seq, record in conn.execute("SELECT seq, record FROM steps WHERE run_id = ? AND attempt = ?", args)
            ]
            timers = [
                codec.decode_timer(run_id, run.attempt, seq, record)
                for seq, record in conn.execute("SELECT seq, record FROM timers WHERE run_id = ? AND attempt = ?", args)
            ]
        return LoadedRun.assemble(run, memo, steps, timers)

    def list_runs(self, query: RunQuery) -> list[RunRecord]:
        where: list[str] = []
        params: list[Any] = []
        for column, op, value in (
            ("state", "=", query.state),
            ("workflow", "=", query.workflow),
            ("created_at", ">=", query.since),
            ("created_at", "<", query.until),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        sql = "SELECT record FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, run_id DESC LIMIT ?"
        params.append(query.limit)
        with self._reading("list runs") as conn:
            return [codec.decode_run(row[0]) for row in conn.execute(sql, params)]

    def steps(self, run_id: str) -> list[StepRecord]:
        with self._reading(f"read the steps of run {run_id!r}") as conn:
            rows = conn.execute("SELECT attempt, seq, record FROM steps WHERE run_id = ? ORDER BY attempt, seq", (run_id,))
            return [codec.decode_step(run_id, attempt, seq, record) for attempt, seq, record in rows]

    def close(self) -> None:
        self._closed = True
        with self._writer_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
