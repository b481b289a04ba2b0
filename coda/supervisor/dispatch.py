"""The dispatcher: turns *(sender, message, now)* into a list of outputs, and is the only code
that changes :class:`~coda.supervisor.state.SupervisorState`.

It never does I/O and never reads a clock; the server passes ``now`` in and carries out what
comes out (:mod:`coda.supervisor.messages`): messages to peers, effects for itself. So
memoization, retries, timeouts and respawns are all testable as tables of messages.

This module is the handler table and its gate (worker messages from workers only, client
requests after a hello); the handlers live by concern: :mod:`~coda.supervisor.workers`,
:mod:`~coda.supervisor.tasks`, :mod:`~coda.supervisor.runs`, :mod:`~coda.supervisor.placement`
(run after every event and timer), with :mod:`~coda.supervisor.outcomes` shared between them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from heapq import heappop
from typing import Any, TypeVar

from coda import protocol as p
from coda.errors import ErrorKind, refusal
from coda.inprocess import BridgeHello, SubmitTask
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.messages import CloseConnection, ConnectionClosed, Drain, Inbound, Out, WorkerSpawned
from coda.supervisor.outcomes import child_run_id
from coda.supervisor.placement import Placement
from coda.supervisor.runs import Runs
from coda.supervisor.state import DeadlineDue, EvictDue, RerunDue, RespawnDue, RetryDue, SupervisorState
from coda.supervisor.tasks import Tasks
from coda.supervisor.workers import Workers, reject

__all__ = ["Dispatcher", "child_run_id"]

logger = logging.getLogger(__name__)

M = TypeVar("M")


# Who may send a message. Plain ints: an Enum member lookup costs ~200 ns on Python 3.11,
# twice per message here.
_ANY = 0
_WORKER = 1  # only from a worker (a late one from a worker since replaced is dropped)
_CLIENT = 2  # only after ClientHello


class Dispatcher:
    """Applies one event at a time to the state and says what must be sent where."""

    def __init__(self, config: SupervisorConfig, state: SupervisorState | None = None) -> None:
        self.config = config
        self.state = state if state is not None else SupervisorState()
        self.placement = Placement(self.state)
        self.tasks = Tasks(self.state, self.placement)
        self.workers = Workers(self.state, config, self.tasks)
        self.runs = Runs(self.state, config, self.tasks)
        self._table: dict[type, tuple[Callable[[int, Any, float, Out], None], int]] = {}
        self._timers: dict[type, Callable[[Any, float, Out], None]] = {}
        workers, tasks, runs = self.workers, self.tasks, self.runs
        self._on(p.WorkerHello, _ANY, workers.hello)
        self._on(WorkerSpawned, _ANY, workers.spawned)
        self._on(BridgeHello, _ANY, workers.bridge_hello)
        self._on(ConnectionClosed, _ANY, workers.closed)
        self._on(p.SpawnTask, _WORKER, tasks.spawn)
        self._on(p.TaskReturned, _WORKER, tasks.returned)
        self._on(p.TaskRaised, _WORKER, tasks.raised)
        self._on(p.SpawnWorkflow, _WORKER, runs.spawn_workflow)
        self._on(p.WorkflowReturned, _WORKER, runs.returned)
        self._on(p.WorkflowRaised, _WORKER, runs.raised)
        self._on(p.ClientHello, _ANY, self._client_hello)
        self._on(SubmitTask, _CLIENT, tasks.submit)
        self._on(p.StartRun, _CLIENT, runs.start)
        self._on(p.AwaitRun, _CLIENT, runs.await_run)
        self._on(p.GetRunStatus, _CLIENT, runs.status)
        self._on(p.RerunRun, _CLIENT, runs.rerun)
        self._on(p.CancelRun, _CLIENT, runs.cancel)
        self._on(p.GetSupervisorStatus, _CLIENT, self._supervisor_status)
        self._on(Drain, _ANY, runs.drain)
        self._at(RetryDue, tasks.retry_due)
        self._at(DeadlineDue, workers.deadline_due)
        self._at(RerunDue, runs.rerun_due)
        self._at(RespawnDue, workers.respawn_due)
        self._at(EvictDue, runs.evict_due)

    def _on(self, kind: type[M], gate: int, handler: Callable[[int, M, float, Out], None]) -> None:
        self._table[kind] = (handler, gate)

    def _at(self, kind: type[M], handler: Callable[[M, float, Out], None]) -> None:
        self._timers[kind] = handler

    # -- entry points -------------------------------------------------------------------------------

    def start(self, now: float) -> Out:
        """Ask for the first ``--workers`` processes."""
        out: Out = []
        self.workers.start(now, out)
        return out

    def handle(self, sender: int, msg: Inbound, now: float) -> Out:
        out: Out = []
        state = self.state
        entry = self._table.get(type(msg))
        if entry is None:
            reject(state, sender, f"unexpected message {type(msg).__name__}", out)
        elif entry[1] is _WORKER and sender not in state.workers:
            if sender not in state.spawned:  # a late message from a worker already replaced is dropped
                reject(state, sender, f"{type(msg).__name__} from a peer that is not a worker", out)
        elif entry[1] is _CLIENT and sender not in state.clients:
            request_id = getattr(msg, "request_id", 0)
            out.append((sender, p.ErrorReply(request_id, refusal(ErrorKind.AUTH, "say ClientHello first"))))
            out.append(CloseConnection(sender, "request before hello"))
        else:
            entry[0](sender, msg, now, out)
        self.placement.pump(now, out)
        return out

    def tick(self, now: float) -> Out:
        """Fire every timer that is due at ``now``."""
        out: Out = []
        timers = self.state.timers
        while timers and timers[0][0] <= now:
            timer = heappop(timers)[2]
            self._timers[type(timer)](timer, now, out)
        self.placement.pump(now, out)
        return out

    def next_deadline(self) -> float | None:
        return self.state.next_deadline()

    # -- clients ------------------------------------------------------------------------------------

    def _client_hello(self, sender: int, msg: p.ClientHello, now: float, out: Out) -> None:
        if msg.version != p.PROTOCOL_VERSION:
            error = refusal(ErrorKind.PROTOCOL, f"client speaks protocol {msg.version}, supervisor {p.PROTOCOL_VERSION}")
        elif self.config.token is not None and msg.token != self.config.token:
            error = refusal(ErrorKind.AUTH, "wrong or missing token")
        else:
            self.state.clients.add(sender)
            out.append((sender, p.Welcome(p.PROTOCOL_VERSION)))
            return
        logger.warning("coda.supervisor.client_refused", extra={"peer": sender, "reason": error.message})
        out.append((sender, p.ErrorReply(0, error)))
        out.append(CloseConnection(sender, error.message))

    def _supervisor_status(self, sender: int, msg: p.GetSupervisorStatus, now: float, out: Out) -> None:
        out.append((sender, p.StatusReply(msg.request_id, self.state.summary(now, self.config.queues))))
