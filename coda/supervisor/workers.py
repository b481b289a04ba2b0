"""Workers: the ``--workers`` slots and the processes that fill them, from spawn through hello to
death; the Celery bridge registers here too, as a virtual worker. A worker that goes away hands
back what it ran (re-queued without consuming a retry, until a task has killed too many
workers), and its slot is refilled, with backoff while its workers keep dying young. A task
deadline kills the worker running it, so it lives here as well.
"""

from __future__ import annotations

import logging

from coda.errors import ErrorKind, refusal
from coda.inprocess import BridgeHello
from coda.protocol import PROTOCOL_VERSION, Welcome, WorkerHello
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.messages import CloseConnection, ConnectionClosed, KillWorker, Out, StartWorker, WorkerSpawned
from coda.supervisor.state import FINISHED, DeadlineDue, RespawnDue, SlotState, SupervisorState, WorkerState
from coda.supervisor.tasks import Tasks

__all__ = ["Workers", "reject"]

logger = logging.getLogger(__name__)

# A worker that dies this soon after its spawn counts as failing; its slot backs off.
_HEALTHY_AFTER = 10.0
_BACKOFF_FIRST = 0.25
_BACKOFF_MAX = 10.0


def reject(state: SupervisorState, sender: int, reason: str, out: Out) -> None:
    """Drop a peer that broke the protocol: a worker is killed, any other peer disconnected."""
    logger.warning("coda.supervisor.rejected", extra={"peer": sender, "reason": reason})
    if sender in state.workers or sender in state.spawned:
        out.append(KillWorker(sender, reason))
    else:
        out.append(CloseConnection(sender, reason))


class Workers:
    def __init__(self, state: SupervisorState, config: SupervisorConfig, tasks: Tasks) -> None:
        self.state = state
        self.config = config
        self.tasks = tasks

    def start(self, now: float, out: Out) -> None:
        """Ask for the first ``--workers`` processes."""
        for slot in range(self.config.workers):
            self.state.slots[slot] = SlotState(spawned_at=now)
            out.append(StartWorker(slot))

    # -- arrivals ---------------------------------------------------------------------------------

    def spawned(self, sender: int, msg: WorkerSpawned, now: float, out: Out) -> None:
        slot = self.state.slots.setdefault(msg.slot, SlotState())
        slot.peer, slot.spawned_at, slot.hello = sender, now, False
        self.state.spawned[sender] = msg.slot

    def hello(self, sender: int, msg: WorkerHello, now: float, out: Out) -> None:
        state = self.state
        slot = state.spawned.get(sender)
        if slot is None or sender in state.workers:
            reject(state, sender, "WorkerHello from a connection the supervisor did not spawn", out)
            return
        if msg.version != PROTOCOL_VERSION:
            reject(state, sender, f"worker speaks protocol {msg.version}, supervisor {PROTOCOL_VERSION}", out)
            return
        for spec in msg.tasks:
            state.known_tasks[spec.name] = spec
        for wspec in msg.workflows:
            state.known_workflows[wspec.name] = wspec
        state.workers[sender] = WorkerState(
            peer=sender,
            slot=slot,
            pid=msg.pid,
            tasks=frozenset(s.name for s in msg.tasks),
            workflows=frozenset(s.name for s in msg.workflows),
            capacity=self.config.concurrency,
            workflow_capacity=self.config.workflow_capacity,
            started_at=now,
        )
        state.slots[slot].hello = True
        out.append((sender, Welcome(PROTOCOL_VERSION)))
        logger.info("coda.supervisor.worker_ready", extra={"slot": slot, "pid": msg.pid})

    def bridge_hello(self, sender: int, msg: BridgeHello, now: float, out: Out) -> None:
        state = self.state
        if state.bridge is not None or sender in state.workers or sender in state.clients:
            reject(state, sender, "a second BridgeHello", out)
            return
        state.bridge = sender
        state.workers[sender] = WorkerState(
            peer=sender, slot=-1, pid=0, tasks=frozenset(), workflows=frozenset(), capacity=msg.capacity,
            workflow_capacity=0, started_at=now, bridge=True,
        )
        logger.info("coda.supervisor.bridge_ready", extra={"peer": sender})

    # -- departures -------------------------------------------------------------------------------

    def closed(self, sender: int, msg: ConnectionClosed, now: float, out: Out) -> None:
        state = self.state
        state.clients.discard(sender)
        if sender in state.workers or sender in state.spawned:
            self.gone(sender, msg.reason, now, out, counts_as_death=True)

    def gone(self, peer: int, reason: str, now: float, out: Out, counts_as_death: bool) -> None:
        """Forget a worker; what it ran goes back to the queue, and its slot is refilled."""
        state = self.state
        slot_no = state.spawned.pop(peer, None)
        worker = state.workers.pop(peer, None)
        if worker is not None:
            self._hand_back(worker, reason, counts_as_death, out)
        if slot_no is not None and state.slots[slot_no].peer == peer:
            self._refill(slot_no, now, counts_as_death)

    def _hand_back(self, worker: WorkerState, reason: str, counts_as_death: bool, out: Out) -> None:
        state = self.state
        for exec_id in sorted(worker.running, reverse=True):
            execution = state.execs.get(exec_id)
            if execution is None:
                continue
            execution.worker = None
            execution.deaths += counts_as_death
            if execution.deaths >= self.config.max_worker_deaths:
                message = f"the worker running it died {execution.deaths} times ({reason})"
                self.tasks.fail(execution, refusal(ErrorKind.WORKER_LOST, message), out)
            else:
                state.pending_tasks.appendleft(exec_id)
        for exec_id in worker.running_workflows:
            execution = state.execs.get(exec_id)
            if execution is not None:
                execution.worker = None
                state.pending_workflows.appendleft(exec_id)
        log = logger.info if state.draining else logger.warning
        log("coda.supervisor.worker_lost", extra={
            "slot": worker.slot, "pid": worker.pid, "reason": reason,
            "tasks": len(worker.running), "workflows": len(worker.running_workflows),
        })

    def _refill(self, slot_no: int, now: float, counts_as_death: bool) -> None:
        slot = self.state.slots[slot_no]
        slot.peer = None
        if counts_as_death and now - slot.spawned_at < _HEALTHY_AFTER:
            slot.failures += 1
        else:
            slot.failures = 0
        delay = 0.0 if slot.failures == 0 else min(_BACKOFF_FIRST * 2 ** (slot.failures - 1), _BACKOFF_MAX)
        if not self.state.draining:
            self.state.add_timer(now + delay, RespawnDue(slot_no))

    def respawn_due(self, timer: RespawnDue, now: float, out: Out) -> None:
        slot = self.state.slots[timer.slot]
        if slot.peer is None and not self.state.draining:
            slot.spawned_at = now
            out.append(StartWorker(timer.slot))

    # -- deadlines --------------------------------------------------------------------------------

    def deadline_due(self, timer: DeadlineDue, now: float, out: Out) -> None:
        """A task ran past its timeout: kill its worker; the task is retried if its policy says
        so, else fails with TaskTimeout. Whatever else ran there goes back to the queue."""
        state = self.state
        execution = state.execs.get(timer.exec_id)
        if execution is None or execution.token != timer.token or execution.worker is None:
            return
        peer = execution.worker
        spec = state.known_tasks[execution.name]
        worker = state.workers[peer]
        worker.running.discard(execution.id)
        execution.worker = None
        limit = execution.timeout if execution.timeout is not None else spec.timeout
        message = f"ran longer than its timeout of {limit:g}s; worker pid {worker.pid} was killed"
        logger.warning("coda.supervisor.task_timeout", extra={"task": execution.name, "exec_id": execution.id, "reason": message})
        run = state.runs.get(execution.run_id)
        if spec.retry_on_timeout and execution.attempt <= spec.max_retries and run is not None and run.state not in FINISHED:
            self.tasks.retry_later(execution, run, spec.retry_delay, now)
        else:
            self.tasks.fail(execution, refusal(ErrorKind.TIMEOUT, message), out)
        out.append(KillWorker(peer, f"task {execution.name} timed out"))
        # Other executions on that worker die with it through no fault of their own.
        self.gone(peer, "killed after a task timeout", now, out, counts_as_death=False)
