"""What the parts of the dispatcher share about outcomes: the answer to a spawn, how a finished
execution is recorded in its run (memo and replay), and the id of a child run."""

from __future__ import annotations

import hashlib
from typing import Any

import msgpack

from coda.protocol import Message, SpawnFailed, SpawnSucceeded
from coda.supervisor.messages import Out
from coda.supervisor.state import FINISHED, Execution, Outcome, Run, SupervisorState, Waiter

__all__ = ["answer_waiters", "child_run_id", "outcome_message", "record_outcome"]


def child_run_id(parent: str, workflow: str, args: dict[str, Any]) -> str:
    """A child run's id: the same parent, workflow and args give the same child on a rerun."""
    digest = hashlib.blake2b(msgpack.packb([workflow, args], use_bin_type=True), digest_size=8).hexdigest()
    return f"{parent}/{workflow}:{digest}"


def outcome_message(request_id: int, task: str, outcome: Outcome) -> Message:
    """The answer to a spawn whose outcome is known."""
    if outcome[0]:
        return SpawnSucceeded(request_id, outcome[1])
    return SpawnFailed(request_id, task, outcome[1])


def answer_waiters(state: SupervisorState, execution: Execution, outcome: Outcome, skip: Waiter | None, out: Out) -> None:
    """Tell every waiter of ``execution`` that is still connected its outcome, except ``skip``
    (the one its worker answered itself)."""
    for waiter in execution.waiters:
        if waiter != skip and state.answerable(waiter[0]):
            out.append((waiter[0], outcome_message(waiter[1], execution.name, outcome)))


def record_outcome(run: Run, execution: Execution, outcome: Outcome) -> None:
    """The execution is over: it leaves the run's in-flight tables. A success under a cache key
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
