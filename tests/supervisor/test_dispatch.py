"""The dispatcher as tables of messages: (sender, message, now) in, (recipient, message) out.
No processes, no sockets: memo, retries, timeouts, respawns and eviction are pure logic."""

from __future__ import annotations

from typing import Any

import pytest

from coda import protocol as p
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.dispatch import Dispatcher, child_run_id
from coda.supervisor.messages import (
    CloseConnection,
    ConnectionClosed,
    Drain,
    KillWorker,
    Out,
    StartWorker,
    WorkerSpawned,
)
from coda.supervisor.state import SUPERVISOR

V = p.PROTOCOL_VERSION
W1, W2, C = 11, 12, 50
TASKS = (
    p.TaskSpec("t"),
    p.TaskSpec("slow", timeout=1.0),
    p.TaskSpec("r", timeout=1.0, max_retries=1, retry_delay=2.0, retry_on_timeout=True),
)
WORKFLOWS = (p.WorkflowSpec("w", max_retries=1, retry_delay=5.0), p.WorkflowSpec("plain"))


def setup(workers: int = 2, **config: Any) -> Dispatcher:
    d = Dispatcher(SupervisorConfig(workers=workers, **config))
    assert d.start(0.0) == [StartWorker(i) for i in range(workers)]
    for slot, peer in enumerate([W1, W2][:workers]):
        d.handle(peer, WorkerSpawned(slot, 100 + slot), 0.0)
        assert d.handle(peer, p.WorkerHello(V, 100 + slot, TASKS, WORKFLOWS), 0.0) == [(peer, p.Welcome(V))]
    assert d.handle(C, p.ClientHello(V, None), 0.0) == [(C, p.Welcome(V))]
    return d


def start_run(d: Dispatcher, run_id: str = "r1", workflow: str = "w") -> int:
    """Start a run; the peer its workflow execution went to."""
    out = d.handle(C, p.StartRun(1, workflow, {}, run_id), 0.0)
    assert out[0] == (C, p.RunStarted(1, run_id, True))
    (peer, execute), = out[1:]
    assert type(execute) is p.ExecuteWorkflow and execute.run_id == run_id
    return peer


def sends(out: Out) -> list[tuple[int, Any]]:
    """The messages for peers, without the effects."""
    return [item for item in out if isinstance(item, tuple)]


def kinds(out: Out) -> list[tuple[int, str] | str]:
    """Each output as (peer, message type), or an effect's type alone."""
    return [(item[0], type(item[1]).__name__) if isinstance(item, tuple) else type(item).__name__ for item in out]


def spawn(d: Dispatcher, wf_peer: int, request: int, task: str = "t", key: list[Any] | None = None,
          seq: int | None = None, now: float = 0.0, run_id: str = "r1") -> Out:
    return d.handle(wf_peer, p.SpawnTask(request, run_id, task, {"x": request}, key, seq or request), now)


def test_memo_hit_returns_the_stored_result_without_running_the_task() -> None:
    d = setup()
    wf = start_run(d)
    out = spawn(d, wf, 1, key=["k"])
    (peer, execute), = out
    # The task runs beside its workflow, which that worker answers itself (awaited_by).
    assert type(execute) is p.ExecuteTask and peer == wf and execute.awaited_by == 1
    assert d.handle(peer, p.TaskReturned(execute.exec_id, "v"), 0.0) == []
    assert spawn(d, wf, 2, key=["k"]) == [(wf, p.SpawnSucceeded(2, "v"))]
    assert d.state.runs["r1"].counts.memo_hits == 1


def test_concurrent_spawns_of_one_key_run_once() -> None:
    d = setup()
    wf = start_run(d)
    (peer, execute), = spawn(d, wf, 1, key=["k"])
    assert spawn(d, wf, 2, key=["k"]) == []
    # Request 1 is answered by the worker itself; the joined request 2 by the supervisor.
    assert d.handle(peer, p.TaskReturned(execute.exec_id, 7), 0.0) == [(wf, p.SpawnSucceeded(2, 7))]


def test_failures_are_never_memoized() -> None:
    d = setup()
    wf = start_run(d)
    d.state.workers[wf].capacity = 0  # run it on the other worker: the supervisor answers
    (peer, execute), = spawn(d, wf, 1, key=["k"])
    assert peer != wf and execute.awaited_by is None
    error = p.ErrorInfo("ValueError", "boom")
    assert d.handle(peer, p.TaskRaised(execute.exec_id, error, None), 0.0) == [(wf, p.SpawnFailed(1, "t", error))]
    assert [type(msg) for _, msg in spawn(d, wf, 2, key=["k"])] == [p.ExecuteTask]


def test_no_cache_key_means_no_memo() -> None:
    d = setup()
    wf = start_run(d)
    (peer, execute), = spawn(d, wf, 1)
    d.handle(peer, p.TaskReturned(execute.exec_id, 1), 0.0)
    assert [type(msg) for _, msg in spawn(d, wf, 2)] == [p.ExecuteTask]
    assert d.state.runs["r1"].memo == {}


@pytest.mark.parametrize(
    ("capacity", "spawns", "expected"),
    [
        (1, 2, {W1: 1, W2: 1}),  # least loaded first: one each, never always the first
        (1, 3, {W1: 1, W2: 1}),  # the third waits for room
        (2, 4, {W1: 2, W2: 2}),
    ],
)
def test_dispatch_spreads_over_workers_with_room(capacity: int, spawns: int, expected: dict[int, int]) -> None:
    d = setup(concurrency=capacity)
    wf = start_run(d)
    placed: dict[int, int] = {}
    for i in range(1, spawns + 1):
        for peer, msg in spawn(d, wf, i):
            placed[peer] = placed.get(peer, 0) + 1
    assert placed == expected
    assert len(d.state.pending_tasks) == spawns - sum(expected.values())


def test_a_local_final_failure_is_answered_by_the_worker_and_a_retry_is_not() -> None:
    d = setup()
    wf = start_run(d)
    (peer, execute), = spawn(d, wf, 1)
    assert peer == wf and execute.awaited_by == 1
    assert d.handle(peer, p.TaskRaised(execute.exec_id, p.ErrorInfo("E", "m"), 0.5), 0.0) == []
    d.state.workers[wf].capacity = 0  # the retry lands on the other worker: no local answer there
    (peer2, again), = d.tick(0.5)
    assert peer2 != wf and again.awaited_by is None and again.attempt == 2
    assert d.handle(peer2, p.TaskReturned(execute.exec_id, "ok"), 1.0) == [(wf, p.SpawnSucceeded(1, "ok"))]


def local_spawn(d: Dispatcher, wf_peer: int, request: int, task: str = "t", now: float = 0.0) -> Out:
    return d.handle(wf_peer, p.SpawnTask(request, "r1", task, {"x": request}, None, request, True), now)


def test_a_task_its_worker_started_itself_is_recorded_there_and_settled_by_request_id() -> None:
    d = setup()
    wf = start_run(d)
    assert local_spawn(d, wf, 1) == []  # nothing to send: it is running already
    (exec_id,) = d.state.workers[wf].running
    assert d.state.execs[exec_id].worker == wf and d.state.runs["r1"].counts.executed == 1
    # The worker answered its workflow itself; the supervisor only records the outcome.
    assert d.handle(wf, p.TaskReturned(None, "v", 1), 0.0) == []
    assert not d.state.workers[wf].running and exec_id not in d.state.execs
    assert d.state.runs["r1"].replay == {(1, 1, "t"): (True, "v")}
    assert d.handle(wf, p.TaskReturned(None, "again", 1), 0.0) == []  # a repeated report is stale


def test_a_local_start_keeps_its_deadline_and_its_retries() -> None:
    d = setup()
    wf = start_run(d)
    assert local_spawn(d, wf, 1, task="slow", now=0.0) == []
    out = d.tick(1.0)
    assert kinds(out)[:2] == [(wf, "SpawnFailed"), "KillWorker"]
    assert out[0][1].error.kind == "timeout"
    d = setup()
    wf = start_run(d)
    local_spawn(d, wf, 1)
    assert d.handle(wf, p.TaskRaised(None, p.ErrorInfo("E", "m"), 0.5, 1), 0.0) == []
    (peer, again), = d.tick(0.5)
    # The retry is placed by the supervisor, back beside its workflow, under its own exec id.
    assert peer == wf and again.attempt == 2 and again.awaited_by == 1 and again.exec_id > 0


def test_a_workflow_run_again_after_its_worker_died_is_told_it_is_replaying() -> None:
    d = setup()
    wf = start_run(d)
    local_spawn(d, wf, 1)
    d.handle(wf, p.TaskReturned(None, "first", 1), 0.0)
    out = d.handle(wf, ConnectionClosed("killed"), 100.0)
    ((wf2, execute),) = [(peer, msg) for peer, msg in sends(out) if type(msg) is p.ExecuteWorkflow]
    assert execute.replaying is True and execute.attempt == 1
    # A new attempt starts afresh: nothing of it to replay.
    d.handle(wf2, p.WorkflowRaised(execute.exec_id, p.ErrorInfo("E", "m")), 100.0)
    (next_attempt,) = [msg for _, msg in sends(d.tick(105.0)) if type(msg) is p.ExecuteWorkflow]
    assert next_attempt.attempt == 2 and next_attempt.replaying is False


def test_a_queued_task_goes_out_when_a_slot_frees() -> None:
    d = setup(workers=1)
    wf = start_run(d)
    (peer, first), = spawn(d, wf, 1)
    assert spawn(d, wf, 2) == []
    out = d.handle(peer, p.TaskReturned(first.exec_id, None), 0.0)
    assert kinds(out) == [(W1, "ExecuteTask")]  # the first was answered on the worker itself


def test_retry_waits_for_its_delay_and_counts_the_attempt() -> None:
    d = setup()
    wf = start_run(d)
    (peer, execute), = spawn(d, wf, 1)
    assert d.handle(peer, p.TaskRaised(execute.exec_id, p.ErrorInfo("E", "m"), 2.5), 10.0) == []
    assert d.tick(12.0) == []
    (peer2, again), = d.tick(12.5)
    assert type(again) is p.ExecuteTask and again.exec_id == execute.exec_id and again.attempt == 2


def test_dead_worker_tasks_and_workflows_are_redispatched_without_a_retry() -> None:
    d = setup()
    wf = start_run(d)
    other = W2 if wf == W1 else W1
    out = spawn(d, wf, 1) + spawn(d, wf, 2)
    on_wf = [msg for peer, msg in out if peer == wf]
    assert len(on_wf) == 1
    out = d.handle(wf, ConnectionClosed("killed"), 100.0)
    # The task and the workflow that ran on the dead worker wait for a worker with room: the
    # other worker is busy with its own task, the workflow goes there at once.
    assert "StartWorker" not in kinds(out)  # respawn is a timer, not immediate here
    assert (other, "ExecuteWorkflow") in kinds(out)
    assert on_wf[0].exec_id in d.state.pending_tasks
    execution = d.state.execs[on_wf[0].exec_id]
    assert execution.attempt == 1 and execution.deaths == 1
    assert kinds(d.tick(100.0)) == ["StartWorker"]  # healthy worker: respawn now


def test_a_worker_that_keeps_dying_backs_off() -> None:
    d = setup()
    d.handle(W1, ConnectionClosed("crash"), 1.0)  # died 1 s after its spawn: a failure
    assert d.tick(1.0) == []
    assert kinds(d.tick(1.25)) == ["StartWorker"]
    d.handle(99, WorkerSpawned(0, 999), 1.3)
    d.handle(99, ConnectionClosed("crash again"), 1.4)
    assert d.tick(1.6) == []  # second failure: 0.5 s
    assert kinds(d.tick(1.9)) == ["StartWorker"]


def test_a_task_that_kills_every_worker_fails_with_worker_lost() -> None:
    d = setup(max_worker_deaths=2)
    wf = start_run(d)
    d.state.workers[W2].capacity = 0  # keep the task off the workflow's worker
    (victim, execute), = spawn(d, wf, 1)
    assert (wf, victim) == (W2, W1)  # the workflow and the task on different workers
    assert d.handle(W1, ConnectionClosed("segfault"), 50.0) == []
    d.handle(13, WorkerSpawned(0, 300), 50.0)
    d.handle(13, p.WorkerHello(V, 300, TASKS, WORKFLOWS), 50.0)
    assert d.state.execs[execute.exec_id].worker == 13  # re-dispatched to the replacement
    out = d.handle(13, ConnectionClosed("segfault"), 51.0)
    (peer, failed), = out
    assert peer == wf and failed.error.kind == "worker_lost" and "died 2 times" in failed.error.message
    assert execute.exec_id not in d.state.execs


def test_timeout_kills_the_worker_fails_the_task_and_requeues_its_neighbours() -> None:
    d = setup(concurrency=2)
    wf = start_run(d)
    d.state.workers[W2].capacity = 0  # both tasks on W1, beside nothing else
    (peer, slow), = spawn(d, wf, 1, task="slow", now=0.0)
    (peer2, neighbour), = spawn(d, wf, 2, now=0.0)
    assert (wf, peer, peer2) == (W2, W1, W1)
    d.state.workers[W2].capacity = 2
    out = d.tick(1.0)
    assert kinds(out) == [(W2, "SpawnFailed"), "KillWorker", "StartWorker", (W2, "ExecuteTask")]
    failed = out[0][1]
    assert failed.error.kind == "timeout" and "timeout of 1s" in failed.error.message
    assert out[3][1].exec_id == neighbour.exec_id  # the neighbour runs again elsewhere...
    assert d.state.execs[neighbour.exec_id].deaths == 0  # ...and that does not count against it
    assert W1 not in d.state.workers


def test_timeout_in_retry_on_is_retried() -> None:
    d = setup(workers=1)
    wf = start_run(d)
    (peer, first), = spawn(d, wf, 1, task="r", now=0.0)
    out = d.tick(1.0)
    # Killed and replaced at once (a timeout kill is not the worker's failure); retried later.
    assert kinds(out) == ["KillWorker", "StartWorker"]
    assert d.state.execs[first.exec_id].attempt == 2


def test_workflow_failure_reruns_under_the_same_run_id_after_the_delay() -> None:
    d = setup()
    wf = start_run(d)
    exec_id = d.state.runs["r1"].exec_id
    assert d.handle(wf, p.WorkflowRaised(exec_id, p.ErrorInfo("E", "m")), 1.0) == []
    assert d.tick(5.0) == []
    (peer, again), = d.tick(6.0)
    assert type(again) is p.ExecuteWorkflow and again.run_id == "r1" and again.attempt == 2
    d.handle(C, p.AwaitRun(2, "r1"), 6.0)
    out = d.handle(peer, p.WorkflowRaised(again.exec_id, p.ErrorInfo("E", "again")), 7.0)
    assert kinds(out) == [(C, "RunFinished")] and out[0][1].state == "failed"  # max_retries=1 spent


def test_rerun_keeps_the_memo() -> None:
    d = setup()
    wf = start_run(d, workflow="plain")
    (peer, execute), = spawn(d, wf, 1, key=["k"])
    d.handle(peer, p.TaskReturned(execute.exec_id, "kept"), 0.0)
    d.handle(wf, p.WorkflowRaised(d.state.runs["r1"].exec_id, p.ErrorInfo("E", "m")), 0.0)
    assert d.state.runs["r1"].state == "failed"
    out = d.handle(C, p.RerunRun(3, "r1"), 1.0)
    assert (C, p.Ack(3)) in out
    wf2 = [peer for peer, msg in sends(out) if type(msg) is p.ExecuteWorkflow][0]
    assert spawn(d, wf2, 9, key=["k"]) == [(wf2, p.SpawnSucceeded(9, "kept"))]


def test_replay_after_worker_death_reattaches_to_unkeyed_spawns() -> None:
    d = setup()
    wf = start_run(d)
    out = spawn(d, wf, 1, seq=1)
    (peer, execute), = out
    d.handle(peer, p.TaskReturned(execute.exec_id, "first"), 0.0)
    out = d.handle(wf, ConnectionClosed("killed"), 100.0)
    wf2 = [peer for peer, msg in sends(out) if type(msg) is p.ExecuteWorkflow][0]
    # The re-executed workflow's first spawn gets the first result again, not a new execution.
    assert spawn(d, wf2, 5, seq=1) == [(wf2, p.SpawnSucceeded(5, "first"))]


@pytest.mark.parametrize(
    ("msg", "kind", "text"),
    [
        (p.StartRun(1, "nope", {}, None), "unknown_name", "unknown workflow 'nope'; registered workflows: plain, w"),
        (p.StartRun(1, "w", {}, "a/b"), "data", "without '/'"),
        (p.AwaitRun(1, "missing"), "not_found", "no run 'missing'"),
        (p.RerunRun(1, "missing"), "not_found", "no run 'missing'"),
    ],
)
def test_bad_client_requests_are_answered_with_named_errors(msg: Any, kind: str, text: str) -> None:
    d = setup()
    (peer, reply), = d.handle(C, msg, 0.0)
    assert peer == C and type(reply) is p.ErrorReply and reply.error.kind == kind and text in reply.error.message


def test_unknown_task_names_the_registered_ones() -> None:
    d = setup()
    wf = start_run(d)
    (peer, reply), = spawn(d, wf, 1, task="nope")
    assert reply.error.kind == "unknown_name" and reply.error.message == "unknown task 'nope'; registered tasks: r, slow, t"


def test_rerun_of_a_running_run_is_refused() -> None:
    d = setup()
    start_run(d)
    (peer, reply), = d.handle(C, p.RerunRun(4, "r1"), 0.0)
    assert reply.error.kind == "invalid_state" and "is running" in reply.error.message


def test_starting_an_existing_run_id_returns_it() -> None:
    d = setup()
    start_run(d)
    assert d.handle(C, p.StartRun(7, "w", {}, "r1"), 0.0) == [(C, p.RunStarted(7, "r1", False))]


@pytest.mark.parametrize(("token", "given", "welcomed"), [("s3", "s3", True), ("s3", None, False), ("s3", "nope", False), (None, "x", True)])
def test_token(token: str | None, given: str | None, welcomed: bool) -> None:
    d = Dispatcher(SupervisorConfig(token=token))
    out = d.handle(77, p.ClientHello(V, given), 0.0)
    if welcomed:
        assert out == [(77, p.Welcome(V))]
    else:
        assert kinds(out) == [(77, "ErrorReply"), "CloseConnection"]
        assert out[0][1].error.kind == "auth"


def test_requests_before_hello_and_worker_messages_from_clients_are_refused() -> None:
    d = setup()
    assert kinds(d.handle(78, p.StartRun(1, "w", {}, None), 0.0)) == [(78, "ErrorReply"), "CloseConnection"]
    assert d.handle(C, p.TaskReturned(1, None), 0.0) == [CloseConnection(C, "TaskReturned from a peer that is not a worker")]
    assert d.handle(C, p.WorkerHello(V, 1, (), ()), 0.0) == [CloseConnection(C, "WorkerHello from a connection the supervisor did not spawn")]


def test_worker_with_another_protocol_version_is_killed() -> None:
    d = Dispatcher(SupervisorConfig(workers=1))
    d.start(0.0)
    d.handle(W1, WorkerSpawned(0, 5), 0.0)
    (kill,) = d.handle(W1, p.WorkerHello(99, 5, (), ()), 0.0)
    assert type(kill) is KillWorker and "protocol 99" in kill.reason


def test_finished_runs_are_evicted_by_count_and_by_age() -> None:
    d = setup(max_runs=2, retention=10.0)
    for i in range(3):
        wf = start_run(d, run_id=f"r{i}", workflow="plain")
        d.handle(wf, p.WorkflowReturned(d.state.runs[f"r{i}"].exec_id, i), float(i))
    assert sorted(d.state.runs) == ["r1", "r2"]  # over max_runs: the oldest goes at once
    d.tick(11.5)
    assert sorted(d.state.runs) == ["r2"]  # r1 finished at 1.0, retention 10 s
    d.tick(12.5)
    assert d.state.runs == {}


def test_cancel_drops_queued_tasks_and_answers_waiters() -> None:
    d = setup(workers=1)
    wf = start_run(d)
    spawn(d, wf, 1)
    spawn(d, wf, 2)  # queued: one slot
    d.handle(C, p.AwaitRun(5, "r1"), 0.0)
    out = d.handle(C, p.CancelRun(6, "r1"), 0.0)
    assert (wf, "CancelExecution") in kinds(out) and (C, "RunFinished") in kinds(out) and (C, "Ack") in kinds(out)
    assert not d.state.pending_tasks or all(e not in d.state.execs for e in d.state.pending_tasks)


def test_drain_refuses_new_runs() -> None:
    d = setup()
    d.handle(SUPERVISOR, Drain(), 0.0)
    (peer, reply), = d.handle(C, p.StartRun(1, "w", {}, None), 0.0)
    assert reply.error.kind == "shutting_down"


def test_child_run_ids_are_deterministic() -> None:
    assert child_run_id("p", "w", {"a": 1}) == child_run_id("p", "w", {"a": 1})
    assert child_run_id("p", "w", {"a": 1}) != child_run_id("p", "w", {"a": 2})


def test_over_the_cap_succeeded_runs_are_evicted_before_failed_ones() -> None:
    d = setup(max_runs=2, retention=100.0)
    wf = start_run(d, run_id="failed", workflow="plain")
    d.handle(wf, p.WorkflowRaised(d.state.runs["failed"].exec_id, p.ErrorInfo("E", "m")), 0.0)
    for i in range(3):
        wf = start_run(d, run_id=f"ok{i}", workflow="plain")
        d.handle(wf, p.WorkflowReturned(d.state.runs[f"ok{i}"].exec_id, i), float(i))
    assert sorted(d.state.runs) == ["failed", "ok2"]  # the failed run stays rerunnable
    assert d.state.runs["ok2"].memo == {} and d.state.runs["ok2"].args == {}  # succeeded: kept small
