"""The supervisor's I/O edge: connections, the TCP listener, timers, signals and the drain.

Every byte that arrives becomes a message for :class:`~coda.supervisor.dispatch.Dispatcher`;
everything it answers is framed here and written, one write per peer per event.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import socket
import sys
import time
from typing import Any

from coda.errors import CodaError, ProtocolError
from coda.framing import FrameDecoder, encode_frame
from coda.address import parse_address
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.dispatch import (
    CloseConnection,
    ConnectionClosed,
    Dispatcher,
    Drain,
    KillWorker,
    Out,
    StartWorker,
    WorkerSpawned,
)
from coda.supervisor.processes import InProcessWorkers, WorkerProcesses
from coda.supervisor.state import PROCESSES

__all__ = ["Supervisor", "serve"]

logger = logging.getLogger(__name__)

_STARTUP_TIMEOUT = 120.0


class _Connection(asyncio.Protocol):
    """One peer (a worker or a client): frames in, frames out."""

    def __init__(self, server: Supervisor, peer: int) -> None:
        self.server = server
        self.peer = peer
        self.decoder = FrameDecoder(server.config.max_frame)
        self.transport: asyncio.Transport | None = None
        self.reason = "connection closed"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.server.conns[self.peer] = self

    def data_received(self, data: bytes) -> None:
        try:
            messages = self.decoder.feed(data)
        except ProtocolError as exc:
            self.close(f"protocol error: {exc}")
            return
        deliver = self.server.deliver
        for msg in messages:
            deliver(self.peer, msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.conns.pop(self.peer, None)
        self.server.deliver(self.peer, ConnectionClosed(self.reason if exc is None else f"{self.reason}: {exc}"))

    def close(self, reason: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            logger.warning("coda.supervisor.connection_dropped: peer %s: %s", self.peer, reason)
            self.reason = reason
            self.transport.close()


class Supervisor:
    """Runs one supervisor until it has drained; :meth:`run` returns the exit code."""

    def __init__(self, config: SupervisorConfig, *, in_process: bool = False, handle_signals: bool = True) -> None:
        if config.queues:
            # Workers of a queue takeover run Celery messages (coda.bridge._execute).
            config = config.with_(apps=(*config.apps, "coda.bridge._execute"))  # EXECUTE_MODULE
        self.config = config
        self.handle_signals = handle_signals
        self.dispatcher = Dispatcher(config)
        self.conns: dict[int, _Connection] = {}
        self.peer_ids = itertools.count(1)
        self.slot_pids: dict[int, int] = {}  # worker peer → pid
        workers = InProcessWorkers if in_process else WorkerProcesses
        self.processes: WorkerProcesses | InProcessWorkers = workers(config, self._process_exited)
        self.address: tuple[str, int] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopping: asyncio.Event | None = None
        self._startup_error: str | None = None
        self._starting = True
        self._spawns: set[asyncio.Task[None]] = set()
        self._grace_over = False
        self.bridge: Any = None  # coda.bridge.CeleryBridge with --celery-app, a peer in this process
        self.bridge_peer: int | None = None
        self.takeover: Any = None  # coda.bridge.Takeover with -Q: consumes Celery queues
        self.takeover_peer: int | None = None

    # -- routing --------------------------------------------------------------------------------------

    def deliver(self, peer: int, msg: Any) -> None:
        self.route(self.dispatcher.handle(peer, msg, time.time()))

    def route(self, out: Out) -> None:
        if out:
            batches: dict[int, list[bytes]] = {}
            effects = []
            for peer, msg in out:
                if peer == PROCESSES:
                    effects.append(msg)
                elif peer == self.bridge_peer:
                    self.bridge.handle(msg)
                elif peer == self.takeover_peer:
                    self.takeover.handle(msg)
                else:
                    batches.setdefault(peer, []).append(encode_frame(msg))
            for peer, frames in batches.items():
                conn = self.conns.get(peer)
                if conn is not None and conn.transport is not None and not conn.transport.is_closing():
                    conn.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
            # After the writes: a refused client still reads why before its connection closes.
            for effect in effects:
                self._effect(effect)
        self._arm_timer()

    def _arm_timer(self) -> None:
        deadline = self.dispatcher.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_later(max(0.0, deadline - time.time()), self._tick)

    def _tick(self) -> None:
        self._timer_at = None
        self._timer = None
        self.route(self.dispatcher.tick(time.time()))

    def _effect(self, msg: Any) -> None:
        if type(msg) is StartWorker:
            task = asyncio.get_running_loop().create_task(self._spawn(msg.slot))
            self._spawns.add(task)
            task.add_done_callback(self._spawns.discard)
        elif type(msg) is KillWorker:
            logger.warning("coda.supervisor.kill_worker: peer %s: %s", msg.peer, msg.reason)
            pid = self.slot_pids.get(msg.peer)
            if pid is not None:
                self.processes.kill(pid)
            conn = self.conns.get(msg.peer)
            if conn is not None:
                conn.close(msg.reason)
        elif type(msg) is CloseConnection:
            conn = self.conns.get(msg.peer)
            if conn is not None:
                conn.close(msg.reason)

    async def _spawn(self, slot: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            pid, sock = await self.processes.start(slot)
        except OSError as exc:
            self._startup_error = f"cannot start a worker process: {exc}"
            logger.error("coda.supervisor.spawn_failed: %s", exc)
            return
        peer = next(self.peer_ids)
        self.slot_pids[peer] = pid
        # The dispatcher must know the peer is a worker before its hello can arrive.
        self.deliver(peer, WorkerSpawned(slot, pid))
        await loop.connect_accepted_socket(lambda: _Connection(self, peer), sock)

    def _process_exited(self, slot: int, pid: int, code: int) -> None:
        peers = [peer for peer, known in self.slot_pids.items() if known == pid]
        for peer in peers:
            del self.slot_pids[peer]
            if self._starting and not self.dispatcher.state.slots[slot].hello:
                self._startup_error = f"worker pid {pid} exited with code {code} before registering (see its error above)"
            # The socket normally reports the death first; this covers a worker that never connected.
            if peer not in self.conns:
                self.deliver(peer, ConnectionClosed(f"process exited with code {code}"))
        if code not in (0, -signal.SIGTERM, -signal.SIGKILL) or self._starting:
            logger.warning("coda.supervisor.worker_exit: slot %s pid %s code %s", slot, pid, code)

    # -- lifecycle ------------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        self.route(self.dispatcher.start(time.time()))
        if self.config.celery_app is not None and not await self._start_bridge():
            await self._shutdown()
            return 1
        if not await self._wait_for_workers():
            await self._shutdown()
            return 1
        if self.config.queues and not await self._start_takeover():
            await self._shutdown()
            return 1
        host, port = parse_address(self.config.listen)
        try:
            server = await loop.create_server(lambda: _Connection(self, next(self.peer_ids)), host, port)
        except OSError as exc:
            print(f"coda supervisor: cannot listen on {self.config.listen}: {exc.strerror or exc}", file=sys.stderr)
            await self._shutdown()
            return 1
        sockname = server.sockets[0].getsockname()
        self.address = (sockname[0], sockname[1])
        shown = f"[{sockname[0]}]:{sockname[1]}" if server.sockets[0].family == socket.AF_INET6 else f"{sockname[0]}:{sockname[1]}"
        print(f"coda supervisor listening on {shown} with {self.config.workers} workers", flush=True)
        await self._stopping.wait()
        await self._drain()
        server.close()
        await self._shutdown()
        return 0

    async def _start_bridge(self) -> bool:
        from coda.bridge import CeleryBridge

        peer = next(self.peer_ids)
        bridge = CeleryBridge(self.config, lambda msg: self.deliver(peer, msg))
        try:
            hello = await bridge.start()
        except Exception as exc:  # noqa: BLE001 - the user's Celery app may raise anything
            print(f"coda supervisor: the Celery bridge cannot start: {type(exc).__name__}: {exc}", file=sys.stderr)
            await bridge.stop()
            return False
        self.bridge, self.bridge_peer = bridge, peer
        self.deliver(peer, hello)
        return True

    async def _start_takeover(self) -> bool:
        from coda.bridge import Takeover

        peer = next(self.peer_ids)
        try:
            self.takeover = Takeover(self.config, lambda msg: self.deliver(peer, msg))
            self.takeover_peer = peer
            await self.takeover.start()
        except CodaError as exc:
            print(f"coda supervisor: {exc}", file=sys.stderr)
            return False
        return True

    async def _wait_for_workers(self) -> bool:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        slots = self.dispatcher.state.slots
        while not all(s.hello for s in slots.values()):
            if self._startup_error is not None:
                print(f"coda supervisor: {self._startup_error}", file=sys.stderr)
                return False
            if time.monotonic() > deadline or self._stopping is not None and self._stopping.is_set():
                print("coda supervisor: workers did not start in time", file=sys.stderr)
                return False
            await asyncio.sleep(0.02)
        self._starting = False
        return True

    def _on_signal(self, sig: int) -> None:
        assert self._stopping is not None
        if self._stopping.is_set():
            logger.warning("coda.supervisor.second_signal: stopping now")
            self._grace_over = True
        logger.info("coda.supervisor.draining: %s received, grace %ss", signal.Signals(sig).name, self.config.grace)
        self.stop()

    def stop(self) -> None:
        """Begin the drain: no new runs, in-flight work gets ``grace`` seconds, then exit."""
        assert self._stopping is not None
        self._stopping.set()
        self.deliver(PROCESSES, Drain())
        if self.takeover is not None:
            self.takeover.drain()

    async def started(self) -> tuple[str, int]:
        """Wait until the supervisor listens; its (host, port)."""
        while self.address is None:
            await asyncio.sleep(0.01)
        return self.address

    async def _drain(self) -> None:
        deadline = time.monotonic() + self.config.grace
        while self.dispatcher.state.busy() and time.monotonic() < deadline and not self._grace_over:
            await asyncio.sleep(0.05)
        if self.dispatcher.state.busy():
            logger.warning("coda.supervisor.grace_over: %s executions unfinished", len(self.dispatcher.state.execs))

    async def _shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self.takeover is not None:
            await self.takeover.stop()  # acks what finished; the rest goes back to the broker
        for conn in list(self.conns.values()):
            if conn.transport is not None:
                conn.reason = "supervisor stopping"
                conn.transport.close()
        await self.processes.stop_all()
        if self.bridge is not None:
            await self.bridge.stop()


async def serve(config: SupervisorConfig) -> int:
    """Run a supervisor with ``config`` until it is told to stop; return its exit code."""
    try:
        return await Supervisor(config).run()
    except CodaError as exc:
        print(f"coda supervisor: {exc}", file=sys.stderr)
        return 1

