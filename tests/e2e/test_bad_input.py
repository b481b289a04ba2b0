"""Bad bytes and bad credentials on a real supervisor: the offending connection is dropped with
a logged reason; the supervisor and every other run carry on."""

from __future__ import annotations

import socket
import struct

import msgpack
import pytest

import coda
from coda import protocol as p
from coda.errors import AuthenticationFailed, CodaError
from coda.framing import FrameDecoder, encode_frame
from tests.e2e import app
from tests.support import wait_until

CODA_APPS = ["tests.e2e.app"]


def _raw(address: str) -> socket.socket:
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def _wait_closed(sock: socket.socket) -> bytes:
    """Read until the supervisor closes the connection; what it sent before (the socket's own
    timeout bounds each read)."""
    chunks: list[bytes] = []

    def closed() -> bool:
        chunks.append(sock.recv(65536))
        return not chunks[-1]

    wait_until(closed, 10, "the supervisor to close the connection")
    return b"".join(chunks)


@pytest.mark.parametrize(
    ("payload", "logged"),
    [
        (struct.pack(">I", 2**31) + b"xxxx", "is over the limit of"),  # oversized frame
        (struct.pack(">I", 3) + b"\xc1\xc1\xc1", "undecodable frame"),  # not msgpack
        (encode_frame(p.ClientHello(p.PROTOCOL_VERSION, None)) + struct.pack(">I", 4) + msgpack.packb([999]), "unknown message tag 999"),
    ],
    ids=["oversized", "undecodable", "unknown-tag"],
)
async def test_bad_frames_drop_only_that_connection(coda_supervisor, payload: bytes, logged: str) -> None:
    async with coda_supervisor.client() as client:
        slow = await client.start(app.fan_out, {"n": 20})  # another run in flight meanwhile
        with _raw(coda_supervisor.address) as sock:
            sock.sendall(payload)
            _wait_closed(sock)
        wait_until(lambda: logged in coda_supervisor.log(), 10, f"{logged!r} in the supervisor's log")
        assert "coda.supervisor.connection_dropped" in coda_supervisor.log()
        assert await slow.result(timeout=30) == sum(2 * i for i in range(20))
        assert await client.run(app.fan_out, {"n": 2}, timeout=30) == 2


def test_wrong_client_protocol_version_is_refused(coda_supervisor) -> None:
    with _raw(coda_supervisor.address) as sock:
        sock.sendall(encode_frame(p.ClientHello(99, None)))
        (reply,) = FrameDecoder().feed(_wait_closed(sock))
    assert type(reply) is p.ErrorReply and "client speaks protocol 99" in reply.error.message


@pytest.mark.coda_supervisor(args=["--token", "s3cret"])
async def test_token_is_required(coda_supervisor) -> None:
    with pytest.raises(AuthenticationFailed, match="wrong or missing token"):
        await coda.Client(coda_supervisor.address, token="").run(app.fan_out, {"n": 1})
    with pytest.raises(AuthenticationFailed):
        await coda.Client(coda_supervisor.address, token="guess").run(app.fan_out, {"n": 1})
    async with coda.Client(coda_supervisor.address, token="s3cret") as client:
        assert await client.run(app.fan_out, {"n": 2}, timeout=30) == 2


async def test_unreachable_supervisor_is_a_clear_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(CodaError, match=f"cannot reach the coda supervisor at 127.0.0.1:{port}"):
        await coda.Client(f"127.0.0.1:{port}", connect_timeout=2).run(app.fan_out, {"n": 1})


def test_supervisor_refuses_a_module_it_cannot_import(coda_supervisor_factory) -> None:
    with pytest.raises(RuntimeError) as err:
        coda_supervisor_factory(["tests.e2e.no_such_module"])
    assert "cannot import -A tests.e2e.no_such_module" in str(err.value)
    assert "before registering" in str(err.value)
