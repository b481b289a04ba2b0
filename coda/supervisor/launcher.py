"""Start the real processes a Coda deployment runs, for tests, the demo and the bench: a
``coda supervisor`` subprocess, and a stock ``celery worker`` beside it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from coda.client import Client, SyncClient

__all__ = ["CeleryWorkerProcess", "SupervisorProcess"]

_LISTENING = re.compile(r"listening on (\S+)")


class SupervisorProcess:
    """A ``coda supervisor`` subprocess; its stderr goes to :attr:`log_path`."""

    def __init__(
        self,
        apps: Sequence[str],
        *,
        workers: int = 2,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        self.apps = list(apps)
        self.workers = workers
        self.args = list(args)
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd or os.getcwd()
        self.startup_timeout = startup_timeout
        self.address = ""
        self.proc: subprocess.Popen[str] | None = None
        handle, self.log_path = tempfile.mkstemp(prefix="coda-supervisor-", suffix=".log")
        os.close(handle)
        handle, self.out_path = tempfile.mkstemp(prefix="coda-supervisor-", suffix=".out")
        os.close(handle)
        self._sync: SyncClient | None = None

    def start(self) -> SupervisorProcess:
        argv = [sys.executable, "-m", "coda", "supervisor", "--listen", "127.0.0.1:0", "--workers", str(self.workers)]
        for app in self.apps:
            argv += ["-A", app]
        argv += self.args
        # Both streams go to files: a pipe nobody drains could block the supervisor, and
        # polling a file keeps the startup wait bounded even if it hangs silently.
        with open(self.log_path, "w") as log, open(self.out_path, "w") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=log, text=True, env=self.env, cwd=self.cwd)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            with open(self.out_path) as f:
                found = _LISTENING.search(f.read())
            if found:
                self.address = found.group(1)
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        code = self.proc.poll()
        self.kill()
        why = f"exit code {code}" if code is not None else f"no answer within {self.startup_timeout:g}s"
        raise RuntimeError(f"coda supervisor did not start ({why}); its log:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path) as f:
            return f.read()

    def client(self, **kwargs: Any) -> Client:
        return Client(self.address, **kwargs)

    def sync_client(self) -> SyncClient:
        """A SyncClient shared by the helpers below (closed with the supervisor)."""
        if self._sync is None:
            self._sync = SyncClient(self.address)
        return self._sync

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in self.sync_client().supervisor_status()["workers"]]

    def wait_for_workers(self, count: int | None = None, timeout: float = 30.0, exclude: Sequence[int] = ()) -> list[int]:
        """Wait until ``count`` workers (default: all) are registered, none of them in ``exclude``."""
        want = self.workers if count is None else count
        deadline = time.monotonic() + timeout
        while True:
            pids = [pid for pid in self.worker_pids() if pid not in exclude]
            if len(pids) >= want:
                return pids
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(pids)} of {want} workers registered within {timeout}s")
            time.sleep(0.05)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the drain; the exit code."""
        self._close_client()
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def kill(self) -> None:
        self._close_client()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def _close_client(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    def __enter__(self) -> SupervisorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill()


class CeleryWorkerProcess:
    """A stock ``celery -A app worker`` in its own process group (a kill takes its pool too);
    its output goes to :attr:`log_path`. ``start`` returns once Celery logs that it is ready."""

    def __init__(
        self,
        app: str,
        queues: Sequence[str],
        *,
        concurrency: int = 1,
        pool: str = "prefork",
        name: str = "legacy",
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        startup_timeout: float = 60.0,
    ) -> None:
        self.argv = [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", ",".join(queues),
                     "-c", str(concurrency), "-P", pool, "-n", f"{name}-{os.getpid()}-{id(self)}@%h",
                     "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat", *args]
        self.env = {**os.environ, **(env or {})}
        self.startup_timeout = startup_timeout
        handle, self.log_path = tempfile.mkstemp(prefix="celery-worker-", suffix=".log")
        os.close(handle)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> CeleryWorkerProcess:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                         start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if " ready." in self.log():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"celery worker did not become ready; its log:\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def kill(self) -> None:
        """SIGKILL the main process and its pool."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it takes longer than ``timeout``."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> CeleryWorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
