"""The store interface: the records a supervisor persists, the batch it writes them in, and
:class:`Store`, the one small interface every backend implements.

A backend is one module (``memory``, ``sqlite``, ``redis``); nothing outside it knows which
backend it is. Records are frozen dataclasses whose values are data (what :mod:`coda.data`
allows); errors are :class:`~coda.protocol.ErrorInfo`, as on the wire.

What a store keeps, per run: its :class:`RunRecord`; its memo (memo key → value); its
:class:`StepRecord` per spawn, keyed ``(attempt, seq)`` (the replay table of an attempt is the
steps of that attempt); its :class:`TimerRecord` per task waiting in its retry delay.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from coda.errors import StoreError
from coda.protocol import ErrorInfo

__all__ = [
    "ACTIVE",
    "Batch",
    "BatchResult",
    "FINISHED",
    "LoadedRun",
    "RunQuery",
    "RunRecord",
    "SCHEMA_VERSION",
    "STATES",
    "StepRecord",
    "Store",
    "TimerRecord",
]

#: The layout of the durable stores (their tables / keys and the codec of their records). A
#: store written under a higher version is refused at open; a lower one is migrated there.
SCHEMA_VERSION = 1

ACTIVE = frozenset({"pending", "running"})
FINISHED = frozenset({"succeeded", "failed", "cancelled"})
STATES = ACTIVE | FINISHED
STEP_KINDS = frozenset({"task", "workflow"})


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A workflow run as the store keeps it. ``rerun_at``: due time (epoch seconds) of an
    automatic rerun after a failed attempt, or None. ``owner`` and ``fence`` are for runs
    shared by several supervisors (None and 0 until then). A run's ``workflow`` and
    ``created_at`` never change once it is written (stores index them once)."""

    run_id: str
    workflow: str
    args: dict[str, Any]
    state: str
    attempt: int
    created_at: float
    parent: str | None = None
    finished_at: float | None = None
    value: Any = None
    error: ErrorInfo | None = None
    max_retries: int = 0
    retry_delay: float = 0.0
    rerun_at: float | None = None
    children: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)
    owner: str | None = None
    fence: int = 0

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"run {self.run_id!r}: state {self.state!r} is not one of {sorted(STATES)}")

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One spawn of a run, keyed ``(run_id, attempt, seq)``. ``ok`` is None while it is in
    flight, then True (``value``) or False (``error``). ``how``: ``executed``, ``memo_hit``,
    ``replayed`` or ``child``; ``retries``: how many times the task was retried."""

    run_id: str
    attempt: int
    seq: int
    kind: str
    name: str
    ok: bool | None = None
    value: Any = None
    error: ErrorInfo | None = None
    how: str = "executed"
    cache_key: list[Any] | None = None
    memo_key: bytes | None = None
    worker: int | None = None
    started_at: float | None = None
    finished_at: float | None = None
    retries: int = 0
    child_run_id: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in STEP_KINDS:
            raise ValueError(f"step {self.run_id!r} {self.attempt}/{self.seq}: kind {self.kind!r} is not 'task' or 'workflow'")

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.run_id, self.attempt, self.seq)


@dataclass(frozen=True, slots=True)
class TimerRecord:
    """A task of a run waiting in its retry delay: spawn ``(attempt, seq)`` of task ``task``
    runs again as its own attempt ``exec_attempt`` at ``due`` (epoch seconds)."""

    run_id: str
    attempt: int
    seq: int
    task: str
    exec_attempt: int
    due: float

    @property
    def key(self) -> tuple[str, int, int]:
        return (self.run_id, self.attempt, self.seq)


@dataclass(frozen=True, slots=True)
class LoadedRun:
    """A run read back: its record, its memo, and — while it is active — the steps and timers
    of its current attempt (what recovery replays and re-arms). A finished run has none."""

    run: RunRecord
    memo: dict[bytes, Any]
    steps: tuple[StepRecord, ...] = ()
    timers: tuple[TimerRecord, ...] = ()

    @classmethod
    def assemble(
        cls, run: RunRecord, memo: dict[bytes, Any], steps: Iterable[StepRecord], timers: Iterable[TimerRecord]
    ) -> LoadedRun:
        """The one place that decides what a load returns, for every backend: the steps (in
        seq order) and timers of the current attempt of an active run."""
        if run.finished:
            return cls(run, memo)
        current = sorted((s for s in steps if s.attempt == run.attempt), key=lambda s: s.seq)
        armed = sorted((t for t in timers if t.attempt == run.attempt), key=lambda t: t.seq)
        return cls(run, memo, tuple(current), tuple(armed))


@dataclass(frozen=True, slots=True)
class RunQuery:
    """A filter for :meth:`Store.list_runs`: newest first by ``created_at``, ``since`` ≤
    created_at < ``until``, at most ``limit`` runs."""

    state: str | None = None
    workflow: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if self.state is not None and self.state not in STATES:
            raise ValueError(f"run query: state {self.state!r} is not one of {sorted(STATES)}")
        if self.limit < 1:
            raise ValueError(f"run query: limit must be >= 1, got {self.limit}")

    def matches(self, run: RunRecord) -> bool:
        return (
            (self.state is None or run.state == self.state)
            and (self.workflow is None or run.workflow == self.workflow)
            and (self.since is None or run.created_at >= self.since)
            and (self.until is None or run.created_at < self.until)
        )


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What a commit tells back. Empty for now; runs shared by several supervisors add the
    runs whose write was refused (fencing) and the creates that found a run already there."""


StepKey = tuple[str, int, int]
MemoKey = tuple[str, bytes]


class Batch:
    """Writes applied atomically by one :meth:`Store.commit`, with the meaning of applying
    them in the order they were made. Puts coalesce: the last put of a run (a step, a memo
    entry, a timer) in a batch wins, so counts updated at every step cost one write per run
    per batch. A store applies a batch as: delete the runs in ``deletes``, then write the
    rest — :meth:`delete_run` drops the batch's earlier writes of that run, which keeps that
    equal to the order of the calls."""

    __slots__ = ("deletes", "memo", "runs", "steps", "timers")

    def __init__(self) -> None:
        self.runs: dict[str, RunRecord] = {}
        self.steps: dict[StepKey, StepRecord] = {}
        self.memo: dict[MemoKey, Any] = {}
        self.timers: dict[StepKey, TimerRecord | None] = {}  # None: delete that timer
        self.deletes: dict[str, None] = {}

    def put_run(self, run: RunRecord) -> None:
        self.runs[run.run_id] = run

    def put_step(self, step: StepRecord) -> None:
        self.steps[step.key] = step

    def put_memo(self, run_id: str, key: bytes, value: Any) -> None:
        self.memo[(run_id, key)] = value

    def put_timer(self, timer: TimerRecord) -> None:
        self.timers[timer.key] = timer

    def delete_timer(self, run_id: str, attempt: int, seq: int) -> None:
        self.timers[(run_id, attempt, seq)] = None

    def delete_run(self, run_id: str) -> None:
        """Forget the run and everything of it (memo, steps, timers)."""
        self.runs.pop(run_id, None)
        for table in (self.steps, self.memo, self.timers):
            if table:
                _drop_run(table, run_id)
        self.deletes[run_id] = None

    def merge(self, later: Batch) -> None:
        """Fold ``later`` into this batch, as if its calls had been made here after ours."""
        for run_id in later.deletes:
            self.delete_run(run_id)
        self.runs.update(later.runs)
        self.steps.update(later.steps)
        self.memo.update(later.memo)
        self.timers.update(later.timers)

    def run_ids(self) -> dict[str, None]:
        """Every run this batch writes (puts of any kind), in first-seen order; not deletes."""
        ids: dict[str, None] = dict.fromkeys(self.runs)
        for table in (self.steps, self.memo, self.timers):
            for key in table:
                ids[key[0]] = None
        return ids

    def __len__(self) -> int:
        return len(self.runs) + len(self.steps) + len(self.memo) + len(self.timers) + len(self.deletes)

    def __repr__(self) -> str:
        return (
            f"Batch(runs={len(self.runs)}, steps={len(self.steps)}, memo={len(self.memo)}, "
            f"timers={len(self.timers)}, deletes={len(self.deletes)})"
        )


def _drop_run(table: dict[Any, Any], run_id: str) -> None:
    for key in [k for k in table if k[0] == run_id]:
        del table[key]


class Store(abc.ABC):
    """One backend. Methods are synchronous and may block: the supervisor calls them off its
    event loop (commits on the :class:`~coda.store.writer.StoreWriter` thread, reads on its
    pool), except where ``durable`` is False and the store is a plain in-memory structure.

    Errors: :class:`~coda.errors.StoreUnavailable` when the store cannot be reached or written
    now (the writer retries it); :class:`~coda.errors.StoreIncompatible` when what is there is
    not a Coda store this version can read. Both name the store (:meth:`describe`).
    """

    #: Whether what is committed survives the process (False: the in-memory store).
    durable: ClassVar[bool] = True

    def __init__(self, *, retention: float) -> None:
        if not retention >= 0:
            raise StoreError(f"retention must be >= 0 seconds, got {retention}")
        #: Seconds a finished run is kept after ``finished_at``.
        self.retention = retention

    @abc.abstractmethod
    def open(self) -> None:
        """Create the schema, or check the one there: refuse a newer version, a corrupt store
        or foreign data, naming the store and the versions. Never resets anything."""

    @abc.abstractmethod
    def commit(self, batch: Batch) -> BatchResult:
        """Apply ``batch`` atomically: all of it, or (on an error) none of it."""

    @abc.abstractmethod
    def load_active(self) -> list[LoadedRun]:
        """Every run that is not finished (at startup, for recovery), oldest first."""

    @abc.abstractmethod
    def load_run(self, run_id: str) -> LoadedRun | None:
        """One run, active or finished, or None when the store does not hold it."""

    @abc.abstractmethod
    def list_runs(self, query: RunQuery) -> list[RunRecord]:
        """The runs that match ``query``, newest first (ties: by run id, descending)."""

    @abc.abstractmethod
    def steps(self, run_id: str) -> list[StepRecord]:
        """Every step of the run, all attempts, ordered by (attempt, seq)."""

    @abc.abstractmethod
    def sweep(self, now: float) -> int:
        """Delete the finished runs whose ``finished_at + retention`` is not after ``now``;
        return how many went. A backend that expires data itself only tidies its indexes."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release connections; idempotent."""

    @abc.abstractmethod
    def describe(self) -> str:
        """The store as a user names it (URL with any password masked, plus prefix)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"

    def expired(self, run: RunRecord, now: float) -> bool:
        """Whether a finished run is past its retention at ``now``."""
        return run.finished_at is not None and run.state in FINISHED and run.finished_at + self.retention <= now
