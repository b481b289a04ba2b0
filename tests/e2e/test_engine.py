"""The engine end to end: real `coda supervisor` subprocesses, real worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

import coda
from coda.errors import DataError, UnknownName, WorkflowFailed
from examples import readme
from tests.e2e import app
from tests.e2e.app import count
from tests.support import until, wait_until

CODA_APPS = ["tests.e2e.app"]


async def test_readme_example_end_to_end(coda_supervisor_factory) -> None:
    sup = coda_supervisor_factory(["examples.readme"])
    async with coda.Client(sup.address) as client:
        event = {"event_id": "e1", "message": "  hi  "}
        result = await client.run(readme.process_event, {"project_id": 7, "event_data": event}, timeout=30)
        assert result == {"event_id": "e1", "stored": True}


async def test_automatic_rerun_skips_memoized_tasks(coda_supervisor, tmp_path: Path) -> None:
    d = str(tmp_path)
    (tmp_path / "flag-c").touch()
    async with coda_supervisor.client() as client:
        handle = await client.start(app.auto_rerun, {"dir": d, "tag": "t"})
        a, b, c, attempt, run_id = await handle.result(timeout=30)
        assert (a, b, c, attempt, run_id) == (1, 2, 3, 2, handle.run_id)
        assert count(d, "a") == 1 and count(d, "b") == 1  # memoized: not invoked on attempt 2
        assert count(d, "c") == 1  # the failing step ran on attempt 1 only
        status = await client.status(handle.run_id)
        assert status.state == "succeeded" and status.attempt == 2
        assert status.tasks["memo_hits"] == 2


async def test_manual_rerun_after_failure(coda_supervisor, tmp_path: Path) -> None:
    d = str(tmp_path)
    (tmp_path / "flag-c").touch()
    async with coda_supervisor.client() as client:
        handle = await client.start(app.manual_rerun, {"dir": d, "tag": "t"}, run_id="manual-1")
        with pytest.raises(WorkflowFailed) as failed:
            await handle.result(timeout=30)
        assert failed.value.run_id == "manual-1"
        assert "c is flagged to fail" in failed.value.message
        assert "fail_while_flag" in failed.value.traceback
        assert (await client.status("manual-1")).state == "failed"
        (tmp_path / "flag-c").unlink()
        rerun = await client.rerun("manual-1")
        assert await rerun.result(timeout=30) == [1, 2, "c", 2]
        assert (count(d, "a"), count(d, "b"), count(d, "c")) == (1, 1, 2)
        # Starting the same run id again is idempotent: the existing run, nothing new.
        again = await client.start(app.manual_rerun, {"dir": d, "tag": "t"}, run_id="manual-1")
        assert not again.created and await again.result(timeout=5) == [1, 2, "c", 2]
        assert count(d, "a") == 1


async def test_child_workflow_and_its_memo_survive_parent_rerun(coda_supervisor, tmp_path: Path) -> None:
    d = str(tmp_path)
    (tmp_path / "flag-c").touch()
    async with coda_supervisor.client() as client:
        handle = await client.start(app.parent, {"dir": d, "tag": "p"})
        with pytest.raises(WorkflowFailed):
            await handle.result(timeout=30)
        (tmp_path / "flag-c").unlink()
        await client.rerun(handle.run_id)
        child, run_id = await handle.result(timeout=30)
        assert child == [1, 2, "c", 2] and run_id == handle.run_id
        assert (count(d, "a"), count(d, "b"), count(d, "c")) == (1, 1, 2)


async def test_gather_fifty_tasks(coda_supervisor) -> None:
    async with coda_supervisor.client() as client:
        assert await client.run(app.fan_out, {"n": 50}, timeout=60) == sum(2 * i for i in range(50))


@pytest.mark.coda_supervisor(workers=1)
async def test_tasks_started_beside_their_workflow_keep_to_the_concurrency(coda_supervisor, tmp_path: Path) -> None:
    # A worker starts an unkeyed spawn itself when it has a free slot; with one worker of
    # concurrency 1, no two tasks may ever overlap, and each runs exactly once.
    async with coda_supervisor.client() as client:
        handle = await client.start(app.spans, {"dir": str(tmp_path), "n": 6})
        assert await handle.result(timeout=30) == list(range(6))
        status = await handle.status()
    lines = (tmp_path / "spans").read_text().split()
    spans = sorted((float(lines[i + 1]), float(lines[i + 2])) for i in range(0, len(lines), 3))
    assert len(spans) == 6
    assert all(end <= next_start for (_, end), (next_start, _) in zip(spans, spans[1:])), spans
    assert status.tasks == {"spawned": 6, "executed": 6, "memo_hits": 0, "succeeded": 6, "failed": 0, "retried": 0}
    # Started beside its workflow, a task still runs outside the workflow's context.
    async with coda_supervisor.client() as client:
        assert await client.run(app.task_sees_no_workflow, {}, timeout=30) is False


@pytest.mark.timeout(300)
@pytest.mark.coda_supervisor(workers=2)
async def test_thousand_concurrent_workflows_on_two_workers(coda_supervisor) -> None:
    async with coda_supervisor.client() as client:
        handles = await asyncio.gather(*(client.start(app.three_tasks, {"i": i}) for i in range(1000)))
        results = await asyncio.gather(*(h.result(timeout=240) for h in handles))
    assert results == [i + 3 for i in range(1000)]


async def test_sigkilled_worker_is_replaced_and_its_task_reruns(coda_supervisor, tmp_path: Path) -> None:
    d = str(tmp_path)
    pids_before = coda_supervisor.wait_for_workers()
    async with coda_supervisor.client() as client:
        handle = await client.start(app.survives_kill, {"dir": d})
        pid_file = tmp_path / "pid"
        await until(pid_file.exists, 30, "the task to start")
        victim = int(pid_file.read_text())
        assert victim in pids_before
        os.kill(victim, signal.SIGKILL)
        assert await handle.result(timeout=30) == "done"
        assert count(d, "slow_once-done") == 1
        status = await client.status(handle.run_id)
        assert status.tasks["retried"] == 0 and status.tasks["failed"] == 0
    pids_after = coda_supervisor.wait_for_workers(exclude=[victim])
    assert victim not in pids_after and len(pids_after) == 2


async def test_timeout_kills_the_worker_and_fails_with_task_timeout(coda_supervisor, tmp_path: Path) -> None:
    d = str(tmp_path)
    pids_before = set(coda_supervisor.wait_for_workers())
    async with coda_supervisor.client() as client:
        out = await client.run(app.call_catching, {"task": "tests.e2e.app.sleepy", "args": {"dir": d, "seconds": 30}}, timeout=30)
        failure = out["failed"]
        assert failure["class"] == "TaskTimeout" and failure["exc_type"] == "coda.errors.TaskTimeout"
        assert "timeout of 0.5s" in failure["message"]
        assert count(d, "sleepy") == 1
        out = await client.run(app.call_catching, {"task": "tests.e2e.app.sleepy_retry", "args": {"dir": d, "seconds": 30}}, timeout=30)
        assert out["failed"]["class"] == "TaskTimeout"
        assert count(d, "sleepy_retry") == 2  # retry_on=(TaskTimeout,), max_retries=1
    pids_after = set(coda_supervisor.wait_for_workers(exclude=list(pids_before)[:0]))
    assert pids_after != pids_before  # killed workers were replaced


async def test_retry_on_and_max_retries(coda_supervisor, tmp_path: Path) -> None:
    async with coda_supervisor.client() as client:
        d1 = tmp_path / "ok"
        d1.mkdir()
        out = await client.run(app.call_catching, {"task": "tests.e2e.app.flaky", "args": {"dir": str(d1), "fail_times": 2}}, timeout=30)
        assert out == {"ok": 3}  # two retries, third attempt succeeds
        d2 = tmp_path / "exhausted"
        d2.mkdir()
        out = await client.run(app.call_catching, {"task": "tests.e2e.app.flaky", "args": {"dir": str(d2), "fail_times": 9}}, timeout=30)
        failure = out["failed"]
        assert count(str(d2), "flaky") == 3  # 1 + max_retries
        assert failure["class"] == "TaskFailed" and failure["task"] == "tests.e2e.app.flaky"
        assert failure["exc_type"] == "ConnectionError" and failure["message"] == "attempt 3 failed"
        assert "Traceback" in failure["traceback"] and "in flaky" in failure["traceback"]
        d3 = tmp_path / "other"
        d3.mkdir()
        out = await client.run(app.call_catching, {"task": "tests.e2e.app.flaky", "args": {"dir": str(d3), "fail_times": 9, "exc": "ValueError"}}, timeout=30)
        assert out["failed"]["exc_type"] == "ValueError" and count(str(d3), "flaky") == 1  # not in retry_on


async def test_unknown_names_are_named(coda_supervisor) -> None:
    async with coda_supervisor.client() as client:
        out = await client.run(app.call_catching, {"task": "no.such.task", "args": {}}, timeout=30)
        assert "no.such.task" in out["unknown"] and "tests.e2e.app.add" in out["unknown"]
        with pytest.raises(UnknownName) as unknown:
            await client.start("no.such.workflow", {})
        assert "no.such.workflow" in str(unknown.value) and "tests.e2e.app.fan_out" in str(unknown.value)
        # The supervisor carries on.
        assert await client.run(app.fan_out, {"n": 3}, timeout=30) == 6


async def test_non_data_values_name_their_path(coda_supervisor) -> None:
    async with coda_supervisor.client() as client:
        assert await client.run(app.bad_spawn, {"kind": "set"}, timeout=30) == "DataError: args['a'] is a set, which is not data: {1, 2}"
        nested = await client.run(app.bad_spawn, {"kind": "nested"}, timeout=30)
        assert nested.startswith("DataError: args['a']['deep'][1] is a object")
        key = await client.run(app.bad_spawn, {"kind": "key"}, timeout=30)
        assert key.startswith("DataError: cache_key[0] is a tuple") and "(use a list)" in key
        missing = await client.run(app.bad_spawn, {"kind": "missing_arg"}, timeout=30)
        assert missing == "TypeError: task 'tests.e2e.app.add': missing a required argument: 'b'"
        with pytest.raises(DataError, match=r"args\['when'\] is a datetime"):
            import datetime

            await client.start(app.fan_out, {"n": 1, "when": datetime.datetime.now()})


async def test_client_disconnect_mid_run_does_not_stop_the_run(coda_supervisor, tmp_path: Path) -> None:
    client = coda_supervisor.client()
    handle = await client.start(app.slow_workflow, {"dir": str(tmp_path), "seconds": 0.5})
    await client.close()
    async with coda_supervisor.client() as other:
        assert await other.result(handle.run_id, timeout=30) == "finished"


async def test_cancel_stops_a_run(coda_supervisor, tmp_path: Path) -> None:
    async with coda_supervisor.client() as client:
        handle = await client.start(app.slow_workflow, {"dir": str(tmp_path), "seconds": 30})

        async def running() -> bool:  # on a worker, not queued
            return (await client.status(handle.run_id)).state == "running"

        await until(running, 30, "the run to start")
        await client.cancel(handle.run_id)
        with pytest.raises(WorkflowFailed, match="cancelled"):
            await handle.result(timeout=10)
        assert (await client.status(handle.run_id)).state == "cancelled"
        assert count(str(tmp_path), "slow") == 0


def test_sync_client_and_coda_status(coda_supervisor) -> None:
    import subprocess
    import sys

    with coda.SyncClient(coda_supervisor.address) as client:
        handle = client.start(app.fan_out, {"n": 4})
        assert handle.result(timeout=30) == 12
        assert client.status(handle.run_id).state == "succeeded"
    out = subprocess.run([sys.executable, "-m", "coda", "status", "--url", coda_supervisor.address],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "workers (2):" in out.stdout and "runs: 1 succeeded" in out.stdout
    assert "queued: 0 tasks waiting for a worker, 0 waiting to retry" in out.stdout and "timers" not in out.stdout


def test_sigterm_drains_in_flight_work_and_exits_zero(coda_supervisor, tmp_path: Path) -> None:
    with coda.SyncClient(coda_supervisor.address) as client:
        handle = client.start(app.slow_workflow, {"dir": str(tmp_path), "seconds": 1.0})
        # Accepted and on a worker before the signal.
        wait_until(lambda: handle.status().state == "running", 30, "the run to start")
        assert coda_supervisor.proc is not None
        coda_supervisor.proc.terminate()
        # Accepted work still finishes; new runs are refused meanwhile.
        assert handle.result(timeout=30) == "finished"
    assert coda_supervisor.proc.wait(30) == 0
    assert count(str(tmp_path), "slow") == 1
