"""Start and stop what the bench measures: a Coda supervisor with its workers, and stock
``celery worker -P prefork -c 2`` processes on Redis and on RabbitMQ."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import redis
from celery import Celery

from bench.celery_app import CeleryTarget, make_app
from bench.rss import descendants
from coda.supervisor.launcher import SupervisorProcess

__all__ = [
    "CeleryWorker",
    "REPO_ROOT",
    "new_tag",
    "pin",
    "rabbitmq_target",
    "redis_target",
    "start_supervisor",
    "wait_idle",
]

logger = logging.getLogger(__name__)

REPO_ROOT = str(Path(__file__).resolve().parent.parent)
REDIS_URL = "redis://127.0.0.1:6379/0"
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
_STARTUP_S = 30.0


def _child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    # Subprocesses import `bench` and `coda` from this checkout wherever the bench was started.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    return env


def start_supervisor(
    workers: int = 2,
    args: Sequence[str] = (),
    apps: Sequence[str] = ("bench.coda_app",),
    env: dict[str, str] | None = None,
) -> SupervisorProcess:
    """A fresh supervisor running ``apps`` on ``workers`` workers; ready when this returns."""
    process = SupervisorProcess(
        apps, workers=workers, args=["--log-level", "WARNING", *args], env=_child_env(env), cwd=REPO_ROOT
    )
    # The launcher waits for its "listening" line without a clock of its own; a supervisor that
    # hangs at startup is killed here, which ends that wait with an error.
    def kill_if_started() -> None:
        if process.proc is not None:
            process.proc.kill()

    watchdog = threading.Timer(_STARTUP_S, kill_if_started)
    watchdog.start()
    try:
        process.start()
    finally:
        watchdog.cancel()
    process.wait_for_workers(timeout=_STARTUP_S)
    return process


def pin(pids: Sequence[int], cpus: str) -> None:
    """Move every thread of ``pids`` to ``cpus`` (a taskset list such as "0" or "0-1")."""
    for pid in pids:
        subprocess.run(["taskset", "-a", "-p", "-c", cpus, str(pid)], check=True, capture_output=True)


def redis_target(tag: str) -> CeleryTarget:
    prefix = f"coda-bench-{tag}:"
    return CeleryTarget("redis", REDIS_URL, REDIS_URL, f"coda-bench-{tag}-redis", prefix)


def rabbitmq_target(tag: str) -> CeleryTarget:
    return CeleryTarget("rabbitmq", AMQP_URL, "rpc://", f"coda-bench-{tag}-rabbitmq", "")


def new_tag() -> str:
    return uuid.uuid4().hex[:10]


class CeleryWorker:
    """``python -m celery -A bench.celery_app worker -P prefork -c 2`` for one target, plus the
    bench-side app that talks to it."""

    def __init__(self, target: CeleryTarget, concurrency: int = 2, startup_timeout: float = 60.0) -> None:
        self.target = target
        self.concurrency = concurrency
        self.startup_timeout = startup_timeout
        self.app: Celery = make_app(target)
        self.proc: subprocess.Popen[bytes] | None = None
        handle, self.log_path = tempfile.mkstemp(prefix=f"coda-bench-celery-{target.label}-", suffix=".log")
        os.close(handle)

    def start(self) -> CeleryWorker:
        argv = [
            sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker",
            "-P", "prefork", "-c", str(self.concurrency), "-Q", self.target.queue,
            "-n", f"{self.target.queue}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING",
        ]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=_child_env(self.target.env()), cwd=REPO_ROOT
            )
        # A task published before the worker consumes simply waits in its queue: one round trip
        # proves the broker, the worker and the result backend are all up.
        try:
            self.app.tasks["legacy.noop"].delay().get(timeout=self.startup_timeout)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"celery worker on {self.target.label} did not answer: {exc}\n{self.log()}") from exc
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def pids(self) -> list[int]:
        return [self.pid, *descendants(self.pid)]

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()[-4000:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # warm shutdown: the pool children exit with it
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                for pid in descendants(self.proc.pid):
                    _kill(pid)
                self.proc.kill()
                self.proc.wait(5)
        self._clean_broker()
        self.app.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log_path)

    def _clean_broker(self) -> None:
        """Remove what this run left on the servers: its keys on Redis, its queue on RabbitMQ."""
        try:
            if self.target.key_prefix:
                client = redis.Redis.from_url(REDIS_URL)
                keys = list(client.scan_iter(match=self.target.key_prefix + "*", count=1000))
                for start in range(0, len(keys), 500):
                    client.delete(*keys[start:start + 500])
                client.close()
            else:
                with self.app.connection_for_write() as conn:
                    conn.default_channel.queue_delete(self.target.queue)
        except Exception as exc:  # cleanup must not hide the figures
            logger.warning("bench.cleanup_failed: %s: %s", self.target.label, exc)


def _kill(pid: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, 9)


def wait_idle(seconds: float) -> None:
    """Let processes settle (finish imports, return freed memory) before reading their RSS."""
    time.sleep(seconds)
