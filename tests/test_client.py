"""A SyncClient error reads as the caller's own: one line that says what went wrong, raised from
the caller's call, not ~15 frames of the client's event-loop thread and concurrent.futures."""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys
import tempfile
import traceback

import pytest

import coda
from coda.errors import SupervisorUnavailable, WorkflowFailed
from tests.e2e import app


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _frames(exc: BaseException) -> list[str]:
    return [f"{frame.filename}:{frame.name}" for frame in traceback.extract_tb(exc.__traceback__)]


def test_unreachable_supervisor_is_one_line_from_the_callers_frame() -> None:
    address = f"127.0.0.1:{_closed_port()}"
    with coda.SyncClient(address, connect_timeout=2) as client:
        with pytest.raises(SupervisorUnavailable, match=f"cannot reach the coda supervisor at {address}") as caught:
            client.run("anything", {})
    frames = _frames(caught.value)
    assert frames[0].endswith(":test_unreachable_supervisor_is_one_line_from_the_callers_frame")
    assert [f.rsplit(":", 1)[1] for f in frames[1:]] == ["run", "_call"]
    assert not any("concurrent" in f or "asyncio" in f for f in frames)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_bad_arguments_and_failed_runs_keep_their_message(coda_supervisor_factory) -> None:  # noqa: ANN001
    supervisor = coda_supervisor_factory(["tests.e2e.app"], workers=1)
    with coda.SyncClient(supervisor.address) as client:
        with pytest.raises(TypeError, match="run_id must be a non-empty str") as caught:
            client.start(app.fan_out, {"n": 1}, run_id="")
        assert len(_frames(caught.value)) == 3  # this test, start, _call
        with tempfile.TemporaryDirectory() as folder, pytest.raises(WorkflowFailed, match="is flagged to fail") as failed:
            (pathlib.Path(folder) / "flag-c").touch()
            client.run(app.manual_rerun, {"dir": folder, "tag": "x"}, timeout=30)
        assert len(_frames(failed.value)) == 3


def test_what_a_user_sees_on_the_terminal() -> None:
    port = _closed_port()
    done = subprocess.run([sys.executable, "-c", f"import coda; coda.SyncClient('127.0.0.1:{port}').run('x')"],
                          capture_output=True, text=True, timeout=60)
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"coda.errors.SupervisorUnavailable: cannot reach the coda supervisor at 127.0.0.1:{port}")
    assert len(lines) <= 8, done.stderr  # the caller's line, run, _call (each with its source line), the error
