"""The supervisor's I/O edge: connections, the TCP listener, timers, signals and the drain.

Every message that arrives becomes an event for :class:`~coda.supervisor.dispatch.Dispatcher`;
what it answers is routed here: frames written, one write per peer per event; messages for the
in-process peers (the Celery bridge, the queue takeover) handed to them; effects carried out
after the writes. A message that cannot be encoded fails alone: its request is answered with a
:class:`~coda.errors.DataError` and the rest of the batch goes out. The server prints nothing;
its address goes to ``on_listening`` (the CLI prints it), everything else is a log record.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from coda import protocol as p
from coda.address import parse_address
from coda.errors import BridgeError, CodaError, ErrorInfo, ErrorKind, ProtocolError, refusal
from coda.framing import FrameStream, encode_frame
from coda.inprocess import InProcessPeer
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.dispatch import Dispatcher
from coda.supervisor.messages import CloseConnection, ConnectionClosed, Drain, Effect, Inbound, KillWorker
from coda.supervisor.messages import Out, Outbound, StartWorker, WorkerSpawned
from coda.supervisor.processes import InProcessWorkers, WorkerLaunch, WorkerProcesses
from coda.supervisor.state import SUPERVISOR

if TYPE_CHECKING:
    from coda.bridge import BridgeSettings, CeleryBridge, Takeover

__all__ = ["Supervisor", "serve"]

logger = logging.getLogger(__name__)

_STARTUP_TIMEOUT = 120.0


class _Connection(FrameStream):
    """One peer (a worker or a client): frames in, frames out."""

    def __init__(self, server: Supervisor, peer: int) -> None:
        super().__init__(server.config.max_frame)
        self.server = server
        self.peer = peer
        self.reason = "connection closed"

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server.conns[self.peer] = self

    def message_received(self, msg: p.Message) -> None:
        self.server.deliver(self.peer, msg)

    def frame_error(self, exc: ProtocolError) -> None:
        self.close(f"protocol error: {exc}")

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.conns.pop(self.peer, None)
        self.server.deliver(self.peer, ConnectionClosed(self.reason if exc is None else f"{self.reason}: {exc}"))

    def close(self, reason: str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            logger.warning("coda.supervisor.connection_dropped", extra={"peer": self.peer, "reason": reason})
            self.reason = reason
            self.transport.close()


def _stand_in(msg: Outbound, error: ErrorInfo) -> p.Message | None:
    """What a peer gets instead of ``msg`` when it cannot be encoded: its request answered with
    ``error`` (None when nobody waits on it)."""
    if isinstance(msg, p.SpawnSucceeded):
        return p.SpawnFailed(msg.request_id, "", error)
    if isinstance(msg, (p.RunStarted, p.RunFinished, p.StatusReply, p.Ack)):
        return p.ErrorReply(msg.request_id, error)
    return None


def worker_launch(config: SupervisorConfig) -> WorkerLaunch:
    """How this supervisor's workers start: its ``-A`` modules, and with ``-Q`` the module that
    runs Celery messages, told which Celery app to load."""
    apps = config.apps
    env: tuple[tuple[str, str], ...] = ()
    if config.queues:
        from coda.bridge import CELERY_APP_ENV, EXECUTE_MODULE

        apps = (*apps, EXECUTE_MODULE)
        env = () if config.celery_app is None else ((CELERY_APP_ENV, config.celery_app),)
    return WorkerLaunch(apps, config.concurrency, config.max_frame, config.log_level, env)


def bridge_settings(config: SupervisorConfig) -> BridgeSettings:
    """The bridge's settings, out of the supervisor's."""
    from coda.bridge import BridgeSettings

    if config.celery_app is None:
        raise BridgeError("-Q needs --celery-app (the Celery app whose queues to take over)")
    return BridgeSettings(
        celery_app=config.celery_app, broker=config.broker, queues=config.queues, apps=config.apps,
        slots=config.workers * config.concurrency, token=config.token,
        pickup_timeout=config.bridge_pickup_timeout, result_timeout=config.bridge_result_timeout,
    )


class Supervisor:
    """Runs one supervisor until it has drained; :meth:`run` returns the exit code. Once it
    listens, ``on_listening`` gets the address as ``host:port`` (``[host]:port`` for IPv6)."""

    def __init__(self, config: SupervisorConfig, *, in_process: bool = False, handle_signals: bool = True,
                 on_listening: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.handle_signals = handle_signals
        self.on_listening = on_listening
        self.dispatcher = Dispatcher(config)
        self.conns: dict[int, _Connection] = {}
        self.peers: dict[int, InProcessPeer] = {}  # the bridge and the takeover, by peer id
        self.peer_ids = itertools.count(1)
        self.worker_pids: dict[int, int] = {}  # worker peer → its process id
        workers = InProcessWorkers if in_process else WorkerProcesses
        self.processes: WorkerProcesses | InProcessWorkers = workers(worker_launch(config), self._process_exited)
        self.address: tuple[str, int] | None = None
        self.bridge: CeleryBridge | None = None  # with --celery-app
        self.takeover: Takeover | None = None  # with -Q
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._stopping = asyncio.Event()
        self._listening = asyncio.Event()
        self._startup = asyncio.Event()  # set when startup may have moved on: hello, error, stop
        self._idle = asyncio.Event()  # set once draining and no accepted work is left
        self._startup_error: str | None = None
        self._starting = True
        self._spawns: set[asyncio.Task[None]] = set()
        self._grace_over = False

    # -- routing --------------------------------------------------------------------------------------

    def deliver(self, peer: int, msg: Inbound) -> None:
        self.route(self.dispatcher.handle(peer, msg, time.time()))

    def route(self, out: Out) -> None:
        if out:
            batches: dict[int, list[bytes]] = {}
            effects: list[Effect] = []
            peers = self.peers
            for item in out:
                if not isinstance(item, tuple):
                    effects.append(item)
                    continue
                peer, msg = item
                inproc = peers.get(peer)
                if inproc is not None:
                    inproc.handle(msg)
                    continue
                frame = self._frame(peer, msg)
                if frame is not None:
                    batches.setdefault(peer, []).append(frame)
            for peer, frames in batches.items():
                conn = self.conns.get(peer)
                if conn is not None:
                    conn.write(frames[0] if len(frames) == 1 else b"".join(frames))
            # After the writes: a refused client still reads why before its connection closes.
            for effect in effects:
                self._effect(effect)
        state = self.dispatcher.state
        if state.draining and not state.busy():
            self._idle.set()
        if self._starting and state.ready():
            self._startup.set()
        self._arm_timer()

    def _frame(self, peer: int, msg: Outbound) -> bytes | None:
        if isinstance(msg, p.Message):
            try:
                return encode_frame(msg)
            except ProtocolError as exc:
                logger.error("coda.supervisor.encode_failed", extra={"peer": peer, "type": type(msg).__name__, "reason": str(exc)})
                stand_in = _stand_in(msg, refusal(ErrorKind.DATA, str(exc)))
                return None if stand_in is None else encode_frame(stand_in)
        logger.error("coda.supervisor.misrouted", extra={"peer": peer, "type": type(msg).__name__})
        return None

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

    def _effect(self, effect: Effect) -> None:
        match effect:
            case StartWorker(slot=slot):
                task = asyncio.get_running_loop().create_task(self._spawn(slot))
                self._spawns.add(task)
                task.add_done_callback(self._spawns.discard)
            case KillWorker(peer=peer, reason=reason):
                logger.warning("coda.supervisor.kill_worker", extra={"peer": peer, "reason": reason})
                pid = self.worker_pids.get(peer)
                if pid is not None:
                    self.processes.kill(pid)
                conn = self.conns.get(peer)
                if conn is not None:
                    conn.close(reason)
            case CloseConnection(peer=peer, reason=reason):
                conn = self.conns.get(peer)
                if conn is not None:
                    conn.close(reason)

    async def _spawn(self, slot: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            pid, sock = await self.processes.start(slot)
        except OSError as exc:
            self._startup_failed(f"cannot start a worker process: {exc}")
            return
        peer = next(self.peer_ids)
        self.worker_pids[peer] = pid
        # The dispatcher must know the peer is a worker before its hello can arrive.
        self.deliver(peer, WorkerSpawned(slot, pid))
        await loop.connect_accepted_socket(lambda: _Connection(self, peer), sock)

    def _process_exited(self, slot: int, pid: int, code: int) -> None:
        peers = [peer for peer, known in self.worker_pids.items() if known == pid]
        for peer in peers:
            del self.worker_pids[peer]
            if self._starting and not self.dispatcher.state.slots[slot].hello:
                self._startup_failed(f"worker pid {pid} exited with code {code} before registering (see its error above)")
            # The socket normally reports the death first; this covers a worker that never connected.
            if peer not in self.conns:
                self.deliver(peer, ConnectionClosed(f"process exited with code {code}"))
        if code not in (0, -signal.SIGTERM, -signal.SIGKILL) or self._starting:
            logger.warning("coda.supervisor.worker_exit", extra={"slot": slot, "pid": pid, "code": code})

    def _startup_failed(self, reason: str) -> None:
        if self._startup_error is None:
            self._startup_error = reason
        self._startup.set()

    # -- lifecycle ------------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_signal, sig)
        self.route(self.dispatcher.start(time.time()))
        started = (
            (self.config.celery_app is None or await self._start_bridge())
            and await self._wait_for_workers()
            and (not self.config.queues or await self._start_takeover())
        )
        server = await self._listen() if started else None
        if server is None:
            await self._shutdown()
            return 1
        await self._stopping.wait()
        await self._drain()
        server.close()
        await self._shutdown()
        return 0

    async def _listen(self) -> asyncio.Server | None:
        host, port = parse_address(self.config.listen)
        try:
            server = await asyncio.get_running_loop().create_server(lambda: _Connection(self, next(self.peer_ids)), host, port)
        except OSError as exc:
            logger.error("coda.supervisor.listen_failed", extra={"address": self.config.listen, "reason": exc.strerror or str(exc)})
            return None
        sock = server.sockets[0]
        name = sock.getsockname()
        self.address = (name[0], name[1])
        shown = f"[{name[0]}]:{name[1]}" if sock.family == socket.AF_INET6 else f"{name[0]}:{name[1]}"
        self._listening.set()
        logger.info("coda.supervisor.listening", extra={"address": shown, "workers": self.config.workers})
        if self.on_listening is not None:
            self.on_listening(shown)
        return server

    async def _start_bridge(self) -> bool:
        from coda.bridge import CeleryBridge

        peer = next(self.peer_ids)
        try:
            bridge = CeleryBridge(bridge_settings(self.config), lambda msg: self.deliver(peer, msg))
        except CodaError as exc:
            logger.error("coda.supervisor.bridge_failed", extra={"reason": str(exc)})
            return False
        try:
            hello = await bridge.start()
        except Exception as exc:  # noqa: BLE001 - the user's Celery app may raise anything
            logger.error("coda.supervisor.bridge_failed", extra={"reason": f"{type(exc).__name__}: {exc}"})
            await bridge.stop()
            return False
        self.bridge = bridge
        self.peers[peer] = bridge
        self.deliver(peer, hello)
        return True

    async def _start_takeover(self) -> bool:
        from coda.bridge import Takeover

        peer = next(self.peer_ids)
        try:
            self.takeover = takeover = Takeover(bridge_settings(self.config), lambda msg: self.deliver(peer, msg))
            self.peers[peer] = takeover
            await takeover.start()
        except CodaError as exc:
            logger.error("coda.supervisor.takeover_failed", extra={"reason": str(exc)})
            return False
        return True

    async def _wait_for_workers(self) -> bool:
        deadline = time.monotonic() + _STARTUP_TIMEOUT
        state = self.dispatcher.state
        while not state.ready():
            if self._startup_error is not None:
                logger.error("coda.supervisor.startup_failed", extra={"reason": self._startup_error})
                return False
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._stopping.is_set():
                logger.error("coda.supervisor.startup_failed", extra={"reason": "workers did not start in time"})
                return False
            self._startup.clear()
            try:
                await asyncio.wait_for(self._startup.wait(), remaining)
            except asyncio.TimeoutError:
                pass
        self._starting = False
        return True

    def _on_signal(self, sig: int) -> None:
        if self._stopping.is_set():
            logger.warning("coda.supervisor.second_signal", extra={"reason": "stopping now"})
            self._grace_over = True
            self._idle.set()
        logger.info("coda.supervisor.draining", extra={"signal": signal.Signals(sig).name, "grace": self.config.grace})
        self.stop()

    def stop(self) -> None:
        """Begin the drain: no new runs, in-flight work gets ``grace`` seconds, then exit."""
        self._stopping.set()
        self._startup.set()
        self.deliver(SUPERVISOR, Drain())
        if self.takeover is not None:
            self.takeover.drain()

    async def started(self) -> tuple[str, int]:
        """Wait until the supervisor listens; its (host, port)."""
        await self._listening.wait()
        assert self.address is not None
        return self.address

    async def _drain(self) -> None:
        state = self.dispatcher.state
        if state.busy() and not self._grace_over:
            try:
                await asyncio.wait_for(self._idle.wait(), self.config.grace)
            except asyncio.TimeoutError:
                pass
        if state.busy():
            logger.warning("coda.supervisor.grace_over", extra={"executions": len(state.execs)})

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


async def serve(config: SupervisorConfig, on_listening: Callable[[str], None] | None = None) -> int:
    """Run a supervisor with ``config`` until it is told to stop; return its exit code."""
    try:
        return await Supervisor(config, on_listening=on_listening).run()
    except CodaError as exc:
        logger.error("coda.supervisor.failed", extra={"reason": str(exc)})
        return 1
