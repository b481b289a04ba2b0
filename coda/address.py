"""Supervisor addresses: ``host:port``, loopback by default."""

from __future__ import annotations

from coda.errors import CodaError

__all__ = ["DEFAULT_ADDRESS", "parse_address"]

DEFAULT_ADDRESS = "127.0.0.1:42069"


def parse_address(address: str) -> tuple[str, int]:
    """``host:port`` (``[::1]:port`` for IPv6; no host means 127.0.0.1) → (host, port); an
    error that says what is wrong otherwise."""
    if "://" in address:
        scheme, _, rest = address.partition("://")
        hostport = rest.split("/", 1)[0].rpartition("@")[2] or DEFAULT_ADDRESS
        raise CodaError(f"address {address!r} is a URL; give host:port without {scheme}://, e.g. {hostport}")
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise CodaError(f"address {address!r} is not host:port (e.g. {DEFAULT_ADDRESS})")
    if not 0 <= int(port) <= 65535:
        raise CodaError(f"address {address!r}: port {int(port)} is out of range (0-65535)")
    host = host.strip("[]")
    if any(c.isspace() for c in host) or "/" in host:
        raise CodaError(f"address {address!r}: {host!r} is not a host name or IP address")
    return host or "127.0.0.1", int(port)
