"""host:port, and an error that says what is wrong with anything else."""

from __future__ import annotations

import pytest

from coda.address import parse_address
from coda.errors import CodaError


@pytest.mark.parametrize(("address", "parsed"), [
    ("127.0.0.1:42069", ("127.0.0.1", 42069)),
    ("localhost:0", ("localhost", 0)),
    (":5000", ("127.0.0.1", 5000)),
    ("[::1]:65535", ("::1", 65535)),
    ("supervisor.internal:80", ("supervisor.internal", 80)),
])
def test_host_port(address: str, parsed: tuple[str, int]) -> None:
    assert parse_address(address) == parsed


@pytest.mark.parametrize(("address", "message"), [
    ("127.0.0.1:99999", "port 99999 is out of range (0-65535)"),
    ("http://127.0.0.1:5000", "is a URL; give host:port without http://, e.g. 127.0.0.1:5000"),
    ("redis://user:pw@127.0.0.1:6379/0", "without redis://, e.g. 127.0.0.1:6379"),
    ("127.0.0.1", "is not host:port (e.g. 127.0.0.1:42069)"),
    ("127.0.0.1:", "is not host:port"),
    ("127.0.0.1:port", "is not host:port"),
    ("my host:80", "'my host' is not a host name or IP address"),
    ("host/path:80", "is not a host name or IP address"),
])
def test_errors_say_what_is_wrong(address: str, message: str) -> None:
    with pytest.raises(CodaError) as caught:
        parse_address(address)
    assert message in str(caught.value) and repr(address) in str(caught.value)
