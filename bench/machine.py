"""Where the figures came from: the machine and the versions of everything measured."""

from __future__ import annotations

import logging
import os
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = ["describe"]

logger = logging.getLogger(__name__)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _package(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _redis_version() -> str | None:
    import redis

    try:
        client = redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=1)
        found = str(client.info("server")["redis_version"])
        client.close()
        return found
    except Exception as exc:  # no server: the figures say so elsewhere
        logger.debug("bench.machine.redis: %s", exc)
        return None


def _rabbitmq_version() -> str | None:
    from kombu import Connection

    try:
        with Connection("amqp://guest:guest@127.0.0.1:5672//", connect_timeout=1) as conn:
            conn.connect()
            found = conn.connection.server_properties.get("version")
            return found.decode() if isinstance(found, bytes) else str(found)
    except Exception as exc:
        logger.debug("bench.machine.rabbitmq: %s", exc)
        return None


def describe() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "coda": _package("coda-workflows"),
        "celery": _package("celery"),
        "kombu": _package("kombu"),
        "redis_py": _package("redis"),
        "redis_server": _redis_version(),
        "rabbitmq_server": _rabbitmq_version(),
    }
