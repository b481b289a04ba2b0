"""MemoryStore: the in-memory twin of the durable stores (``--store memory``).

Plain dicts, no encoding, nothing survives the process: what the supervisor keeps in memory
anyway, behind the same interface and the same conformance tests as SQLite and Redis. Values
are held by reference (the supervisor never mutates a value it has stored), so a commit costs
a few dict writes.
"""

from __future__ import annotations

import threading
from typing import Any

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

__all__ = ["MemoryStore"]


class _Entry:
    __slots__ = ("memo", "run", "steps", "timers")

    def __init__(self) -> None:
        self.run: RunRecord | None = None
        self.memo: dict[bytes, Any] = {}
        self.steps: dict[tuple[int, int], StepRecord] = {}
        self.timers: dict[tuple[int, int], TimerRecord] = {}


class MemoryStore(Store):
    """Runs in dicts. Thread-safe (one lock), so the writer and readers may use it as they
    use the durable stores."""

    durable = False

    def __init__(self, *, retention: float = 600.0) -> None:
        super().__init__(retention=retention)
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def open(self) -> None:
        pass

    def commit(self, batch: Batch) -> BatchResult:
        with self._lock:
            entries = self._entries
            for run_id in batch.deletes:
                entries.pop(run_id, None)
            for run_id, run in batch.runs.items():
                self._entry(run_id).run = run
            for (run_id, attempt, seq), step in batch.steps.items():
                self._entry(run_id).steps[(attempt, seq)] = step
            for (run_id, key), value in batch.memo.items():
                self._entry(run_id).memo[key] = value
            for (run_id, attempt, seq), timer in batch.timers.items():
                if timer is None:
                    entry = entries.get(run_id)
                    if entry is not None:
                        entry.timers.pop((attempt, seq), None)
                else:
                    self._entry(run_id).timers[(attempt, seq)] = timer
        return BatchResult()

    def _entry(self, run_id: str) -> _Entry:
        entry = self._entries.get(run_id)
        if entry is None:
            entry = self._entries[run_id] = _Entry()
        return entry

    @staticmethod
    def _loaded(entry: _Entry) -> LoadedRun | None:
        if entry.run is None:
            return None  # steps or memo written ahead of the run's own record
        return LoadedRun.assemble(entry.run, dict(entry.memo), entry.steps.values(), entry.timers.values())

    def load_active(self) -> list[LoadedRun]:
        with self._lock:
            loaded = [self._loaded(e) for e in self._entries.values() if e.run is not None and not e.run.finished]
        runs = [r for r in loaded if r is not None]
        runs.sort(key=lambda r: (r.run.created_at, r.run.run_id))
        return runs

    def load_run(self, run_id: str) -> LoadedRun | None:
        with self._lock:
            entry = self._entries.get(run_id)
            return None if entry is None else self._loaded(entry)

    def list_runs(self, query: RunQuery) -> list[RunRecord]:
        with self._lock:
            runs = [e.run for e in self._entries.values() if e.run is not None and query.matches(e.run)]
        runs.sort(key=lambda r: (r.created_at, r.run_id), reverse=True)
        return runs[: query.limit]

    def steps(self, run_id: str) -> list[StepRecord]:
        with self._lock:
            entry = self._entries.get(run_id)
            found = [] if entry is None else list(entry.steps.values())
        found.sort(key=lambda s: (s.attempt, s.seq))
        return found

    def sweep(self, now: float) -> int:
        with self._lock:
            gone = [rid for rid, e in self._entries.items() if e.run is not None and self.expired(e.run, now)]
            for run_id in gone:
                del self._entries[run_id]
        return len(gone)

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return "memory"
