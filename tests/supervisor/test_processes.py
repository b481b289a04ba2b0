"""Worker processes: the command line and environment of a worker, a real one started over a
socketpair (its hello read off the socket) and killed, and the in-process twin."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys

from coda import protocol as p
from coda.framing import FrameDecoder
from coda.supervisor.processes import InProcessWorkers, WorkerLaunch, WorkerProcesses


def test_the_command_line_and_environment_of_a_worker() -> None:
    launch = WorkerLaunch(("a.tasks", "b.flows"), concurrency=4, max_frame=2048, log_level="DEBUG",
                          env=(("CODA_CELERY_APP", "proj:app"),))
    assert launch.argv(7) == [sys.executable, "-m", "coda.worker", "--fd", "7", "--concurrency", "4",
                              "--max-frame", "2048", "-A", "a.tasks", "-A", "b.flows"]
    env = launch.environ({"PATH": "/bin", "PYTHONPATH": "/lib"}, "/srv/app")
    assert env == {"PATH": "/bin", "PYTHONPATH": os.pathsep.join(["/srv/app", "/lib"]),
                   "CODA_LOG_LEVEL": "DEBUG", "CODA_CELERY_APP": "proj:app"}
    # A log level the operator set for workers wins over the supervisor's.
    assert launch.environ({"CODA_LOG_LEVEL": "ERROR"}, "/srv")["CODA_LOG_LEVEL"] == "ERROR"
    assert launch.environ({}, "/srv")["PYTHONPATH"] == "/srv"


async def _hello(sock: socket.socket) -> p.WorkerHello:
    reader, writer = await asyncio.open_connection(sock=sock)
    decoder = FrameDecoder()
    try:
        while True:
            data = await asyncio.wait_for(reader.read(65536), 60)
            assert data, "the worker closed its socket before saying hello"
            messages = decoder.feed(data)
            if messages:
                hello = messages[0]
                assert type(hello) is p.WorkerHello
                return hello
    finally:
        writer.close()


async def test_a_worker_process_says_hello_over_its_socket_and_dies_when_killed() -> None:
    exited: asyncio.Queue[tuple[int, int, int]] = asyncio.Queue()
    processes = WorkerProcesses(WorkerLaunch(("tests.e2e.app",)), lambda *args: exited.put_nowait(args))
    pid, sock = await processes.start(3)
    try:
        hello = await _hello(sock)
        assert hello.pid == pid and hello.version == p.PROTOCOL_VERSION
        assert "tests.e2e.app.add" in {spec.name for spec in hello.tasks}
        processes.kill(pid)
        assert await asyncio.wait_for(exited.get(), 30) == (3, pid, -signal.SIGKILL)
        assert processes.procs == {}
    finally:
        await processes.stop_all()


async def test_in_process_workers_speak_the_same_protocol_and_a_kill_is_reported_at_once() -> None:
    exited: list[tuple[int, int, int]] = []
    workers = InProcessWorkers(WorkerLaunch(("ignored",)), lambda *args: exited.append(args))
    pid, sock = await workers.start(0)
    hello = await _hello(sock)
    assert hello.version == p.PROTOCOL_VERSION
    workers.kill(pid)
    assert exited == [(0, pid, -signal.SIGKILL)] and workers.workers == {}
    pid2, sock2 = await workers.start(1)
    await workers.stop_all()
    assert workers.workers == {} and pid2 != pid
    sock2.close()
