"""The dispatcher with a bridge registered, as tables of messages (no processes)."""

from __future__ import annotations

from coda import protocol as p
from coda.errors import ErrorKind, refusal
from coda.inprocess import BridgeHello, ExecuteLegacyTask
from coda.keys import memo_key
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.dispatch import Dispatcher
from coda.supervisor.messages import StartWorker, WorkerSpawned

V = p.PROTOCOL_VERSION
W, B, C = 11, 20, 50


def setup(bridge: bool = True) -> tuple[Dispatcher, int]:
    """One Coda worker (task "coda.t", workflow "w"), the bridge, a client; a started run r1."""
    d = Dispatcher(SupervisorConfig(workers=1, celery_app="proj:app" if bridge else None))
    assert d.start(0.0) == [StartWorker(0)]
    if bridge:
        assert d.handle(B, BridgeHello(capacity=1000), 0.0) == []
    d.handle(W, WorkerSpawned(0, 100), 0.0)
    d.handle(W, p.WorkerHello(V, 100, (p.TaskSpec("coda.t"),), (p.WorkflowSpec("w"),)), 0.0)
    d.handle(C, p.ClientHello(V, None), 0.0)
    out = d.handle(C, p.StartRun(1, "w", {}, "r1"), 0.0)
    assert out[1][0] == W and type(out[1][1]) is p.ExecuteWorkflow
    return d, out[1][1].exec_id


def test_unregistered_names_go_to_the_bridge_with_their_memo_key() -> None:
    d, _ = setup()
    out = d.handle(W, p.SpawnTask(1, "r1", "legacy.enrich", {"a": 1}, ["k"], 1), 0.0)
    (peer, msg), = out
    assert peer == B and type(msg) is ExecuteLegacyTask
    assert (msg.run_id, msg.task, msg.args, msg.memo_key) == ("r1", "legacy.enrich", {"a": 1}, memo_key("r1", "legacy.enrich", ["k"]))
    # A name a Coda worker registered stays on Coda, even though the bridge has room.
    assert d.handle(W, p.SpawnTask(2, "r1", "coda.t", {}, None, 2), 0.0)[0][1].__class__ is p.ExecuteTask
    # The bridge answers like a worker; the result is memoized for the next spawn of the key.
    assert d.handle(B, p.TaskReturned(msg.exec_id, "v"), 0.0) == [(W, p.SpawnSucceeded(1, "v"))]
    assert d.handle(W, p.SpawnTask(3, "r1", "legacy.enrich", {"a": 1}, ["k"], 3), 0.0) == [(W, p.SpawnSucceeded(3, "v"))]
    assert d.state.summary(0.0)["bridge"] == {"running_tasks": 0}
    assert [w["pid"] for w in d.state.summary(0.0)["workers"]] == [100]


def test_without_a_bridge_unknown_names_fail_at_once() -> None:
    d, _ = setup(bridge=False)
    (peer, msg), = d.handle(W, p.SpawnTask(1, "r1", "legacy.enrich", {}, None, 1), 0.0)
    assert peer == W and type(msg) is p.SpawnFailed and msg.error.kind == "unknown_name"


def test_cancel_tells_the_bridge_to_revoke_what_it_runs() -> None:
    d, _ = setup()
    (_, msg), = d.handle(W, p.SpawnTask(1, "r1", "legacy.hang", {}, None, 1), 0.0)
    out = d.handle(C, p.CancelRun(2, "r1"), 0.0)
    assert (B, p.CancelExecution(msg.exec_id)) in out
    # The bridge's answer ends the execution; nothing is memoized.
    error = refusal(ErrorKind.CANCELLED, "its run was cancelled")
    d.handle(B, p.TaskRaised(msg.exec_id, error, None), 0.0)
    assert not d.state.execs and not d.state.runs["r1"].memo
    assert d.state.summary(0.0)["bridge"] == {"running_tasks": 0}
