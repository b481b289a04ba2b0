"""Supervisor addresses: ``host:port``, loopback by default."""

from __future__ import annotations

from coda.errors import CodaError

__all__ = ["DEFAULT_ADDRESS", "parse_address"]

DEFAULT_ADDRESS = "127.0.0.1:42069"


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6) → (host, port); a clear error otherwise."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise CodaError(f"address {address!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)
