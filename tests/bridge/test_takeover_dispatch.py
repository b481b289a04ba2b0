"""SubmitTask, the dispatcher's entry for taken-over Celery messages, as tables of messages."""

from __future__ import annotations

from typing import Any

from coda import protocol as p
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.dispatch import ConnectionClosed, Dispatcher, KillWorker, SubmitTask, WorkerSpawned
from coda.supervisor.state import PROCESSES

W1, W2, T = 11, 12, 50
TASK = "coda.bridge.celery_message"


def setup() -> Dispatcher:
    d = Dispatcher(SupervisorConfig(workers=2))
    d.start(0.0)
    for slot, peer in enumerate([W1, W2]):
        d.handle(peer, WorkerSpawned(slot, 100 + slot), 0.0)
        d.handle(peer, p.WorkerHello(1, 100 + slot, (p.TaskSpec(TASK),), ()), 0.0)
    assert d.handle(T, p.ClientHello(1, None), 0.0) == [(T, p.Welcome(1))]
    return d


def submitted(out: list[tuple[int, Any]]) -> tuple[int, p.ExecuteTask]:
    (peer, msg), = out
    assert type(msg) is p.ExecuteTask and msg.run_id == ""
    return peer, msg


def test_submitted_task_runs_and_answers_its_client() -> None:
    d = setup()
    peer, execute = submitted(d.handle(T, SubmitTask(7, TASK, {"body": b"x"}, None), 0.0))
    assert execute.args == {"body": b"x"} and execute.task == TASK
    assert d.handle(peer, p.TaskSucceeded(execute.exec_id, None), 1.0) == [(T, p.SpawnSucceeded(7, None))]
    assert not d.state.execs and not d.state.runs


def test_submitted_task_unknown_is_refused_at_once() -> None:
    d = setup()
    (peer, msg), = d.handle(T, SubmitTask(1, "nope", {}, None), 0.0)
    assert peer == T and type(msg) is p.SpawnFailed and msg.error.kind == "unknown_name"


def test_submitted_task_time_limit_kills_the_worker() -> None:
    d = setup()
    peer, execute = submitted(d.handle(T, SubmitTask(3, TASK, {}, 2.0), 0.0))
    assert d.tick(1.9) == []
    out = d.tick(2.0)
    failed = [msg for to, msg in out if to == T]
    assert len(failed) == 1 and failed[0].error.kind == "timeout" and "2s" in failed[0].error.message
    assert (PROCESSES, KillWorker(peer, f"task {TASK} timed out")) in out
    # A late answer of the killed worker reaches nobody.
    assert all(to != T for to, _ in d.handle(peer, p.TaskSucceeded(execute.exec_id, None), 2.1))


def test_submitted_task_survives_a_worker_death() -> None:
    d = setup()
    peer, execute = submitted(d.handle(T, SubmitTask(4, TASK, {}, None), 0.0))

    out = d.handle(peer, ConnectionClosed("killed"), 1.0)
    other, again = submitted([(to, msg) for to, msg in out if type(msg) is p.ExecuteTask])
    assert other != peer and again.exec_id == execute.exec_id
    assert d.handle(other, p.TaskSucceeded(again.exec_id, None), 1.5) == [(T, p.SpawnSucceeded(4, None))]
