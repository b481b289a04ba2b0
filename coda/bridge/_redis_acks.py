"""Acknowledging taken-over messages, and the tricks kombu's Redis transport needs, in one place.

Everything here reaches into kombu's private Redis channel API (``_create_client``,
``qos._remove_from_indices``, ``unacked_index_key``); nothing else in Coda does. On any other
transport an :class:`Acks` acks one message at a time, as kombu does, and re-stamps nothing.
Consumer thread only: kombu channels are not thread-safe.

- kombu builds a new redis-py client (and its response-callback table, ~60 µs) for every QoS
  append and every ack, twice per message; one client on the same connection pool is what
  redis-py intends, so the channel gets one.
- kombu acks one message per round trip; on Redis many are removed in one pipeline.
- An unacked message older than ``visibility_timeout`` is handed out again (celery#2599: a long
  eta runs twice). While this supervisor lives it re-stamps what it holds, so only the messages
  of a dead supervisor come back.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from typing import Any

from kombu.transport import virtual

__all__ = ["Acks"]

# kombu ships no annotations for it.
_VirtualQoS: Any = virtual.QoS


def _reuse_redis_client(channel: Any) -> bool:
    """On kombu's Redis channel, build the client for QoS appends and acks once; whether the
    channel is a Redis one (whose acks can then be batched)."""
    create = getattr(channel, "_create_client", None)
    qos = getattr(channel, "qos", None)
    if create is None or not hasattr(qos, "_remove_from_indices") or not hasattr(qos, "pipe_or_acquire"):
        return False
    client = create()

    def create_client(asynchronous: bool = False) -> Any:
        return create(asynchronous=True) if asynchronous else client

    channel._create_client = create_client
    return True


class Acks:
    """Acks and re-stamps for one channel (made again on every reconnect)."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.batched = _reuse_redis_client(channel)  # Redis: acks share round trips
        timeout = getattr(channel, "visibility_timeout", None)
        self._visibility = float(timeout) if timeout is not None and hasattr(channel, "unacked_index_key") else None
        self._next_stamp = 0.0

    def ack(self, messages: Sequence[Any]) -> None:
        """Ack ``messages`` (all of this channel): in one round trip on Redis."""
        if len(messages) > 1 and self.batched:
            qos = self.channel.qos
            with qos.pipe_or_acquire() as pipe:
                for message in messages:
                    qos._remove_from_indices(message.delivery_tag, pipe)
                pipe.execute()
            for message in messages:
                _VirtualQoS.ack(qos, message.delivery_tag)
                message._state = "ACK"
        else:
            for message in messages:
                message.ack()

    def keep_invisible(self, tags: Collection[Any]) -> None:
        """On Redis, re-stamp the unacked messages ``tags`` now and then (a third of the
        visibility timeout), so the broker does not hand them out again while we hold them."""
        if self._visibility is None:
            return  # not Redis: the broker tracks the consumer itself
        now = time.monotonic()
        if now < self._next_stamp:
            return
        self._next_stamp = now + max(self._visibility / 3, 0.2)
        if tags:
            stamp = time.time()
            channel = self.channel
            # A pooled connection: channel.client may be waiting on BRPOP.
            with channel.conn_or_acquire() as client:
                client.zadd(channel.unacked_index_key, {tag: stamp for tag in tags}, xx=True)
