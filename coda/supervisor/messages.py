"""What the dispatcher takes and gives, as types.

In: anything a peer sent (a wire message from a connection, an in-process message from the
bridge or the takeover) and the events of the I/O edge (:class:`WorkerSpawned`,
:class:`ConnectionClosed`, :class:`Drain`). Out: a list of :data:`Output`, each either a
message for a peer, ``(peer, message)``, or an :data:`Effect` for the server itself to carry
out (start or kill a worker process, close a connection). Effects are records, never calls, so
the dispatcher stays a pure function and new effects (a store write, a store read answered by
an event) are one more record here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from coda.inprocess import InProcessMessage
from coda.protocol import Message

__all__ = [
    "CloseConnection",
    "ConnectionClosed",
    "Drain",
    "Effect",
    "Event",
    "Inbound",
    "KillWorker",
    "Out",
    "Outbound",
    "Output",
    "Send",
    "StartWorker",
    "WorkerSpawned",
]


# -- events from the I/O edge -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerSpawned:
    """The server started a worker process in ``slot``; its connection is the sender."""

    slot: int
    pid: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The sender's connection is gone (worker died, client left, or we closed it)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Drain:
    """Stop taking new runs; finish what was accepted (sent by the supervisor itself)."""


# -- effects for the server -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartWorker:
    slot: int


@dataclass(frozen=True, slots=True)
class KillWorker:
    peer: int
    reason: str


@dataclass(frozen=True, slots=True)
class CloseConnection:
    peer: int
    reason: str


Event: TypeAlias = WorkerSpawned | ConnectionClosed | Drain
Effect: TypeAlias = StartWorker | KillWorker | CloseConnection
Inbound: TypeAlias = Message | InProcessMessage | Event
Outbound: TypeAlias = Message | InProcessMessage
Send: TypeAlias = tuple[int, Outbound]
Output: TypeAlias = Send | Effect
Out: TypeAlias = list[Output]
