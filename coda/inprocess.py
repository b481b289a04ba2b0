"""Messages between the dispatcher and the peers that live inside the supervisor process: the
Celery bridge (workflow → Celery, a virtual worker) and the queue takeover (Celery → Coda, a
client). They are never framed, so they carry no ``TAG``; the wire messages they mix with are
in :mod:`coda.protocol`. Neither side imports the other: both import this module.

::

    bridge → BridgeHello, TaskReturned, TaskRaised             ← ExecuteLegacyTask, CancelExecution
    takeover → ClientHello, SubmitTask, StartRun               ← Welcome, SpawnSucceeded, SpawnFailed,
                                                                 RunStarted, ErrorReply
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

__all__ = ["BridgeHello", "ExecuteLegacyTask", "InProcessMessage", "InProcessPeer", "SubmitTask"]


@dataclass(frozen=True, slots=True)
class BridgeHello:
    """The Celery bridge registers as a virtual worker that takes every task name no worker
    registered, ``capacity`` of them at once."""

    capacity: int


@dataclass(frozen=True, slots=True)
class ExecuteLegacyTask:
    """ExecuteTask for the bridge: the memo key gives the Celery task a deterministic id."""

    exec_id: int
    run_id: str
    task: str
    args: dict[str, Any]
    memo_key: bytes | None


@dataclass(frozen=True, slots=True)
class SubmitTask:
    """A task outside any run, from the queue takeover: answered with SpawnSucceeded or
    SpawnFailed under ``request_id``; ``timeout`` overrides the task's own."""

    request_id: int
    task: str
    args: dict[str, Any]
    timeout: float | None


InProcessMessage: TypeAlias = BridgeHello | ExecuteLegacyTask | SubmitTask


class InProcessPeer(Protocol):
    """What the server hands the dispatcher's messages for an in-process peer to. A peer gets
    only what the dispatcher addresses to it, and logs (never raises on) anything unexpected."""

    def handle(self, msg: object) -> None: ...
