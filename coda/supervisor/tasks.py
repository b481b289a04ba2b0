"""Tasks: a spawn becomes an execution (or is answered from the memo or the replay record), an
execution's report settles it or schedules its retry, and a failure for good answers its waiters.

The order of lookups on a spawn is the core promise: replay first (a workflow re-executed after
its worker died gets what its n-th spawn got before, success or failure, without running
anything), then the memo (a stored result, or an execution of the same key still running),
then a new execution.
"""

from __future__ import annotations

from coda.errors import ErrorInfo, ErrorKind, refusal
from coda.inprocess import SubmitTask
from coda.keys import memo_key
from coda.protocol import SpawnFailed, SpawnSucceeded, SpawnTask, TaskRaised, TaskReturned
from coda.supervisor.messages import Out
from coda.supervisor.outcomes import answer_waiters, outcome_message, record_outcome
from coda.supervisor.placement import Placement
from coda.supervisor.state import FINISHED, Execution, Outcome, RetryDue, Run, SupervisorState, Waiter, WorkerState

__all__ = ["Tasks"]


class Tasks:
    def __init__(self, state: SupervisorState, placement: Placement) -> None:
        self.state = state
        self.placement = placement

    # -- spawns -------------------------------------------------------------------------------------

    def spawn(self, sender: int, msg: SpawnTask, now: float, out: Out) -> None:
        state = self.state
        run = state.runs.get(msg.run_id)
        error = self._refusal(msg, run)
        if error is not None:
            out.append((sender, SpawnFailed(msg.request_id, msg.task, error)))
            return
        assert run is not None
        run.counts.spawned += 1
        waiter = (sender, msg.request_id)
        replay = (run.attempt, msg.seq, msg.task)
        outcome = run.replay.get(replay)
        if outcome is not None:
            out.append((sender, outcome_message(msg.request_id, msg.task, outcome)))
            return
        if self._join(run.replay_inflight.get(replay), waiter):
            return
        key: bytes | None = None
        if msg.cache_key is not None:
            key = memo_key(msg.run_id, msg.task, msg.cache_key)
            if key in run.memo:
                run.counts.memo_hits += 1
                out.append((sender, SpawnSucceeded(msg.request_id, run.memo[key])))
                return
            if self._join(run.inflight.get(key), waiter):
                run.counts.memo_hits += 1
                return
        exec_id = next(state.exec_ids)
        execution = state.execs[exec_id] = Execution(
            exec_id, msg.task, msg.run_id, msg.args, memo_key=key, replay_key=replay, waiters=[waiter], origin=sender,
        )
        run.tasks[exec_id] = None
        run.replay_inflight[replay] = exec_id
        if key is not None:
            run.inflight[key] = exec_id
        worker = state.workers.get(sender)
        if msg.started and key is None and worker is not None:
            self._started_here(execution, worker, run, now)
        else:
            state.pending_tasks.append(exec_id)

    def _refusal(self, msg: SpawnTask, run: Run | None) -> ErrorInfo | None:
        if run is None or run.state in FINISHED:
            why = "no longer exists" if run is None else f"is {run.state}"
            return refusal(ErrorKind.CANCELLED, f"run {msg.run_id!r} {why}")
        if msg.task not in self.state.known_tasks and self.state.bridge is None:
            names = ", ".join(sorted(self.state.known_tasks)) or "(none)"
            return refusal(ErrorKind.UNKNOWN_NAME, f"unknown task {msg.task!r}; registered tasks: {names}")
        if type(msg.args) is not dict or (msg.cache_key is not None and type(msg.cache_key) is not list):
            return refusal(ErrorKind.DATA, f"task {msg.task!r}: args must be a dict and cache_key a list")
        return None

    def _join(self, exec_id: int | None, waiter: Waiter) -> bool:
        """Wait for an execution already under way, if there is one."""
        if exec_id is None:
            return False
        self.state.execs[exec_id].waiters.append(waiter)
        return True

    def _started_here(self, execution: Execution, worker: WorkerState, run: Run, now: float) -> None:
        """The worker already runs it beside its workflow (and answers that workflow itself):
        record it as placed there, so that deadlines, deaths and retries treat it like any other
        execution. Its reports name it by the spawn's request id."""
        waiter = execution.waiters[0]
        execution.worker = worker.peer
        execution.token += 1
        execution.answered_there = waiter
        worker.running.add(execution.id)
        worker.started_here[waiter[1]] = execution.id
        run.counts.executed += 1
        self.placement.arm_deadline(execution, now)

    def submit(self, sender: int, msg: SubmitTask, now: float, out: Out) -> None:
        state = self.state
        if msg.task not in state.known_tasks:
            error = refusal(ErrorKind.UNKNOWN_NAME, f"unknown task {msg.task!r}: no worker registered it")
            out.append((sender, SpawnFailed(msg.request_id, msg.task, error)))
            return
        exec_id = next(state.exec_ids)
        state.execs[exec_id] = Execution(exec_id, msg.task, "", msg.args, waiters=[(sender, msg.request_id)], timeout=msg.timeout)
        state.pending_tasks.append(exec_id)

    # -- reports from the worker running it -----------------------------------------------------------

    def returned(self, sender: int, msg: TaskReturned, now: float, out: Out) -> None:
        execution = self._placed(sender, msg.exec_id, msg.request_id)
        if execution is not None:
            self.state.workers[sender].running.discard(execution.id)
            self._conclude(execution, (True, msg.value), execution.answered_there, out)

    def raised(self, sender: int, msg: TaskRaised, now: float, out: Out) -> None:
        execution = self._placed(sender, msg.exec_id, msg.request_id)
        if execution is None:
            return
        self.state.workers[sender].running.discard(execution.id)
        execution.worker = None
        run = self.state.runs.get(execution.run_id)
        if msg.retry_in is not None and run is not None and run.state not in FINISHED:
            self.retry_later(execution, run, msg.retry_in, now)
        else:
            # The worker answered the workflow beside it itself (it saw retry_in None too).
            self._conclude(execution, (False, msg.error), execution.answered_there, out)

    def _placed(self, sender: int, exec_id: int | None, request_id: int | None) -> Execution | None:
        """The execution a report is about, if it still runs on the sender; None for a stale
        report (the execution was re-dispatched or timed out meanwhile)."""
        if exec_id is None:
            worker = self.state.workers.get(sender)
            exec_id = None if worker is None or request_id is None else worker.started_here.pop(request_id, None)
            if exec_id is None:
                return None
        execution = self.state.execs.get(exec_id)
        if execution is None or execution.worker != sender:
            return None
        return execution

    # -- retries and failures -------------------------------------------------------------------------

    def retry_later(self, execution: Execution, run: Run, delay: float, now: float) -> None:
        execution.attempt += 1
        execution.deaths = 0
        run.counts.retried += 1
        if delay <= 0:
            self.state.pending_tasks.append(execution.id)
        else:
            self.state.add_timer(now + delay, RetryDue(execution.id))

    def retry_due(self, timer: RetryDue, now: float, out: Out) -> None:
        execution = self.state.execs.get(timer.exec_id)
        if execution is not None and execution.worker is None:
            self.state.pending_tasks.append(timer.exec_id)

    def fail(self, execution: Execution, error: ErrorInfo, out: Out) -> None:
        """The execution failed for good for a reason of the supervisor's (its worker died too
        often, it timed out, its run was cancelled): every waiter hears it."""
        self._conclude(execution, (False, error), None, out)

    def _conclude(self, execution: Execution, outcome: Outcome, answered: Waiter | None, out: Out) -> None:
        """The execution is over: it leaves the tables, its run records the outcome, and its
        waiters hear it (but ``answered``, whom its worker answered itself)."""
        state = self.state
        state.execs.pop(execution.id, None)
        run = state.runs.get(execution.run_id)
        if run is not None:
            if outcome[0]:
                run.counts.succeeded += 1
            else:
                run.counts.failed += 1
            run.tasks.pop(execution.id, None)
            record_outcome(run, execution, outcome)
        answer_waiters(state, execution, outcome, answered, out)
