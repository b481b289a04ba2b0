"""The server's routing, with recording transports for connections (no processes, no sockets):
one write per peer, effects after the writes, in-process peers handed their messages, and a
message that cannot be encoded failing alone."""

from __future__ import annotations

from typing import Any

import pytest

from coda import protocol as p
from coda.bridge import CELERY_APP_ENV, EXECUTE_MODULE
from coda.errors import BridgeError, ErrorKind
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.messages import CloseConnection, Out
from coda.supervisor.server import Supervisor, _Connection, bridge_settings, worker_launch
from coda.testing import in_process
from tests.support import Recorder

W, C, B = 11, 50, 60


class Peer:
    """An in-process peer that keeps what it is handed."""

    def __init__(self) -> None:
        self.got: list[object] = []

    def handle(self, msg: object) -> None:
        self.got.append(msg)


def server() -> tuple[Supervisor, dict[int, Recorder]]:
    sup = Supervisor(SupervisorConfig(workers=1), in_process=True, handle_signals=False)
    transports = {}
    for peer in (W, C):
        conn = _Connection(sup, peer)
        transports[peer] = Recorder()
        conn.connection_made(transports[peer])
    return sup, transports


async def test_an_encode_error_fails_only_its_own_message() -> None:
    sup, t = server()
    out: Out = [
        (W, p.SpawnSucceeded(1, "\ud800")),  # a lone surrogate: msgpack refuses it
        (W, p.SpawnSucceeded(2, "fine")),
        (C, p.RunFinished(3, "r1", "succeeded", {"bad": "\udfff"}, None)),
        (C, p.Ack(4)),
    ]
    sup.route(out)
    stand_in, fine = t[W].frames()
    assert type(stand_in) is p.SpawnFailed and stand_in.request_id == 1
    assert stand_in.error.kind == ErrorKind.DATA and "cannot encode SpawnSucceeded" in stand_in.error.message
    assert fine == p.SpawnSucceeded(2, "fine")
    reply, ack = t[C].frames()
    assert type(reply) is p.ErrorReply and reply.request_id == 3 and reply.error.kind == ErrorKind.DATA
    assert ack == p.Ack(4)
    assert t[W].writes == 1 and t[C].writes == 1  # still one write per peer


async def test_effects_come_after_the_writes_and_in_process_peers_get_their_messages() -> None:
    sup, t = server()
    bridge = Peer()
    sup.peers[B] = bridge
    sup.route([CloseConnection(C, "refused"), (C, p.ErrorReply(0, p.ErrorInfo("E", "why"))), (B, p.CancelExecution(7))])
    assert t[C].frames() == [p.ErrorReply(0, p.ErrorInfo("E", "why"))]  # written before the close...
    assert t[C].closed  # ...then closed
    assert bridge.got == [p.CancelExecution(7)] and not t[W].frames()


async def test_a_message_for_no_connection_is_dropped() -> None:
    sup, t = server()
    sup.route([(999, p.Ack(1)), (W, p.Ack(2))])
    assert t[W].frames() == [p.Ack(2)]


def test_workers_of_a_takeover_load_the_message_runner_and_the_celery_app() -> None:
    plain = worker_launch(SupervisorConfig(apps=("a.tasks",), concurrency=3, celery_app="proj:app"))
    assert (plain.apps, plain.env, plain.concurrency) == (("a.tasks",), (), 3)
    takeover = worker_launch(SupervisorConfig(apps=("a.tasks",), celery_app="proj:app", queues=("q",)))
    assert takeover.apps == ("a.tasks", EXECUTE_MODULE)
    assert takeover.env == ((CELERY_APP_ENV, "proj:app"),)


def test_the_bridge_settings_come_from_the_supervisor_config() -> None:
    config = SupervisorConfig(apps=("a",), workers=3, concurrency=2, celery_app="proj:app", queues=("q1", "q2"),
                              broker="redis://x", token="t", bridge_pickup_timeout=5.0, bridge_result_timeout=9.0)
    settings = bridge_settings(config)
    assert (settings.celery_app, settings.broker, settings.queues, settings.apps, settings.slots, settings.token) == (
        "proj:app", "redis://x", ("q1", "q2"), ("a",), 6, "t")
    assert (settings.pickup_timeout, settings.result_timeout) == (5.0, 9.0)
    with pytest.raises(BridgeError, match="-Q needs --celery-app"):
        bridge_settings(SupervisorConfig(queues=("q",)))


async def test_the_address_goes_to_on_listening_and_nothing_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    heard: list[str] = []
    sup = Supervisor(SupervisorConfig(workers=1, listen="127.0.0.1:0"), in_process=True, handle_signals=False,
                     on_listening=heard.append)
    import asyncio

    running = asyncio.get_running_loop().create_task(sup.run())
    host, port = await sup.started()
    assert heard == [f"{host}:{port}"]
    sup.config = sup.config.with_(grace=0.0)
    sup.stop()
    assert await running == 0
    assert capsys.readouterr() == ("", "")


async def test_in_process_mode_runs_a_workflow_through_the_same_server() -> None:
    from tests.e2e import app

    async with in_process(workers=1) as client:
        assert await client.run(app.fan_out, {"n": 3}, timeout=30) == 6
        status: Any = await client.supervisor_status()
        assert [w["slot"] for w in status["workers"]] == [0]
