"""The services one invocation shares: started and warmed up once, stopped at the end, whatever
happens in between."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Iterator

from celery import chord

from bench.scale import Scale
from bench.services import CeleryWorker, new_tag, rabbitmq_target, redis_target, start_supervisor
from bench.workloads.base import CELERY_RABBITMQ, CELERY_REDIS, Services

__all__ = ["open_services"]

logger = logging.getLogger(__name__)

_SERVERS = {CELERY_REDIS: ("Redis", 6379), CELERY_RABBITMQ: ("RabbitMQ", 5672)}


def _reachable(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _warm_up(services: Services) -> None:
    """A few untimed calls on every side, so that no figure includes first-call costs
    (connections, lazy imports, queue declarations)."""
    client = services.client
    for _ in range(3):
        services.run(client.run("bench.three_step", {"x": 0}, timeout=60))
        services.run(client.run("bench.fan_out", {"n": 10}, timeout=60))
    for side, worker in services.celery.items():
        app = worker.app
        for _ in range(10):
            app.tasks["legacy.inc"].delay(1).get(timeout=60)
        if side == CELERY_REDIS:
            chord(app.tasks["legacy.inc"].s(i) for i in range(10))(app.tasks["legacy.collect"].s()).get(timeout=60)


@contextlib.contextmanager
def open_services(scale: Scale) -> Iterator[Services]:
    tag = new_tag()
    loop = asyncio.new_event_loop()
    supervisor = start_supervisor()
    services = Services(scale=scale, tag=tag, loop=loop, supervisor=supervisor, client=supervisor.client())
    try:
        for side, make in ((CELERY_REDIS, redis_target), (CELERY_RABBITMQ, rabbitmq_target)):
            name, port = _SERVERS[side]
            if not _reachable(port):
                services.unavailable[side] = f"{name} is not reachable on 127.0.0.1:{port}"
                logger.warning("bench.side_unavailable: %s: %s", side, services.unavailable[side])
                continue
            try:
                services.celery[side] = CeleryWorker(make(tag)).start()
            except RuntimeError as exc:
                services.unavailable[side] = f"celery worker did not start: {exc}"
                logger.warning("bench.side_unavailable: %s: %s", side, exc)
        _warm_up(services)
        yield services
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(services.client.close())
        supervisor.kill()
        for worker in services.celery.values():
            worker.stop()
        loop.close()
