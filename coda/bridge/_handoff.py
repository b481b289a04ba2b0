"""What the two halves of the queue takeover hand each other across the thread line: the
consumer thread (:mod:`coda.bridge._consumer`) gives the event-loop side
(:mod:`coda.bridge._takeover`) an :data:`Arrival` per message, plain data; the loop side answers
with :data:`Command` records that only the consumer thread acts on. No kombu or Celery object is
in either, so none ever crosses threads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias

__all__ = [
    "Arrival",
    "Command",
    "Holding",
    "Lost",
    "Settle",
    "Settled",
    "StartMessage",
    "StopConsuming",
    "TaskMessage",
    "TimedOut",
]


# -- thread → loop ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskMessage:
    """A Celery task message, checked and parsed. ``payload`` is the message as the worker-side
    task (:mod:`coda.bridge._execute`) takes it; ``rate`` is the task's rate limit in tasks per
    second, ``time_limit`` its hard limit in seconds."""

    tag: int
    queue: str
    msg_id: str
    task: str
    eta: datetime | None
    rate: float | None
    time_limit: float | None
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class StartMessage:
    """A workflow start published by :func:`coda.bridge.workflow_entry`."""

    tag: int
    queue: str
    msg_id: str
    workflow: str
    args: dict[str, Any]
    run_id: str | None


Arrival: TypeAlias = TaskMessage | StartMessage


# -- loop → thread ------------------------------------------------------------------------------


class Settle(enum.Enum):
    ACK = "ack"
    REJECT = "reject"  # dropped (or dead-lettered, where the broker is set up for it)
    REQUEUE = "requeue"  # back to the broker at once
    REQUEUE_LATER = "requeue_later"  # back to the broker after a pause


@dataclass(frozen=True, slots=True)
class Settled:
    tag: int
    how: Settle


@dataclass(frozen=True, slots=True)
class TimedOut:
    """The task ran past its hard limit (its worker was killed): Celery's own time-limit path
    records FAILURE(TimeLimitExceeded), runs errbacks and sends the signal; then the ack."""

    tag: int


@dataclass(frozen=True, slots=True)
class Lost:
    """Every worker that ran it died: record FAILURE(WorkerLostError), then ack."""

    tag: int
    message: str


@dataclass(frozen=True, slots=True)
class Holding:
    """The loop holds ``count`` messages for their eta: the prefetch window grows by as many."""

    count: int


@dataclass(frozen=True, slots=True)
class StopConsuming:
    """Take no more messages (the drain); what is unacked goes back when the connection closes."""


Command: TypeAlias = Settled | TimedOut | Lost | Holding | StopConsuming
