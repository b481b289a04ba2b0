"""Placement: hand queued executions to capable workers with room, and arm task deadlines.

A task goes first to the worker whose workflow awaits it, if that worker has room (one process
fewer to wake per step), then to the worker with most room; ties are taken in turn, so no
worker is always the first choice. The Celery bridge takes every task name no Coda worker
registered. Workflows are placed the same way on their own capacity.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Callable

from coda.inprocess import ExecuteLegacyTask
from coda.protocol import ExecuteTask, ExecuteWorkflow
from coda.supervisor.messages import Out
from coda.supervisor.state import FINISHED, DeadlineDue, Execution, Run, SupervisorState, WorkerState

__all__ = ["Placement"]


def _task_room(worker: WorkerState) -> int:
    return worker.capacity - len(worker.running)


def _workflow_room(worker: WorkerState) -> int:
    return worker.workflow_capacity - len(worker.running_workflows)


class Placement:
    """Runs after every event: whatever waits in the queues and fits somewhere goes out."""

    def __init__(self, state: SupervisorState) -> None:
        self.state = state

    def pump(self, now: float, out: Out) -> None:
        state = self.state
        if state.workers:
            if state.pending_tasks:
                self._place(state.pending_tasks, True, now, out)
            if state.pending_workflows:
                self._place(state.pending_workflows, False, now, out)

    def arm_deadline(self, execution: Execution, now: float) -> None:
        """Time the task out after its own timeout (or the execution's, for a taken-over message)."""
        timeout = execution.timeout
        if timeout is None:
            spec = self.state.known_tasks.get(execution.name)
            timeout = None if spec is None else spec.timeout
        if timeout is not None:
            self.state.add_timer(now + timeout, DeadlineDue(execution.id, execution.token))

    def can_run(self, worker: WorkerState, name: str, is_task: bool) -> bool:
        if not is_task:
            return name in worker.workflows
        # The bridge takes what no Coda worker registered (Celery tasks, or Celery task names).
        return name not in self.state.known_tasks if worker.bridge else name in worker.tasks

    def _place(self, queue: deque[int], is_task: bool, now: float, out: Out) -> None:
        state = self.state
        workers = list(state.workers.values())
        room = _task_room if is_task else _workflow_room
        if not any(room(w) > 0 for w in workers):
            return
        skipped = []
        while queue:
            exec_id = queue.popleft()
            execution = state.execs.get(exec_id)
            if execution is None or execution.worker is not None:
                continue
            run = state.runs.get(execution.run_id)
            # A submitted task belongs to no run (run id ""); a workflow of a finished run is moot.
            if (run is None and execution.run_id) or (not is_task and (run is None or run.state in FINISHED)):
                state.execs.pop(exec_id, None)
                continue
            best = self._choose(execution, workers, room, is_task)
            if best is None:
                skipped.append(exec_id)
            else:
                execution.worker = best.peer
                execution.token += 1
                if is_task:
                    self._send_task(best, execution, run, now, out)
                else:
                    assert run is not None
                    self._send_workflow(best, execution, run, out)
            if not any(room(w) > 0 for w in workers):
                break
        queue.extendleft(reversed(skipped))

    def _choose(self, execution: Execution, workers: list[WorkerState], room: Callable[[WorkerState], int],
                is_task: bool) -> WorkerState | None:
        state = self.state
        best: WorkerState | None = None
        best_rank: tuple[bool, bool, int] = (False, False, 0)
        count = len(workers)
        state.rotation += 1
        origin = execution.origin
        for i in range(count):
            worker = workers[(state.rotation + i) % count]
            free = room(worker)
            rank = (free > 0, worker.peer == origin, free)
            if free > 0 and rank > best_rank and self.can_run(worker, execution.name, is_task):
                best, best_rank = worker, rank
        return best

    def _send_task(self, worker: WorkerState, execution: Execution, run: Run | None, now: float, out: Out) -> None:
        worker.running.add(execution.id)
        if run is not None:
            run.counts.executed += 1
        if worker.bridge:
            out.append((worker.peer, ExecuteLegacyTask(
                execution.id, execution.run_id, execution.name, execution.args, execution.memo_key)))
        else:
            # Beside the workflow that awaits it: that worker answers the workflow itself.
            first = execution.waiters[0] if execution.waiters else None
            beside = first if first is not None and first[0] == worker.peer else None
            execution.answered_there = beside
            out.append((worker.peer, ExecuteTask(
                execution.id, execution.run_id, execution.name, execution.args, execution.attempt,
                None if beside is None else beside[1])))
        self.arm_deadline(execution, now)

    def _send_workflow(self, worker: WorkerState, execution: Execution, run: Run, out: Out) -> None:
        worker.running_workflows.add(execution.id)
        run.state = "running"
        replaying = any(key[0] == run.attempt for key in itertools.chain(run.replay, run.replay_inflight))
        out.append((worker.peer, ExecuteWorkflow(execution.id, run.run_id, run.workflow, run.args, run.attempt, replaying)))
