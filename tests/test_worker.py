"""The worker as message in → messages out: frames fed to a Worker on a recording transport,
the frames it writes asserted. No supervisor, no process; the tasks and workflows live in a
registry of the test's own."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import coda
from coda import protocol as p
from coda.errors import ErrorKind, TaskFailed, refusal
from coda.registry import Registry, Task, Workflow
from tests.support import WorkerHarness

V = p.PROTOCOL_VERSION


async def _double(x: int) -> int:
    return 2 * x


def _plain_thread(x: int) -> dict[str, Any]:
    return {"x": x, "main": threading.current_thread() is threading.main_thread()}


class Flaky(Exception):
    pass


def _flaky() -> None:
    raise Flaky("try again")


async def _not_data() -> Any:
    return {1, 2}


async def _surrogate() -> str:
    return "\ud800"


async def _chain(x: int) -> int:
    first = await coda.context.spawn_task("t.double", args={"x": x})
    return await coda.context.spawn_task("t.double", args={"x": first}, cache_key=["second"])


async def _catching(name: str) -> str:
    try:
        await coda.context.spawn_task(name, args={})
    except TaskFailed as exc:
        return f"{type(exc).__name__}: {exc.task_name}: {exc.message}"
    return "no error"


async def _forever() -> None:
    await coda.context.spawn_task("t.double", args={"x": 1}, cache_key=["k"])


def registry() -> Registry:
    reg = Registry()
    reg.add_task(Task(_double, name="t.double"))
    reg.add_task(Task(_plain_thread, name="t.plain"))
    reg.add_task(Task(_flaky, name="t.flaky", retry_on=(Flaky,), max_retries=1, retry_delay=0.5))
    reg.add_task(Task(_not_data, name="t.not_data"))
    reg.add_task(Task(_surrogate, name="t.surrogate"))
    reg.add_workflow(Workflow(_chain, name="w.chain"))
    reg.add_workflow(Workflow(_catching, name="w.catching"))
    reg.add_workflow(Workflow(_forever, name="w.forever"))
    return reg


async def harness(concurrency: int = 1) -> WorkerHarness:
    h = WorkerHarness(registry(), concurrency)
    (hello,) = await h.expect(1)
    assert type(hello) is p.WorkerHello and hello.version == V
    assert {spec.name for spec in hello.tasks} == {"t.double", "t.plain", "t.flaky", "t.not_data", "t.surrogate"}
    assert [(s.name, s.max_retries, s.retry_delay) for s in hello.tasks if s.name == "t.flaky"] == [("t.flaky", 1, 0.5)]
    h.feed(p.Welcome(V))
    return h


async def test_a_task_runs_and_its_result_goes_back_under_its_exec_id() -> None:
    h = await harness()
    h.feed(p.ExecuteTask(7, "r1", "t.double", {"x": 21}, 1))
    assert await h.expect(1) == [p.TaskReturned(7, 42, None)]


async def test_a_plain_task_runs_off_the_event_loop() -> None:
    h = await harness()
    h.feed(p.ExecuteTask(3, "r1", "t.plain", {"x": 1}, 1))
    assert await h.expect(1) == [p.TaskReturned(3, {"x": 1, "main": False}, None)]


async def test_unknown_task_and_workflow_names_are_refused_by_kind() -> None:
    h = await harness()
    h.feed(p.ExecuteTask(1, "r1", "t.nope", {}, 1), p.ExecuteWorkflow(2, "r1", "w.nope", {}, 1))
    # The workflow is refused on receipt; the task in its coroutine, one loop turn later.
    assert await h.expect(2) == [
        p.WorkflowRaised(2, refusal(ErrorKind.UNKNOWN_NAME, "this worker has no workflow 'w.nope'")),
        p.TaskRaised(1, refusal(ErrorKind.UNKNOWN_NAME, "this worker has no task 't.nope'"), None),
    ]


async def test_the_task_policy_decides_the_retry_and_the_supervisor_owns_the_delay() -> None:
    h = await harness()
    h.feed(p.ExecuteTask(5, "r1", "t.flaky", {}, 1))
    (first,) = await h.expect(1)
    assert type(first) is p.TaskRaised and first.retry_in == 0.5
    assert (first.error.exc_type, first.error.message, first.error.kind) == ("tests.test_worker.Flaky", "try again", ErrorKind.ERROR)
    assert "Traceback" in first.error.traceback and "_flaky" in first.error.traceback
    h.feed(p.ExecuteTask(5, "r1", "t.flaky", {}, 2))  # max_retries=1: the second attempt is the last
    (second,) = await h.expect(1)
    assert type(second) is p.TaskRaised and second.retry_in is None


@pytest.mark.parametrize(
    ("task", "exc_type", "text"),
    [
        ("t.not_data", "coda.errors.DataError", "result of task 't.not_data' is a set"),
        ("t.surrogate", "coda.errors.ProtocolError", "cannot encode TaskReturned: UnicodeEncodeError"),
    ],
)
async def test_a_result_that_cannot_cross_the_wire_fails_its_task(task: str, exc_type: str, text: str) -> None:
    h = await harness()
    h.feed(p.ExecuteTask(9, "r1", task, {}, 1))
    (failed,) = await h.expect(1)
    assert type(failed) is p.TaskRaised and failed.exec_id == 9 and failed.retry_in is None
    assert failed.error.exc_type == exc_type and text in failed.error.message


async def test_an_unkeyed_spawn_starts_beside_its_workflow_and_a_keyed_one_asks_first() -> None:
    h = await harness()
    h.feed(p.ExecuteWorkflow(1, "r1", "w.chain", {"x": 5}, 1))
    spawn, returned = await h.expect(2)
    # Started here at once (no key, a free slot), reported by its spawn's request id.
    assert spawn == p.SpawnTask(spawn.request_id, "r1", "t.double", {"x": 5}, None, 1, True)
    assert returned == p.TaskReturned(None, 10, spawn.request_id)
    # The workflow got 10 from the worker itself; its keyed spawn goes to the supervisor.
    (keyed,) = await h.expect(1)
    assert keyed == p.SpawnTask(keyed.request_id, "r1", "t.double", {"x": 10}, ["second"], 2, False)
    h.feed(p.SpawnSucceeded(keyed.request_id, 20))
    assert await h.expect(1) == [p.WorkflowReturned(1, 20)]


async def test_a_replaying_workflow_asks_the_supervisor_for_every_spawn() -> None:
    h = await harness()
    h.feed(p.ExecuteWorkflow(1, "r1", "w.chain", {"x": 5}, 1, replaying=True))
    (spawn,) = await h.expect(1)
    assert spawn.started is False and spawn.cache_key is None and spawn.seq == 1
    h.feed(p.SpawnSucceeded(spawn.request_id, 10))  # the outcome recorded before the death
    (keyed,) = await h.expect(1)
    h.feed(p.SpawnSucceeded(keyed.request_id, 20))
    assert await h.expect(1) == [p.WorkflowReturned(1, 20)]


async def test_a_placed_task_answers_the_workflow_beside_it_itself() -> None:
    h = await harness()
    h.feed(p.ExecuteWorkflow(1, "r1", "w.chain", {"x": 5}, 1, replaying=True))
    (spawn,) = await h.expect(1)
    # The supervisor placed the task here, beside the workflow awaiting it.
    h.feed(p.ExecuteTask(40, "r1", "t.double", {"x": 5}, 1, awaited_by=spawn.request_id))
    returned, keyed = await h.expect(2)
    assert returned == p.TaskReturned(40, 10, None) and keyed.args == {"x": 10}


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        (ErrorKind.ERROR, "TaskFailed: t.gone: boom"),
        (ErrorKind.TIMEOUT, "TaskTimeout: t.gone: boom"),
        (ErrorKind.WORKER_LOST, "WorkerLost: t.gone: boom"),
    ],
)
async def test_a_failed_spawn_raises_the_exception_of_its_kind(kind: ErrorKind, expected: str) -> None:
    h = await harness()
    h.feed(p.ExecuteWorkflow(1, "r1", "w.catching", {"name": "t.gone"}, 1))
    (spawn,) = await h.expect(1)
    assert spawn.started is False  # not a task this worker has
    h.feed(p.SpawnFailed(spawn.request_id, "t.gone", p.ErrorInfo("ValueError", "boom", "", kind)))
    assert await h.expect(1) == [p.WorkflowReturned(1, expected)]


async def test_a_workflow_that_raises_reports_it_and_a_cancelled_one_reports_nothing() -> None:
    h = await harness()
    h.feed(p.ExecuteWorkflow(1, "r1", "w.forever", {}, 1))
    (spawn,) = await h.expect(1)
    h.feed(p.CancelExecution(1), p.SpawnSucceeded(spawn.request_id, 2))  # the late answer is dropped
    h.feed(p.ExecuteWorkflow(2, "r2", "w.catching", {"name": "t.gone"}, 1))
    (second,) = await h.expect(1)
    assert type(second) is p.SpawnTask and second.run_id == "r2"  # nothing of the cancelled run came first
    h.feed(p.SpawnFailed(second.request_id, "t.gone", refusal(ErrorKind.UNKNOWN_NAME, "unknown task 't.gone'")))
    (raised,) = await h.expect(1)
    assert type(raised) is p.WorkflowRaised and raised.exec_id == 2
    assert raised.error.exc_type == "coda.errors.UnknownName" and raised.error.kind == ErrorKind.ERROR
    assert h.worker.workflows == {} and h.worker.waiting == {}


async def test_frames_of_one_loop_iteration_go_out_in_one_write() -> None:
    h = await harness()
    h.feed(p.ExecuteTask(1, "r1", "t.double", {"x": 1}, 1))
    h.feed(p.ExecuteTask(2, "r1", "t.double", {"x": 2}, 1), p.ExecuteTask(3, "r1", "t.double", {"x": 3}, 1))
    before = h.transport.writes
    assert await h.expect(3) == [p.TaskReturned(1, 2, None), p.TaskReturned(2, 4, None), p.TaskReturned(3, 6, None)]
    assert h.transport.writes == before + 1  # three results of one loop turn, one write


async def test_bytes_that_are_not_frames_close_the_connection() -> None:
    h = await harness()
    h.feed_bytes(b"\x00\x00\x00\x03\xc1\xc1\xc1")
    assert h.transport.closed
