"""The supervisor's state: plain in-memory records, no I/O, changed only by the dispatcher.

Peers are connection ids (ints, never reused); :data:`SUPERVISOR` is the peer id of the
supervisor itself, the sender of events that come from no connection (a drain). Timers are
typed records on one heap; :meth:`SupervisorState.summary` is what ``coda status`` shows.
"""

from __future__ import annotations

import heapq
import itertools
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from coda.errors import ErrorInfo
from coda.protocol import TaskSpec, WorkflowSpec

__all__ = [
    "DeadlineDue",
    "EvictDue",
    "Execution",
    "FINISHED",
    "Outcome",
    "RerunDue",
    "RespawnDue",
    "RetryDue",
    "Run",
    "SUPERVISOR",
    "SlotState",
    "SupervisorState",
    "TaskCounts",
    "Timer",
    "Waiter",
    "WorkerState",
]

SUPERVISOR = 0
FINISHED = frozenset({"succeeded", "failed", "cancelled"})

Waiter = tuple[int, int]  # (peer, request_id)
Outcome = tuple[bool, Any]  # (True, value) or (False, ErrorInfo)


@dataclass(eq=False, slots=True)
class WorkerState:
    """A worker process that has said hello (or the Celery bridge, a virtual worker)."""

    peer: int
    slot: int
    pid: int
    tasks: frozenset[str]
    workflows: frozenset[str]
    capacity: int
    workflow_capacity: int
    started_at: float
    running: set[int] = field(default_factory=set)
    running_workflows: set[int] = field(default_factory=set)
    bridge: bool = False  # the Celery bridge: takes every task no worker registered
    # Tasks it started itself beside their workflow: the spawn's request id → exec id.
    started_here: dict[int, int] = field(default_factory=dict)


@dataclass(eq=False, slots=True)
class SlotState:
    """One of the ``--workers`` places a worker process fills; respawn backoff lives here."""

    peer: int | None = None
    failures: int = 0
    spawned_at: float = 0.0
    hello: bool = False


@dataclass(eq=False, slots=True)
class Execution:
    """One task or workflow execution, from spawn until it succeeds or fails for good."""

    id: int
    name: str
    run_id: str  # "" for a task submitted outside any run (the queue takeover's)
    args: dict[str, Any]
    attempt: int = 1
    memo_key: bytes | None = None
    replay_key: tuple[int, int, str] | None = None
    waiters: list[Waiter] = field(default_factory=list)
    worker: int | None = None
    deaths: int = 0
    token: int = 0  # bumped at each dispatch, so stale timers of an earlier dispatch do nothing
    timeout: float | None = None  # per execution (a taken-over Celery message's time limit)
    origin: int | None = None  # the worker whose workflow spawned it: the first choice to run it
    # The waiter its worker answers itself (a workflow beside it), in the current dispatch.
    answered_there: Waiter | None = None


@dataclass(eq=False, slots=True)
class TaskCounts:
    """How a run's task spawns went, over all its attempts."""

    spawned: int = 0
    executed: int = 0
    memo_hits: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(eq=False, slots=True)
class Run:
    """A workflow run: its attempts, its memo, who waits for its end."""

    run_id: str
    workflow: str
    args: dict[str, Any]
    max_retries: int
    retry_delay: float
    created_at: float
    parent: str | None = None
    state: str = "pending"
    attempt: int = 1
    exec_id: int | None = None
    value: Any = None
    error: ErrorInfo | None = None
    finished_at: float | None = None
    memo: dict[bytes, Any] = field(default_factory=dict)
    inflight: dict[bytes, int] = field(default_factory=dict)
    # Outcomes of this attempt's spawns by (attempt, seq, task): a workflow re-executed after
    # its worker died re-attaches to them instead of rerunning them.
    replay: dict[tuple[int, int, str], Outcome] = field(default_factory=dict)
    replay_inflight: dict[tuple[int, int, str], int] = field(default_factory=dict)
    # dicts used as ordered sets: an empty dict is a third of an empty set's size.
    tasks: dict[int, None] = field(default_factory=dict)
    children: dict[str, None] = field(default_factory=dict)
    waiters: list[Waiter] = field(default_factory=list)
    counts: TaskCounts = field(default_factory=lambda: TaskCounts())

    def status(self) -> dict[str, Any]:
        error = self.error
        return {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "state": self.state,
            "attempt": self.attempt,
            "tasks": self.counts.as_dict(),
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "parent": self.parent,
            "error": None if error is None else {"exc_type": error.exc_type, "message": error.message},
        }


# -- timers -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetryDue:
    """A failed task's retry delay is over: queue it again."""

    exec_id: int


@dataclass(frozen=True, slots=True)
class DeadlineDue:
    """A task's timeout, for the dispatch numbered ``token`` (a later dispatch makes it stale)."""

    exec_id: int
    token: int


@dataclass(frozen=True, slots=True)
class RerunDue:
    """A failed workflow's retry delay is over: run its next attempt."""

    run_id: str


@dataclass(frozen=True, slots=True)
class RespawnDue:
    """A slot's respawn backoff is over: start a worker in it."""

    slot: int


@dataclass(frozen=True, slots=True)
class EvictDue:
    """The oldest finished run may be past its retention."""


Timer: TypeAlias = RetryDue | DeadlineDue | RerunDue | RespawnDue | EvictDue


@dataclass(eq=False)
class SupervisorState:
    """Everything the supervisor knows. Only :class:`~coda.supervisor.dispatch.Dispatcher` writes it."""

    workers: dict[int, WorkerState] = field(default_factory=dict)
    slots: dict[int, SlotState] = field(default_factory=dict)
    spawned: dict[int, int] = field(default_factory=dict)  # worker peer → slot, before its hello
    clients: set[int] = field(default_factory=set)
    runs: dict[str, Run] = field(default_factory=dict)
    finished: OrderedDict[str, None] = field(default_factory=OrderedDict)  # oldest first
    succeeded: OrderedDict[str, None] = field(default_factory=OrderedDict)  # the succeeded among them
    execs: dict[int, Execution] = field(default_factory=dict)
    pending_tasks: deque[int] = field(default_factory=deque)
    pending_workflows: deque[int] = field(default_factory=deque)
    timers: list[tuple[float, int, Timer]] = field(default_factory=list)
    known_tasks: dict[str, TaskSpec] = field(default_factory=dict)
    known_workflows: dict[str, WorkflowSpec] = field(default_factory=dict)
    draining: bool = False
    bridge: int | None = None  # peer of the Celery bridge, when the supervisor runs one
    evict_at: float | None = None
    exec_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    timer_seq: itertools.count[int] = field(default_factory=itertools.count)
    rotation: int = 0

    def add_timer(self, due: float, timer: Timer) -> None:
        heapq.heappush(self.timers, (due, next(self.timer_seq), timer))

    def next_deadline(self) -> float | None:
        return self.timers[0][0] if self.timers else None

    def busy(self) -> bool:
        """Whether accepted work is still under way (drain waits for this to turn False)."""
        return bool(self.execs)

    def ready(self) -> bool:
        """Whether every slot's worker has said hello (startup waits for this)."""
        return all(slot.hello for slot in self.slots.values())

    def answerable(self, peer: int) -> bool:
        """Whether ``peer`` is still connected as a worker or a client (so may be answered)."""
        return peer in self.workers or peer in self.clients

    def summary(self, now: float, celery_queues: tuple[str, ...] = ()) -> dict[str, Any]:
        """Workers, runs by state and what is queued: what ``coda status`` shows."""
        runs: dict[str, int] = {}
        for run in self.runs.values():
            runs[run.state] = runs.get(run.state, 0) + 1
        timers = [entry[2] for entry in self.timers]
        return {
            "workers": [
                {
                    "slot": w.slot,
                    "pid": w.pid,
                    "running_tasks": len(w.running),
                    "running_workflows": len(w.running_workflows),
                    "capacity": w.capacity,
                    "uptime": round(now - w.started_at, 3),
                    "tasks": len(w.tasks),
                    "workflows": len(w.workflows),
                }
                for w in sorted(self.workers.values(), key=lambda w: w.slot)
                if not w.bridge
            ],
            "bridge": None if self.bridge is None else {"running_tasks": len(self.workers[self.bridge].running)},
            "runs": runs,
            "queues": {
                "tasks_waiting": len(self.pending_tasks),  # for a free slot on a worker
                "tasks_retrying": sum(  # waiting out their retry_delay
                    1 for t in timers
                    if type(t) is RetryDue and t.exec_id in self.execs and self.execs[t.exec_id].worker is None
                ),
                "workflows_waiting": len(self.pending_workflows),
                "runs_rerunning": sum(  # failed, rerun after the workflow's retry_delay
                    1 for t in timers
                    if type(t) is RerunDue and t.run_id in self.runs and self.runs[t.run_id].state not in FINISHED
                ),
            },
            "celery_queues": list(celery_queues),
            "draining": self.draining,
            "registered": {"tasks": sorted(self.known_tasks), "workflows": sorted(self.known_workflows)},
        }
