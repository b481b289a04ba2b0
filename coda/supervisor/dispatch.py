"""The dispatcher: turns *(sender, message, now)* into *[(recipient, message)]*, and is the only
code that changes :class:`~coda.supervisor.state.SupervisorState`.

It never does I/O and never reads a clock; the server passes ``now`` in and routes what comes
out: wire messages to connections, and :class:`StartWorker` / :class:`KillWorker` /
:class:`CloseConnection` to the process manager (:data:`~coda.supervisor.state.PROCESSES`).
So memoization, retries, timeouts and respawns are all testable as tables of messages.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from heapq import heappop
from typing import Any

import msgpack

from coda import protocol as p
from coda.keys import memo_key
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.state import FINISHED, PROCESSES, Execution, Run, SlotState, SupervisorState, Waiter, WorkerState

__all__ = [
    "BridgeHello",
    "CloseConnection",
    "ConnectionClosed",
    "Dispatcher",
    "Drain",
    "ExecuteLegacyTask",
    "KillWorker",
    "Out",
    "StartWorker",
    "SubmitTask",
    "WorkerSpawned",
    "child_run_id",
]

logger = logging.getLogger(__name__)

Out = list[tuple[int, Any]]

# A worker that dies this soon after its spawn counts as failing; its slot backs off.
_HEALTHY_AFTER = 10.0
_BACKOFF_FIRST = 0.25
_BACKOFF_MAX = 10.0


# -- events from the process manager, and commands to it (never on the wire) --------------------


@dataclass(frozen=True, slots=True)
class WorkerSpawned:
    """The process manager started a worker process in ``slot``; its connection is the sender."""

    slot: int
    pid: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The sender's connection is gone (worker died, client left, or we closed it)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Drain:
    """Stop taking new runs; finish what was accepted."""


@dataclass(frozen=True, slots=True)
class StartWorker:
    slot: int


@dataclass(frozen=True, slots=True)
class KillWorker:
    peer: int
    reason: str


@dataclass(frozen=True, slots=True)
class CloseConnection:
    peer: int
    reason: str


@dataclass(frozen=True, slots=True)
class BridgeHello:
    """The Celery bridge (in the supervisor process) registers as a virtual worker that takes
    every task name no worker registered."""

    capacity: int


@dataclass(frozen=True, slots=True)
class ExecuteLegacyTask:
    """ExecuteTask for the bridge: the memo key gives the Celery task a deterministic id."""

    exec_id: int
    run_id: str
    task: str
    args: dict[str, Any]
    memo_key: bytes | None


@dataclass(frozen=True, slots=True)
class SubmitTask:
    """A task outside any run, from an in-process client (the Celery queue takeover): answered
    with SpawnSucceeded/SpawnFailed; ``timeout`` overrides the task's own."""

    request_id: int
    task: str
    args: dict[str, Any]
    timeout: float | None


def child_run_id(parent: str, workflow: str, args: dict[str, Any]) -> str:
    """A child run's id: the same parent, workflow and args give the same child on a rerun."""
    digest = hashlib.blake2b(msgpack.packb([workflow, args], use_bin_type=True), digest_size=8).hexdigest()
    return f"{parent}/{workflow}:{digest}"


def outcome_message(request_id: int, task: str, outcome: tuple[bool, Any]) -> p.Message:
    """The answer to a spawn whose outcome is already known."""
    if outcome[0]:
        return p.SpawnSucceeded(request_id, outcome[1])
    return p.SpawnFailed(request_id, task, outcome[1])


def _error(exc_type: str, message: str, kind: str) -> p.ErrorInfo:
    return p.ErrorInfo(exc_type=exc_type, message=message, traceback="", kind=kind)


class Dispatcher:
    """Applies one event at a time to the state and says what must be sent where."""

    def __init__(self, config: SupervisorConfig, state: SupervisorState | None = None) -> None:
        self.config = config
        self.state = state if state is not None else SupervisorState()
        self.new_run_id: Callable[[], str] = _random_run_id
        self._handlers: dict[type, Callable[[int, Any, float, Out], None]] = {
            p.WorkerHello: self._worker_hello,
            p.SpawnTask: self._spawn_task,
            p.SpawnWorkflow: self._spawn_workflow,
            p.TaskSucceeded: self._task_succeeded,
            p.TaskFailed: self._task_failed,
            p.WorkflowSucceeded: self._workflow_succeeded,
            p.WorkflowFailed: self._workflow_failed,
            p.ClientHello: self._client_hello,
            p.StartRun: self._start_run,
            p.AwaitRun: self._await_run,
            p.GetRunStatus: self._get_run_status,
            p.RerunRun: self._rerun_run,
            p.CancelRun: self._cancel_run,
            p.GetSupervisorStatus: self._get_supervisor_status,
            WorkerSpawned: self._worker_spawned,
            BridgeHello: self._bridge_hello,
            SubmitTask: self._submit_task,
            ConnectionClosed: self._connection_closed,
            Drain: self._drain,
        }
        self._worker_only = {p.SpawnTask, p.SpawnWorkflow, p.TaskSucceeded, p.TaskFailed, p.WorkflowSucceeded, p.WorkflowFailed}
        self._client_only = {SubmitTask, p.StartRun, p.AwaitRun, p.GetRunStatus, p.RerunRun, p.CancelRun, p.GetSupervisorStatus}

    # -- entry points -------------------------------------------------------------------------------

    def start(self, now: float) -> Out:
        """Ask for the first ``--workers`` processes."""
        out: Out = []
        for slot in range(self.config.workers):
            self.state.slots[slot] = SlotState(spawned_at=now)
            out.append((PROCESSES, StartWorker(slot)))
        return out

    def handle(self, sender: int, msg: Any, now: float) -> Out:
        out: Out = []
        kind = type(msg)
        handler = self._handlers.get(kind)
        state = self.state
        if handler is None:
            self._reject(sender, f"unexpected message {kind.__name__}", out)
        elif kind in self._worker_only and sender not in state.workers:
            if sender not in state.spawned:  # a late message from a worker already replaced is dropped
                self._reject(sender, f"{kind.__name__} from a peer that is not a worker", out)
        elif kind in self._client_only and sender not in state.clients:
            request_id = getattr(msg, "request_id", 0)
            out.append((sender, p.ErrorReply(request_id, _error("coda.errors.AuthenticationFailed", "say ClientHello first", "auth"))))
            out.append((PROCESSES, CloseConnection(sender, "request before hello")))
        else:
            handler(sender, msg, now, out)
        self._pump(now, out)
        return out

    def tick(self, now: float) -> Out:
        """Fire every timer that is due at ``now``."""
        out: Out = []
        timers = self.state.timers
        while timers and timers[0][0] <= now:
            _, _, kind, ref, token = heappop(timers)
            if kind == "dispatch":
                self._retry_due(ref, now, out)
            elif kind == "deadline":
                self._deadline(ref, token, now, out)
            elif kind == "rerun":
                self._rerun_due(ref, now, out)
            elif kind == "respawn":
                self._respawn_due(ref, now, out)
            elif kind == "evict":
                self._evict(now)
        self._pump(now, out)
        return out

    def next_deadline(self) -> float | None:
        return self.state.next_deadline()

    def _reject(self, sender: int, reason: str, out: Out) -> None:
        logger.warning("coda.supervisor.rejected: peer %s: %s", sender, reason)
        if sender in self.state.workers or sender in self.state.spawned:
            out.append((PROCESSES, KillWorker(sender, reason)))
        else:
            out.append((PROCESSES, CloseConnection(sender, reason)))

    # -- workers ------------------------------------------------------------------------------------

    def _worker_spawned(self, sender: int, msg: WorkerSpawned, now: float, out: Out) -> None:
        slot = self.state.slots.setdefault(msg.slot, SlotState())
        slot.peer, slot.pid, slot.spawned_at, slot.hello = sender, msg.pid, now, False
        self.state.spawned[sender] = msg.slot

    def _bridge_hello(self, sender: int, msg: BridgeHello, now: float, out: Out) -> None:
        state = self.state
        if state.bridge is not None or sender in state.workers or sender in state.clients:
            self._reject(sender, "a second BridgeHello", out)
            return
        state.bridge = sender
        state.workers[sender] = WorkerState(
            peer=sender, slot=-1, pid=0, tasks=frozenset(), workflows=frozenset(), capacity=msg.capacity,
            workflow_capacity=0, started_at=now, bridge=True,
        )
        logger.info("coda.supervisor.bridge_ready: peer %s", sender)

    def _can_run(self, worker: WorkerState, name: str, is_task: bool) -> bool:
        if not is_task:
            return name in worker.workflows
        # The bridge takes what no Coda worker registered (Celery tasks, or Celery task names).
        return name not in self.state.known_tasks if worker.bridge else name in worker.tasks

    def _worker_hello(self, sender: int, msg: p.WorkerHello, now: float, out: Out) -> None:
        state = self.state
        slot = state.spawned.get(sender)
        if slot is None or sender in state.workers:
            self._reject(sender, "WorkerHello from a connection the supervisor did not spawn", out)
            return
        if msg.version != p.PROTOCOL_VERSION:
            self._reject(sender, f"worker speaks protocol {msg.version}, supervisor {p.PROTOCOL_VERSION}", out)
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
        out.append((sender, p.Welcome(p.PROTOCOL_VERSION)))
        logger.info("coda.supervisor.worker_ready: slot %s pid %s", slot, msg.pid)

    def _connection_closed(self, sender: int, msg: ConnectionClosed, now: float, out: Out) -> None:
        state = self.state
        state.clients.discard(sender)
        if sender in state.workers or sender in state.spawned:
            self._worker_gone(sender, msg.reason, now, out, counts_as_death=True)

    def _worker_gone(self, peer: int, reason: str, now: float, out: Out, counts_as_death: bool) -> None:
        """Forget a worker; what it ran goes back to the queue, and its slot is refilled."""
        state = self.state
        slot_no = state.spawned.pop(peer, None)
        worker = state.workers.pop(peer, None)
        if worker is not None:
            for exec_id in sorted(worker.running, reverse=True):
                execution = state.execs.get(exec_id)
                if execution is None:
                    continue
                execution.worker = None
                execution.deaths += counts_as_death
                if execution.deaths >= self.config.max_worker_deaths:
                    message = f"the worker running it died {execution.deaths} times ({reason})"
                    self._task_final(execution, _error("coda.errors.WorkerLost", message, "worker_lost"), out)
                else:
                    state.pending_tasks.appendleft(exec_id)
            for exec_id in worker.running_workflows:
                execution = state.execs.get(exec_id)
                if execution is not None:
                    execution.worker = None
                    state.pending_workflows.appendleft(exec_id)
            log = logger.info if state.draining else logger.warning
            log(
                "coda.supervisor.worker_lost: slot %s pid %s (%s); re-dispatching %s tasks, %s workflows",
                worker.slot, worker.pid, reason, len(worker.running), len(worker.running_workflows),
            )
        if slot_no is None:
            return
        slot = state.slots[slot_no]
        if slot.peer != peer:
            return
        slot.peer = None
        if counts_as_death and now - slot.spawned_at < _HEALTHY_AFTER:
            slot.failures += 1
        else:
            slot.failures = 0
        delay = 0.0 if slot.failures == 0 else min(_BACKOFF_FIRST * 2 ** (slot.failures - 1), _BACKOFF_MAX)
        if not state.draining:
            state.add_timer(now + delay, "respawn", slot_no)

    def _respawn_due(self, slot_no: int, now: float, out: Out) -> None:
        slot = self.state.slots[slot_no]
        if slot.peer is None and not self.state.draining:
            slot.spawned_at = now
            out.append((PROCESSES, StartWorker(slot_no)))

    # -- dispatch -------------------------------------------------------------------------------------

    def _pump(self, now: float, out: Out) -> None:
        state = self.state
        if state.pending_tasks and state.workers:
            self._place(state.pending_tasks, "task", now, out)
        if state.pending_workflows and state.workers:
            self._place(state.pending_workflows, "workflow", now, out)

    def _place(self, queue: Any, kind: str, now: float, out: Out) -> None:
        """Hand queued executions to capable workers with room, least loaded first, ties taken
        in turn so that no worker is always the first choice."""
        state = self.state
        workers = list(state.workers.values())
        is_task = kind == "task"

        def room(w: WorkerState) -> int:
            return w.capacity - len(w.running) if is_task else w.workflow_capacity - len(w.running_workflows)

        if not any(room(w) > 0 for w in workers):
            return
        skipped = []
        while queue:
            exec_id = queue.popleft()
            execution = state.execs.get(exec_id)
            if execution is None or execution.worker is not None:
                continue
            run = state.runs.get(execution.run_id)
            # A submitted task belongs to no run (run id "").
            if (run is None and execution.run_id) or (kind == "workflow" and (run is None or run.state in FINISHED)):
                state.execs.pop(exec_id, None)
                continue
            best: WorkerState | None = None
            best_rank: tuple[bool, bool, int] = (False, False, 0)
            count = len(workers)
            state.rotation += 1
            origin = execution.origin
            for i in range(count):
                w = workers[(state.rotation + i) % count]
                # A task goes first to the worker whose workflow awaits it, if it has room: one
                # process fewer to wake per step. Then the one with most room; ties in turn.
                free = room(w)
                rank = (free > 0, w.peer == origin, free)
                if free > 0 and rank > best_rank and self._can_run(w, execution.name, is_task):
                    best, best_rank = w, rank
            if best is None:
                skipped.append(exec_id)
                if not any(room(w) > 0 for w in workers):
                    break
                continue
            execution.worker = best.peer
            execution.token += 1
            if is_task:
                best.running.add(exec_id)
                if run is not None:
                    run.counts.executed += 1
                if best.bridge:
                    out.append((best.peer, ExecuteLegacyTask(exec_id, execution.run_id, execution.name, execution.args, execution.memo_key)))
                else:
                    first = execution.waiters[0] if execution.waiters else None
                    execution.local = first if first is not None and first[0] == best.peer else None
                    local_request = None if execution.local is None else execution.local[1]
                    out.append((best.peer, p.ExecuteTask(
                        exec_id, execution.run_id, execution.name, execution.args, execution.attempt, local_request)))
                self._arm_deadline(execution, now)
            else:
                assert run is not None
                best.running_workflows.add(exec_id)
                run.state = "running"
                replaying = any(key[0] == run.attempt for key in itertools.chain(run.replay, run.replay_inflight))
                out.append((best.peer, p.ExecuteWorkflow(exec_id, run.run_id, run.workflow, run.args, run.attempt, replaying)))
            if not any(room(w) > 0 for w in workers):
                break
        queue.extendleft(reversed(skipped))

    def _arm_deadline(self, execution: Execution, now: float) -> None:
        spec = self.state.known_tasks.get(execution.name)
        timeout = execution.timeout if execution.timeout is not None else None if spec is None else spec.timeout
        if timeout is not None:
            self.state.add_timer(now + timeout, "deadline", execution.id, execution.token)

    # -- tasks ----------------------------------------------------------------------------------------

    def _spawn_task(self, sender: int, msg: p.SpawnTask, now: float, out: Out) -> None:
        state = self.state
        run = state.runs.get(msg.run_id)
        if run is None or run.state in FINISHED:
            why = "no longer exists" if run is None else f"is {run.state}"
            out.append((sender, p.SpawnFailed(msg.request_id, msg.task, _error("coda.errors.InvalidState", f"run {msg.run_id!r} {why}", "cancelled"))))
            return
        if msg.task not in state.known_tasks and state.bridge is None:
            names = ", ".join(sorted(state.known_tasks)) or "(none)"
            message = f"unknown task {msg.task!r}; registered tasks: {names}"
            out.append((sender, p.SpawnFailed(msg.request_id, msg.task, _error("coda.errors.UnknownName", message, "unknown_name"))))
            return
        if type(msg.args) is not dict or (msg.cache_key is not None and type(msg.cache_key) is not list):
            message = f"task {msg.task!r}: args must be a dict and cache_key a list"
            out.append((sender, p.SpawnFailed(msg.request_id, msg.task, _error("coda.errors.DataError", message, "invalid"))))
            return
        run.counts.spawned += 1
        # Replay first: a workflow re-executed after its worker died gets what its n-th spawn
        # got before, success or failure, without running anything again.
        replay = (run.attempt, msg.seq, msg.task)
        outcome = run.replay.get(replay)
        if outcome is not None:
            out.append((sender, outcome_message(msg.request_id, msg.task, outcome)))
            return
        running = run.replay_inflight.get(replay)
        if running is not None:
            state.execs[running].waiters.append((sender, msg.request_id))
            return
        key: bytes | None = None
        if msg.cache_key is not None:
            key = memo_key(msg.run_id, msg.task, msg.cache_key)
            if key in run.memo:
                run.counts.memo_hits += 1
                out.append((sender, p.SpawnSucceeded(msg.request_id, run.memo[key])))
                return
            running = run.inflight.get(key)
            if running is not None:
                run.counts.memo_hits += 1
                state.execs[running].waiters.append((sender, msg.request_id))
                return
        exec_id = next(state.exec_ids)
        state.execs[exec_id] = Execution(
            exec_id, "task", msg.task, msg.run_id, msg.args, memo_key=key, replay_key=replay,
            waiters=[(sender, msg.request_id)], origin=sender,
        )
        run.tasks[exec_id] = None
        run.replay_inflight[replay] = exec_id
        if key is not None:
            run.inflight[key] = exec_id
        worker = state.workers.get(sender)
        if msg.local and key is None and worker is not None:
            # Already running beside its workflow: record it as placed there (it answers its
            # workflow itself and reports as -request_id), so that deadlines, deaths and
            # retries treat it like any other execution.
            execution = state.execs[exec_id]
            execution.worker = sender
            execution.token += 1
            execution.local = (sender, msg.request_id)
            worker.running.add(exec_id)
            worker.local_ids[msg.request_id] = exec_id
            run.counts.executed += 1
            self._arm_deadline(execution, now)
        else:
            state.pending_tasks.append(exec_id)

    def _submit_task(self, sender: int, msg: SubmitTask, now: float, out: Out) -> None:
        state = self.state
        if msg.task not in state.known_tasks:
            message = f"unknown task {msg.task!r}: no worker registered it"
            out.append((sender, p.SpawnFailed(msg.request_id, msg.task, _error("coda.errors.UnknownName", message, "unknown_name"))))
            return
        exec_id = next(state.exec_ids)
        state.execs[exec_id] = Execution(
            exec_id, "task", msg.task, "", msg.args, waiters=[(sender, msg.request_id)], timeout=msg.timeout
        )
        state.pending_tasks.append(exec_id)

    def _running_exec(self, sender: int, exec_id: int) -> Execution | None:
        if exec_id < 0:  # a task its worker started itself, known there by its spawn's request id
            worker = self.state.workers.get(sender)
            exec_id = -1 if worker is None else worker.local_ids.pop(-exec_id, -1)
        execution = self.state.execs.get(exec_id)
        if execution is None or execution.worker != sender:
            return None  # stale: the execution was re-dispatched or timed out meanwhile
        return execution

    def _task_succeeded(self, sender: int, msg: p.TaskSucceeded, now: float, out: Out) -> None:
        execution = self._running_exec(sender, msg.exec_id)
        if execution is None:
            return
        state = self.state
        state.workers[sender].running.discard(execution.id)
        del state.execs[execution.id]
        run = state.runs.get(execution.run_id)
        if run is not None:
            run.counts.succeeded += 1
            run.tasks.pop(execution.id, None)
            self._settle(run, execution, (True, msg.value))
        for waiter in execution.waiters:
            peer, request_id = waiter
            if waiter != execution.local and (peer in state.workers or peer in state.clients):
                out.append((peer, p.SpawnSucceeded(request_id, msg.value)))

    @staticmethod
    def _settle(run: Run, execution: Execution, outcome: tuple[bool, Any]) -> None:
        """The execution is over: it leaves the in-flight tables. A success under a cache key
        is memoized (failures never are); either outcome is kept for replay in this attempt."""
        key, replay = execution.memo_key, execution.replay_key
        if key is not None:
            run.inflight.pop(key, None)
            if outcome[0]:
                run.memo[key] = outcome[1]
        if replay is not None and run.replay_inflight.get(replay) == execution.id:
            del run.replay_inflight[replay]
            if replay[0] == run.attempt and run.state not in FINISHED:
                run.replay[replay] = outcome

    def _task_failed(self, sender: int, msg: p.TaskFailed, now: float, out: Out) -> None:
        execution = self._running_exec(sender, msg.exec_id)
        if execution is None:
            return
        state = self.state
        state.workers[sender].running.discard(execution.id)
        execution.worker = None
        run = state.runs.get(execution.run_id)
        if msg.retry_in is not None and run is not None and run.state not in FINISHED:
            self._retry_later(execution, run, msg.retry_in, now)
        else:
            # The worker answered its local waiter itself (it saw retry_in None too).
            self._task_final(execution, msg.error, out, answered=execution.local)

    def _retry_later(self, execution: Execution, run: Run, delay: float, now: float) -> None:
        execution.attempt += 1
        execution.deaths = 0
        run.counts.retried += 1
        if delay <= 0:
            self.state.pending_tasks.append(execution.id)
        else:
            self.state.add_timer(now + delay, "dispatch", execution.id)

    def _retry_due(self, exec_id: int, now: float, out: Out) -> None:
        execution = self.state.execs.get(exec_id)
        if execution is not None and execution.worker is None:
            self.state.pending_tasks.append(exec_id)

    def _task_final(self, execution: Execution, error: p.ErrorInfo, out: Out, answered: Waiter | None = None) -> None:
        state = self.state
        state.execs.pop(execution.id, None)
        run = state.runs.get(execution.run_id)
        if run is not None:
            run.counts.failed += 1
            run.tasks.pop(execution.id, None)
            self._settle(run, execution, (False, error))
        for waiter in execution.waiters:
            peer, request_id = waiter
            if waiter != answered and (peer in state.workers or peer in state.clients):
                out.append((peer, p.SpawnFailed(request_id, execution.name, error)))

    def _deadline(self, exec_id: int, token: int, now: float, out: Out) -> None:
        state = self.state
        execution = state.execs.get(exec_id)
        if execution is None or execution.token != token or execution.worker is None:
            return
        peer = execution.worker
        spec = state.known_tasks[execution.name]
        worker = state.workers[peer]
        worker.running.discard(exec_id)
        execution.worker = None
        limit = execution.timeout if execution.timeout is not None else spec.timeout
        message = f"ran longer than its timeout of {limit:g}s; worker pid {worker.pid} was killed"
        logger.warning("coda.supervisor.task_timeout: %s exec %s: %s", execution.name, exec_id, message)
        run = state.runs.get(execution.run_id)
        if spec.retry_on_timeout and execution.attempt <= spec.max_retries and run is not None and run.state not in FINISHED:
            self._retry_later(execution, run, spec.retry_delay, now)
        else:
            self._task_final(execution, _error("coda.errors.TaskTimeout", message, "timeout"), out)
        out.append((PROCESSES, KillWorker(peer, f"task {execution.name} timed out")))
        # Other executions on that worker die with it through no fault of their own.
        self._worker_gone(peer, "killed after a task timeout", now, out, counts_as_death=False)

    # -- runs -----------------------------------------------------------------------------------------

    def _new_run(self, run_id: str, workflow: str, args: dict[str, Any], now: float, parent: str | None) -> Run:
        spec = self.state.known_workflows[workflow]
        # spec.name, not the decoded copy: one string for every run of a workflow.
        run = Run(run_id, spec.name, args, spec.max_retries, spec.retry_delay, now, parent=parent)
        self.state.runs[run_id] = run
        self._execute_run(run)
        return run

    def _execute_run(self, run: Run) -> None:
        state = self.state
        exec_id = next(state.exec_ids)
        state.execs[exec_id] = Execution(exec_id, "workflow", run.workflow, run.run_id, run.args, attempt=run.attempt)
        run.exec_id = exec_id
        state.pending_workflows.append(exec_id)

    def _unknown_workflow(self, name: str) -> p.ErrorInfo:
        names = ", ".join(sorted(self.state.known_workflows)) or "(none)"
        return _error("coda.errors.UnknownName", f"unknown workflow {name!r}; registered workflows: {names}", "unknown_name")

    def _start_run(self, sender: int, msg: p.StartRun, now: float, out: Out) -> None:
        state = self.state
        if msg.run_id is not None and msg.run_id in state.runs:
            out.append((sender, p.RunStarted(msg.request_id, msg.run_id, False)))
            return
        error = None
        if state.draining:
            error = _error("coda.errors.ShuttingDown", "the supervisor is shutting down and takes no new runs", "shutting_down")
        elif msg.workflow not in state.known_workflows:
            error = self._unknown_workflow(msg.workflow)
        elif type(msg.args) is not dict:
            error = _error("coda.errors.DataError", f"workflow {msg.workflow!r}: args must be a dict", "invalid")
        elif msg.run_id is not None and (type(msg.run_id) is not str or not msg.run_id or "/" in msg.run_id):
            error = _error("coda.errors.DataError", f"run_id must be a non-empty str without '/', got {msg.run_id!r}", "invalid")
        if error is not None:
            out.append((sender, p.ErrorReply(msg.request_id, error)))
            return
        run_id = msg.run_id if msg.run_id is not None else self.new_run_id()
        self._new_run(run_id, msg.workflow, msg.args, now, None)
        out.append((sender, p.RunStarted(msg.request_id, run_id, True)))

    def _spawn_workflow(self, sender: int, msg: p.SpawnWorkflow, now: float, out: Out) -> None:
        state = self.state
        parent = state.runs.get(msg.run_id)
        if parent is None or parent.state in FINISHED:
            why = "no longer exists" if parent is None else f"is {parent.state}"
            out.append((sender, p.SpawnFailed(msg.request_id, msg.workflow, _error("coda.errors.InvalidState", f"run {msg.run_id!r} {why}", "cancelled"))))
            return
        if msg.workflow not in state.known_workflows:
            out.append((sender, p.SpawnFailed(msg.request_id, msg.workflow, self._unknown_workflow(msg.workflow))))
            return
        child_id = child_run_id(msg.run_id, msg.workflow, msg.args)
        parent.children[child_id] = None
        child = state.runs.get(child_id)
        if child is None:
            child = self._new_run(child_id, msg.workflow, msg.args, now, msg.run_id)
        elif child.state == "succeeded":
            parent.counts.memo_hits += 1
            out.append((sender, p.SpawnSucceeded(msg.request_id, child.value)))
            return
        elif child.state in FINISHED:
            self._restart(child, now)
        child.waiters.append((sender, msg.request_id))

    def _await_run(self, sender: int, msg: p.AwaitRun, now: float, out: Out) -> None:
        run = self._find(sender, msg.request_id, msg.run_id, out)
        if run is None:
            return
        if run.state in FINISHED:
            out.append((sender, p.RunFinished(msg.request_id, run.run_id, run.state, run.value, run.error)))
        else:
            run.waiters.append((sender, msg.request_id))

    def _get_run_status(self, sender: int, msg: p.GetRunStatus, now: float, out: Out) -> None:
        run = self._find(sender, msg.request_id, msg.run_id, out)
        if run is not None:
            out.append((sender, p.StatusReply(msg.request_id, run.status())))

    def _rerun_run(self, sender: int, msg: p.RerunRun, now: float, out: Out) -> None:
        run = self._find(sender, msg.request_id, msg.run_id, out)
        if run is None:
            return
        if run.state not in ("failed", "cancelled"):
            message = f"run {run.run_id!r} is {run.state}; only a failed or cancelled run can be rerun"
            out.append((sender, p.ErrorReply(msg.request_id, _error("coda.errors.InvalidState", message, "invalid"))))
            return
        if self.state.draining:
            error = _error("coda.errors.ShuttingDown", "the supervisor is shutting down and takes no new runs", "shutting_down")
            out.append((sender, p.ErrorReply(msg.request_id, error)))
            return
        self._restart(run, now)
        out.append((sender, p.Ack(msg.request_id)))

    def _restart(self, run: Run, now: float) -> None:
        """A failed or cancelled run runs again under its own id: attempt + 1, memo kept."""
        run.attempt += 1
        run.replay.clear()
        run.state = "pending"
        run.error = None
        run.finished_at = None
        self.state.finished.pop(run.run_id, None)
        self._execute_run(run)

    def _cancel_run(self, sender: int, msg: p.CancelRun, now: float, out: Out) -> None:
        run = self._find(sender, msg.request_id, msg.run_id, out)
        if run is None:
            return
        if run.state not in FINISHED:
            self._cancel(run, now, out)
        out.append((sender, p.Ack(msg.request_id)))

    def _cancel(self, run: Run, now: float, out: Out) -> None:
        state = self.state
        if run.exec_id is not None:
            execution = state.execs.pop(run.exec_id, None)
            if execution is not None and execution.worker is not None:
                worker = state.workers.get(execution.worker)
                if worker is not None:
                    worker.running_workflows.discard(execution.id)
                out.append((execution.worker, p.CancelExecution(execution.id)))
        # Queued tasks of the run are dropped; running ones finish and are memoized, except on
        # Celery, where the bridge revokes them (and answers for them).
        for exec_id in list(run.tasks):
            execution = state.execs.get(exec_id)
            if execution is not None and execution.worker is None:
                self._task_final(execution, _error("coda.errors.InvalidState", "its run was cancelled", "cancelled"), out)
            elif execution is not None and state.bridge is not None and execution.worker == state.bridge:
                out.append((state.bridge, p.CancelExecution(exec_id)))
        for child_id in run.children:
            child = state.runs.get(child_id)
            if child is not None and child.state not in FINISHED:
                self._cancel(child, now, out)
        self._finish(run, "cancelled", None, _error("coda.errors.WorkflowFailed", "the run was cancelled", "cancelled"), now, out)

    def _find(self, sender: int, request_id: int, run_id: str, out: Out) -> Run | None:
        run = self.state.runs.get(run_id)
        if run is None:
            error = _error("coda.errors.RunNotFound", f"no run {run_id!r} (never started, or evicted after its retention)", "not_found")
            out.append((sender, p.ErrorReply(request_id, error)))
        return run

    def _workflow_exec(self, sender: int, exec_id: int) -> tuple[Execution, Run] | None:
        execution = self._running_exec(sender, exec_id)
        if execution is None:
            return None
        state = self.state
        del state.execs[exec_id]
        state.workers[sender].running_workflows.discard(exec_id)
        run = state.runs.get(execution.run_id)
        if run is None or run.exec_id != exec_id:
            return None
        run.exec_id = None
        return execution, run

    def _workflow_succeeded(self, sender: int, msg: p.WorkflowSucceeded, now: float, out: Out) -> None:
        found = self._workflow_exec(sender, msg.exec_id)
        if found is not None:
            self._finish(found[1], "succeeded", msg.value, None, now, out)

    def _workflow_failed(self, sender: int, msg: p.WorkflowFailed, now: float, out: Out) -> None:
        found = self._workflow_exec(sender, msg.exec_id)
        if found is None:
            return
        run = found[1]
        if run.attempt <= run.max_retries and not self.state.draining:
            logger.info("coda.supervisor.workflow_retry: run %s attempt %s failed: %s", run.run_id, run.attempt, msg.error.message)
            run.attempt += 1
            run.replay.clear()
            self.state.add_timer(now + run.retry_delay, "rerun", run.run_id)
        else:
            self._finish(run, "failed", None, msg.error, now, out)

    def _rerun_due(self, run_id: str, now: float, out: Out) -> None:
        run = self.state.runs.get(run_id)
        if run is not None and run.state not in FINISHED and run.exec_id is None:
            self._execute_run(run)

    def _finish(self, run: Run, outcome: str, value: Any, error: p.ErrorInfo | None, now: float, out: Out) -> None:
        state = self.state
        run.state, run.value, run.error, run.finished_at, run.exec_id = outcome, value, error, now, None
        run.replay.clear()
        if outcome == "succeeded":
            # Only a failed or cancelled run can run again: a succeeded one keeps its result and
            # counts, not what a rerun would need. This keeps retained runs small.
            run.memo.clear()
            run.args = {}
        for peer, request_id in run.waiters:
            if peer in state.clients:
                out.append((peer, p.RunFinished(request_id, run.run_id, outcome, value, error)))
            elif peer in state.workers:
                if outcome == "succeeded":
                    out.append((peer, p.SpawnSucceeded(request_id, value)))
                else:
                    assert error is not None
                    wire = p.ErrorInfo(error.exc_type, error.message, error.traceback, "workflow_failed")
                    out.append((peer, p.SpawnFailed(request_id, run.run_id, wire)))
        run.waiters.clear()
        state.finished[run.run_id] = None
        if outcome == "succeeded":
            state.succeeded[run.run_id] = None
        while len(state.finished) > self.config.max_runs:
            # Over the cap, succeeded runs go first: failed ones are those people rerun.
            victim = next(iter(state.succeeded or state.finished))
            state.succeeded.pop(victim, None)
            del state.finished[victim]
            state.runs.pop(victim, None)
        if state.evict_at is None:
            state.evict_at = now + self.config.retention
            state.add_timer(state.evict_at, "evict", None)

    def _evict(self, now: float) -> None:
        """Forget finished runs past their retention (a timer; ``max_runs`` is kept by _finish)."""
        state = self.state
        state.evict_at = None
        horizon = now - self.config.retention
        while state.finished:
            run_id = next(iter(state.finished))
            run = state.runs.get(run_id)
            if run is not None and run.finished_at is not None and run.finished_at > horizon:
                state.evict_at = run.finished_at + self.config.retention
                state.add_timer(state.evict_at, "evict", None)
                break
            state.finished.popitem(last=False)
            state.succeeded.pop(run_id, None)
            state.runs.pop(run_id, None)

    def _drain(self, sender: int, msg: Drain, now: float, out: Out) -> None:
        self.state.draining = True

    # -- clients ------------------------------------------------------------------------------------

    def _client_hello(self, sender: int, msg: p.ClientHello, now: float, out: Out) -> None:
        if msg.version != p.PROTOCOL_VERSION:
            error = _error("coda.errors.ProtocolError", f"client speaks protocol {msg.version}, supervisor {p.PROTOCOL_VERSION}", "invalid")
        elif self.config.token is not None and msg.token != self.config.token:
            error = _error("coda.errors.AuthenticationFailed", "wrong or missing token", "auth")
        else:
            self.state.clients.add(sender)
            out.append((sender, p.Welcome(p.PROTOCOL_VERSION)))
            return
        logger.warning("coda.supervisor.client_refused: peer %s: %s", sender, error.message)
        out.append((sender, p.ErrorReply(0, error)))
        out.append((PROCESSES, CloseConnection(sender, error.message)))

    def _get_supervisor_status(self, sender: int, msg: p.GetSupervisorStatus, now: float, out: Out) -> None:
        out.append((sender, p.StatusReply(msg.request_id, self.summary(now))))

    def summary(self, now: float) -> dict[str, Any]:
        state = self.state
        runs: dict[str, int] = {}
        for run in state.runs.values():
            runs[run.state] = runs.get(run.state, 0) + 1
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
                for w in sorted(state.workers.values(), key=lambda w: w.slot)
                if not w.bridge
            ],
            "bridge": None if state.bridge is None else {"running_tasks": len(state.workers[state.bridge].running)},
            "runs": runs,
            "queues": {
                "tasks_waiting": len(state.pending_tasks),  # for a free slot on a worker
                "tasks_retrying": sum(  # waiting out their retry_delay
                    1 for _, _, kind, ref, _ in state.timers
                    if kind == "dispatch" and ref in state.execs and state.execs[ref].worker is None
                ),
                "workflows_waiting": len(state.pending_workflows),
                "runs_rerunning": sum(  # failed, rerun after the workflow's retry_delay
                    1 for _, _, kind, ref, _ in state.timers
                    if kind == "rerun" and ref in state.runs and state.runs[ref].state not in FINISHED
                ),
            },
            "celery_queues": list(self.config.queues),
            "draining": state.draining,
            "registered": {"tasks": sorted(state.known_tasks), "workflows": sorted(state.known_workflows)},
        }


def _random_run_id() -> str:
    import uuid

    return uuid.uuid4().hex
