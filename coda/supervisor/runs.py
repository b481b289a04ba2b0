"""Runs: a workflow run from its start (by a client, or by a parent workflow) through its
attempts to its end, and what clients ask of it (await, status, rerun, cancel). A failed attempt
reruns under the same run id after the workflow's delay while its retries allow; a finished run
is kept for ``--retention`` seconds and at most ``--max-runs`` of them, succeeded ones evicted
first (failed ones are those people rerun).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from typing import Any

from coda.errors import ErrorInfo, ErrorKind, refusal
from coda.protocol import (
    Ack,
    AwaitRun,
    CancelExecution,
    CancelRun,
    ErrorReply,
    GetRunStatus,
    RerunRun,
    RunFinished,
    RunStarted,
    SpawnFailed,
    SpawnSucceeded,
    SpawnWorkflow,
    StartRun,
    StatusReply,
    WorkflowRaised,
    WorkflowReturned,
)
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.messages import Drain, Out
from coda.supervisor.outcomes import child_run_id
from coda.supervisor.state import FINISHED, EvictDue, Execution, RerunDue, Run, SupervisorState
from coda.supervisor.tasks import Tasks

__all__ = ["Runs"]

logger = logging.getLogger(__name__)

_SHUTTING_DOWN = "the supervisor is shutting down and takes no new runs"


class Runs:
    def __init__(self, state: SupervisorState, config: SupervisorConfig, tasks: Tasks) -> None:
        self.state = state
        self.config = config
        self.tasks = tasks

    # -- starting -------------------------------------------------------------------------------------

    def start(self, sender: int, msg: StartRun, now: float, out: Out) -> None:
        state = self.state
        if msg.run_id is not None and msg.run_id in state.runs:
            out.append((sender, RunStarted(msg.request_id, msg.run_id, False)))
            return
        error = None
        if state.draining:
            error = refusal(ErrorKind.SHUTTING_DOWN, _SHUTTING_DOWN)
        elif msg.workflow not in state.known_workflows:
            error = self._unknown(msg.workflow)
        elif type(msg.args) is not dict:
            error = refusal(ErrorKind.DATA, f"workflow {msg.workflow!r}: args must be a dict")
        elif msg.run_id is not None and (type(msg.run_id) is not str or not msg.run_id or "/" in msg.run_id):
            error = refusal(ErrorKind.DATA, f"run_id must be a non-empty str without '/', got {msg.run_id!r}")
        if error is not None:
            out.append((sender, ErrorReply(msg.request_id, error)))
            return
        run_id = msg.run_id if msg.run_id is not None else uuid.uuid4().hex
        self._new(run_id, msg.workflow, msg.args, now, None)
        out.append((sender, RunStarted(msg.request_id, run_id, True)))

    def spawn_workflow(self, sender: int, msg: SpawnWorkflow, now: float, out: Out) -> None:
        state = self.state
        parent = state.runs.get(msg.run_id)
        if parent is None or parent.state in FINISHED:
            why = "no longer exists" if parent is None else f"is {parent.state}"
            out.append((sender, SpawnFailed(msg.request_id, msg.workflow, refusal(ErrorKind.CANCELLED, f"run {msg.run_id!r} {why}"))))
            return
        if msg.workflow not in state.known_workflows:
            out.append((sender, SpawnFailed(msg.request_id, msg.workflow, self._unknown(msg.workflow))))
            return
        child_id = child_run_id(msg.run_id, msg.workflow, msg.args)
        parent.children[child_id] = None
        child = state.runs.get(child_id)
        if child is None:
            child = self._new(child_id, msg.workflow, msg.args, now, msg.run_id)
        elif child.state == "succeeded":
            parent.counts.memo_hits += 1
            out.append((sender, SpawnSucceeded(msg.request_id, child.value)))
            return
        elif child.state in FINISHED:
            self._restart(child)
        child.waiters.append((sender, msg.request_id))

    def _unknown(self, name: str) -> ErrorInfo:
        names = ", ".join(sorted(self.state.known_workflows)) or "(none)"
        return refusal(ErrorKind.UNKNOWN_NAME, f"unknown workflow {name!r}; registered workflows: {names}")

    def _new(self, run_id: str, workflow: str, args: dict[str, Any], now: float, parent: str | None) -> Run:
        spec = self.state.known_workflows[workflow]
        # spec.name, not the decoded copy: one string for every run of a workflow.
        run = Run(run_id, spec.name, args, spec.max_retries, spec.retry_delay, now, parent=parent)
        self.state.runs[run_id] = run
        self._execute(run)
        return run

    def _execute(self, run: Run) -> None:
        state = self.state
        exec_id = next(state.exec_ids)
        state.execs[exec_id] = Execution(exec_id, run.workflow, run.run_id, run.args, attempt=run.attempt)
        run.exec_id = exec_id
        state.pending_workflows.append(exec_id)

    def _restart(self, run: Run) -> None:
        """A failed or cancelled run runs again under its own id: attempt + 1, memo kept."""
        run.attempt += 1
        run.replay.clear()
        run.state = "pending"
        run.error = None
        run.finished_at = None
        self.state.finished.pop(run.run_id, None)
        self._execute(run)

    # -- client requests ------------------------------------------------------------------------------

    def _find(self, sender: int, request_id: int, run_id: str, out: Out) -> Run | None:
        run = self.state.runs.get(run_id)
        if run is None:
            error = refusal(ErrorKind.NOT_FOUND, f"no run {run_id!r} (never started, or evicted after its retention)")
            out.append((sender, ErrorReply(request_id, error)))
        return run

    def await_run(self, sender: int, msg: AwaitRun, now: float, out: Out) -> None:
        run = self._find(sender, msg.request_id, msg.run_id, out)
        if run is None:
            return
        if run.state in FINISHED:
            out.append((sender, RunFinished(msg.request_id, run.run_id, run.state, run.value, run.error)))
        else:
            run.waiters.append((sender, msg.request_id))

    def status(self, sender: int, msg: GetRunStatus, now: float, out: Out) -> None:
        run = self._find(sender, msg.request_id, msg.run_id, out)
        if run is not None:
            out.append((sender, StatusReply(msg.request_id, run.status())))

    def rerun(self, sender: int, msg: RerunRun, now: float, out: Out) -> None:
        run = self._find(sender, msg.request_id, msg.run_id, out)
        if run is None:
            return
        if run.state not in ("failed", "cancelled"):
            message = f"run {run.run_id!r} is {run.state}; only a failed or cancelled run can be rerun"
            out.append((sender, ErrorReply(msg.request_id, refusal(ErrorKind.INVALID_STATE, message))))
        elif self.state.draining:
            out.append((sender, ErrorReply(msg.request_id, refusal(ErrorKind.SHUTTING_DOWN, _SHUTTING_DOWN))))
        else:
            self._restart(run)
            out.append((sender, Ack(msg.request_id)))

    def cancel(self, sender: int, msg: CancelRun, now: float, out: Out) -> None:
        run = self._find(sender, msg.request_id, msg.run_id, out)
        if run is None:
            return
        if run.state not in FINISHED:
            self._cancel(run, now, out)
        out.append((sender, Ack(msg.request_id)))

    def _cancel(self, run: Run, now: float, out: Out) -> None:
        state = self.state
        if run.exec_id is not None:
            execution = state.execs.pop(run.exec_id, None)
            if execution is not None and execution.worker is not None:
                worker = state.workers.get(execution.worker)
                if worker is not None:
                    worker.running_workflows.discard(execution.id)
                out.append((execution.worker, CancelExecution(execution.id)))
        # Queued tasks of the run are dropped; running ones finish and are memoized, except on
        # Celery, where the bridge revokes them (and answers for them).
        for exec_id in list(run.tasks):
            execution = state.execs.get(exec_id)
            if execution is not None and execution.worker is None:
                self.tasks.fail(execution, refusal(ErrorKind.CANCELLED, "its run was cancelled"), out)
            elif execution is not None and state.bridge is not None and execution.worker == state.bridge:
                out.append((state.bridge, CancelExecution(exec_id)))
        for child_id in run.children:
            child = state.runs.get(child_id)
            if child is not None and child.state not in FINISHED:
                self._cancel(child, now, out)
        self._finish(run, "cancelled", None, refusal(ErrorKind.WORKFLOW_FAILED, "the run was cancelled"), now, out)

    def drain(self, sender: int, msg: Drain, now: float, out: Out) -> None:
        self.state.draining = True

    # -- reports from the worker running its workflow -------------------------------------------------

    def _reported(self, sender: int, exec_id: int) -> Run | None:
        """The run whose current attempt the report is about; None for a stale report."""
        state = self.state
        execution = state.execs.get(exec_id)
        if execution is None or execution.worker != sender:
            return None
        del state.execs[exec_id]
        state.workers[sender].running_workflows.discard(exec_id)
        run = state.runs.get(execution.run_id)
        if run is None or run.exec_id != exec_id:
            return None
        run.exec_id = None
        return run

    def returned(self, sender: int, msg: WorkflowReturned, now: float, out: Out) -> None:
        run = self._reported(sender, msg.exec_id)
        if run is not None:
            self._finish(run, "succeeded", msg.value, None, now, out)

    def raised(self, sender: int, msg: WorkflowRaised, now: float, out: Out) -> None:
        run = self._reported(sender, msg.exec_id)
        if run is None:
            return
        if run.attempt <= run.max_retries and not self.state.draining:
            logger.info("coda.supervisor.workflow_retry", extra={
                "run_id": run.run_id, "attempt": run.attempt, "reason": msg.error.message})
            run.attempt += 1
            run.replay.clear()
            self.state.add_timer(now + run.retry_delay, RerunDue(run.run_id))
        else:
            self._finish(run, "failed", None, msg.error, now, out)

    def rerun_due(self, timer: RerunDue, now: float, out: Out) -> None:
        run = self.state.runs.get(timer.run_id)
        if run is not None and run.state not in FINISHED and run.exec_id is None:
            self._execute(run)

    # -- the end ----------------------------------------------------------------------------------------

    def _finish(self, run: Run, outcome: str, value: Any, error: ErrorInfo | None, now: float, out: Out) -> None:
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
                out.append((peer, RunFinished(request_id, run.run_id, outcome, value, error)))
            elif peer in state.workers:
                if outcome == "succeeded":
                    out.append((peer, SpawnSucceeded(request_id, value)))
                else:
                    assert error is not None
                    # The parent raises WorkflowFailed, whatever the child raised.
                    wire = dataclasses.replace(error, kind=ErrorKind.WORKFLOW_FAILED)
                    out.append((peer, SpawnFailed(request_id, run.run_id, wire)))
        run.waiters.clear()
        state.finished[run.run_id] = None
        if outcome == "succeeded":
            state.succeeded[run.run_id] = None
        while len(state.finished) > self.config.max_runs:
            victim = next(iter(state.succeeded or state.finished))
            state.succeeded.pop(victim, None)
            del state.finished[victim]
            state.runs.pop(victim, None)
        if state.evict_at is None:
            state.evict_at = now + self.config.retention
            state.add_timer(state.evict_at, EvictDue())

    def evict_due(self, timer: EvictDue, now: float, out: Out) -> None:
        """Forget finished runs past their retention (``max_runs`` is kept by _finish)."""
        state = self.state
        state.evict_at = None
        horizon = now - self.config.retention
        while state.finished:
            run_id = next(iter(state.finished))
            run = state.runs.get(run_id)
            if run is not None and run.finished_at is not None and run.finished_at > horizon:
                state.evict_at = run.finished_at + self.config.retention
                state.add_timer(state.evict_at, EvictDue())
                break
            state.finished.popitem(last=False)
            state.succeeded.pop(run_id, None)
            state.runs.pop(run_id, None)
