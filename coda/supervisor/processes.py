"""Worker processes: start one over a fresh socketpair, kill one, reap them all; or, for fast
tests, the same workers as objects in the supervisor's own event loop."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from coda.framing import DEFAULT_MAX_FRAME

__all__ = ["InProcessWorkers", "WorkerLaunch", "WorkerProcesses"]

logger = logging.getLogger(__name__)

OnExit = Callable[[int, int, int], None]  # (slot, pid, returncode)


@dataclass(frozen=True, slots=True)
class WorkerLaunch:
    """How a worker starts: the modules it imports, what it runs with, and the environment
    variables it needs besides the supervisor's own."""

    apps: tuple[str, ...]
    concurrency: int = 1
    max_frame: int = DEFAULT_MAX_FRAME
    log_level: str = "INFO"
    env: tuple[tuple[str, str], ...] = ()

    def argv(self, fd: int) -> list[str]:
        """The command line of a worker that talks to its supervisor over inherited ``fd``."""
        argv = [sys.executable, "-m", "coda.worker", "--fd", str(fd),
                "--concurrency", str(self.concurrency), "--max-frame", str(self.max_frame)]
        for app in self.apps:
            argv += ["-A", app]
        return argv

    def environ(self, base: Mapping[str, str], cwd: str) -> dict[str, str]:
        """The worker's environment: ``base`` with the launch's variables, the supervisor's log
        level unless ``CODA_LOG_LEVEL`` is set, and ``cwd`` first on the import path (workers
        import the user's modules from where the supervisor was started)."""
        env = dict(base)
        env.setdefault("CODA_LOG_LEVEL", self.log_level)
        env.update(self.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [cwd, env.get("PYTHONPATH")]))
        return env


class WorkerProcesses:
    """Owns the ``coda.worker`` child processes of one supervisor."""

    def __init__(self, launch: WorkerLaunch, on_exit: OnExit) -> None:
        self.launch = launch
        self.on_exit = on_exit
        self.procs: dict[int, asyncio.subprocess.Process] = {}  # pid → process
        self.reapers: set[asyncio.Task[None]] = set()

    async def start(self, slot: int) -> tuple[int, socket.socket]:
        """Start a worker for ``slot``; return its pid and the supervisor's end of its socket."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = self.launch.argv(child.fileno())
        env = self.launch.environ(os.environ, os.getcwd())
        try:
            proc = await asyncio.create_subprocess_exec(*argv, pass_fds=(child.fileno(),), env=env)
        finally:
            child.close()
        self.procs[proc.pid] = proc
        reaper = asyncio.get_running_loop().create_task(self._reap(slot, proc))
        self.reapers.add(reaper)
        reaper.add_done_callback(self.reapers.discard)
        return proc.pid, parent

    async def _reap(self, slot: int, proc: asyncio.subprocess.Process) -> None:
        code = await proc.wait()
        self.procs.pop(proc.pid, None)
        self.on_exit(slot, proc.pid, code)

    def kill(self, pid: int) -> None:
        proc = self.procs.get(pid)
        if proc is not None and proc.returncode is None:
            proc.kill()

    async def stop_all(self, timeout: float = 5.0) -> None:
        """Workers exit when their socket closes; SIGTERM, then SIGKILL, those that do not."""
        if not self.procs:
            return
        done, pending = await asyncio.wait(list(self.reapers), timeout=timeout / 2)
        for proc in list(self.procs.values()):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        if pending:
            done, pending = await asyncio.wait(pending, timeout=timeout / 2)
        for proc in list(self.procs.values()):
            if proc.returncode is None:
                proc.kill()
        if pending:
            await asyncio.wait(pending, timeout=1.0)


class InProcessWorkers:
    """Workers as objects in the supervisor's own event loop, for fast tests: the same protocol
    over real socketpairs, without processes. They run what this process has imported (the
    launch's modules are not imported again). A kill closes the worker's connection (a thread
    running a plain task cannot be stopped; its late result is dropped)."""

    def __init__(self, launch: WorkerLaunch, on_exit: OnExit) -> None:
        self.launch = launch
        self.on_exit = on_exit
        self.workers: dict[int, tuple[int, asyncio.BaseTransport]] = {}  # pseudo pid → (slot, transport)
        self._pids = iter(range(1_000_000, 2_000_000))

    async def start(self, slot: int) -> tuple[int, socket.socket]:
        from coda.registry import REGISTRY
        from coda.worker import Worker

        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        loop = asyncio.get_running_loop()
        worker = Worker(REGISTRY, self.launch.concurrency, self.launch.max_frame)
        transport, _ = await loop.create_unix_connection(lambda: worker, sock=child)
        pid = next(self._pids)
        self.workers[pid] = (slot, transport)
        return pid, parent

    def kill(self, pid: int) -> None:
        entry = self.workers.pop(pid, None)
        if entry is not None:
            entry[1].close()
            self.on_exit(entry[0], pid, -signal.SIGKILL)

    async def stop_all(self, timeout: float = 5.0) -> None:
        for pid in list(self.workers):
            slot, transport = self.workers.pop(pid)
            transport.close()
