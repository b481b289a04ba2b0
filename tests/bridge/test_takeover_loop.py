"""The event-loop side of the queue takeover, with its consumer thread replaced by a recorder:
parsed arrivals in, messages to the dispatcher and commands to the consumer thread out. No
broker, no thread."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from coda import protocol as p
from coda.bridge import BridgeSettings, Takeover
from coda.bridge._handoff import Command, Holding, Lost, Settle, Settled, StartMessage, StopConsuming, TaskMessage, TimedOut
from coda.bridge._settings import TASK_NAME
from coda.errors import ErrorKind, refusal
from coda.inprocess import SubmitTask
from tests.support import until


class Commands:
    """Stands in for the consumer thread: keeps what it is told."""

    def __init__(self) -> None:
        self.got: list[Command] = []

    def post(self, command: Command) -> None:
        self.got.append(command)


async def takeover() -> tuple[Takeover, list[Any], Commands]:
    delivered: list[Any] = []
    t = Takeover(BridgeSettings(celery_app="tests.bridge.takeover_app:app", queues=("q",), slots=2), delivered.append)
    commands = Commands()
    t._loop = asyncio.get_running_loop()
    t._consumer = commands  # type: ignore[assignment]
    return t, delivered, commands


def task(tag: int, eta: datetime | None = None, rate: float | None = None) -> TaskMessage:
    return TaskMessage(tag, "q", f"m{tag}", "takeover.add", eta, rate, 2.0, {"body": b"[]"})


async def test_a_message_is_submitted_once_and_acked_when_its_task_succeeded() -> None:
    t, delivered, commands = await takeover()
    assert t.prefetch == 8  # Celery's: 4 x the slots that run tasks
    t._arrived(task(1))
    assert delivered == [SubmitTask(1, TASK_NAME, {"body": b"[]"}, 2.0)]
    t.handle(p.SpawnSucceeded(1, None))
    t.handle(p.SpawnSucceeded(1, None))  # a second answer settles nothing
    assert commands.got == [Settled(1, Settle.ACK)]


@pytest.mark.parametrize(
    ("kind", "command"),
    [
        (ErrorKind.TIMEOUT, TimedOut(5)),  # Celery's own time-limit failure, then the ack
        (ErrorKind.WORKER_LOST, Lost(5, "it died")),
        (ErrorKind.UNKNOWN_NAME, Settled(5, Settle.REQUEUE_LATER)),  # back to a worker that knows it
        (ErrorKind.ERROR, Settled(5, Settle.REJECT)),  # the harness failed, not the task
    ],
)
async def test_what_a_failed_execution_does_to_its_message(kind: ErrorKind, command: Command) -> None:
    t, delivered, commands = await takeover()
    t._arrived(task(5))
    t.handle(p.SpawnFailed(5, TASK_NAME, refusal(kind, "it died")))
    assert commands.got == [command]


async def test_a_workflow_start_is_acked_once_the_run_is_recorded_or_requeued_while_draining() -> None:
    t, delivered, commands = await takeover()
    t._arrived(StartMessage(2, "q", "m2", "w.flow", {"x": 1}, "run-2"))
    t._arrived(StartMessage(3, "q", "m3", "w.flow", {}, None))
    t._arrived(StartMessage(4, "q", "m4", "w.nope", {}, None))
    assert delivered == [p.StartRun(2, "w.flow", {"x": 1}, "run-2"), p.StartRun(3, "w.flow", {}, None),
                         p.StartRun(4, "w.nope", {}, None)]
    t.handle(p.RunStarted(2, "run-2", True))
    t.handle(p.ErrorReply(3, refusal(ErrorKind.SHUTTING_DOWN, "draining")))
    t.handle(p.ErrorReply(4, refusal(ErrorKind.UNKNOWN_NAME, "unknown workflow")))
    assert commands.got == [Settled(2, Settle.ACK), Settled(3, Settle.REQUEUE), Settled(4, Settle.REJECT)]


async def test_an_eta_message_is_held_with_the_prefetch_grown_then_submitted() -> None:
    t, delivered, commands = await takeover()
    t._arrived(task(6, eta=datetime.now(timezone.utc) + timedelta(seconds=0.2)))
    t._arrived(task(7, eta=datetime.now(timezone.utc) - timedelta(seconds=1)))  # due already
    assert [m.request_id for m in delivered] == [7] and commands.got == [Holding(1)]
    await until(lambda: len(delivered) == 2, 10, "the held message to come due")
    assert delivered[1].request_id == 6 and commands.got == [Holding(1), Holding(0)]


async def test_draining_stops_the_consumer_and_submits_nothing_more() -> None:
    t, delivered, commands = await takeover()
    t.drain()
    t._arrived(task(8))
    assert delivered == [] and commands.got == [StopConsuming()]


async def test_a_rate_limited_task_waits_for_its_token() -> None:
    t, delivered, commands = await takeover()
    for tag in (10, 11, 12):
        t._arrived(task(tag, rate=20.0))  # one token at a time, 20 per second
    assert [m.request_id for m in delivered] == [10]
    await until(lambda: len(delivered) == 3, 10, "the other two tokens")
    assert [m.request_id for m in delivered] == [10, 11, 12]
