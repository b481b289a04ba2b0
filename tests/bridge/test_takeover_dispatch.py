"""SubmitTask, the dispatcher's entry for taken-over Celery messages, as tables of messages."""

from __future__ import annotations


from coda import protocol as p
from coda.bridge._settings import TASK_NAME as TASK
from coda.inprocess import SubmitTask
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.dispatch import Dispatcher
from coda.supervisor.messages import CloseConnection, ConnectionClosed, KillWorker, Out, WorkerSpawned

V = p.PROTOCOL_VERSION
W1, W2, T = 11, 12, 50


def setup() -> Dispatcher:
    d = Dispatcher(SupervisorConfig(workers=2))
    d.start(0.0)
    for slot, peer in enumerate([W1, W2]):
        d.handle(peer, WorkerSpawned(slot, 100 + slot), 0.0)
        d.handle(peer, p.WorkerHello(V, 100 + slot, (p.TaskSpec(TASK),), ()), 0.0)
    assert d.handle(T, p.ClientHello(V, None), 0.0) == [(T, p.Welcome(V))]
    return d


def submitted(out: Out) -> tuple[int, p.ExecuteTask]:
    ((peer, msg),) = [item for item in out if isinstance(item, tuple)]
    assert type(msg) is p.ExecuteTask and msg.run_id == ""
    return peer, msg


def test_submitted_task_runs_and_answers_its_client() -> None:
    d = setup()
    peer, execute = submitted(d.handle(T, SubmitTask(7, TASK, {"body": b"x"}, None), 0.0))
    assert execute.args == {"body": b"x"} and execute.task == TASK
    assert d.handle(peer, p.TaskReturned(execute.exec_id, None), 1.0) == [(T, p.SpawnSucceeded(7, None))]
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
    failed = [item[1] for item in out if isinstance(item, tuple) and item[0] == T]
    assert len(failed) == 1 and failed[0].error.kind == "timeout" and "2s" in failed[0].error.message
    assert KillWorker(peer, f"task {TASK} timed out") in out
    # A late answer of the killed worker reaches nobody (its connection is dropped).
    assert [type(item) for item in d.handle(peer, p.TaskReturned(execute.exec_id, None), 2.1)] == [CloseConnection]


def test_submitted_task_survives_a_worker_death() -> None:
    d = setup()
    peer, execute = submitted(d.handle(T, SubmitTask(4, TASK, {}, None), 0.0))

    out = d.handle(peer, ConnectionClosed("killed"), 1.0)
    other, again = submitted(out)
    assert other != peer and again.exec_id == execute.exec_id
    assert d.handle(other, p.TaskReturned(again.exec_id, None), 1.5) == [(T, p.SpawnSucceeded(4, None))]
