"""``coda supervisor``: parse the flags, build the config, set up logging, run.

Every :class:`~coda.supervisor.config.SupervisorConfig` field is a flag here, and each flag also
reads its ``CODA_*`` variable (shown in ``--help``); a bad value is a usage error naming the
flag, reported before any worker starts.
"""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import click

from coda.address import parse_address
from coda.errors import CodaError
from coda.logs import setup_logging
from coda.supervisor.config import LOG_LEVELS, MIN_FRAME, SupervisorConfig, env_var, flag

__all__ = ["Address", "Names", "supervisor"]

_DEFAULTS = {f.name: f.default for f in fields(SupervisorConfig)}


class Address(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.2 on
    """``host:port``, checked as the supervisor will read it."""

    name = "host:port"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            parse_address(str(value))
        except CodaError as exc:
            self.fail(str(exc), param, ctx)
        return str(value)


class Names(click.ParamType):  # type: ignore[type-arg]
    """Names separated by commas (or, in the environment, by commas or spaces)."""

    name = "name[,name...]"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, ...]:
        if isinstance(value, tuple):
            return value
        return tuple(item for item in re.split(r"[,\s]+", str(value)) if item)

    def split_envvar_value(self, rv: str) -> list[str]:
        return [item for item in re.split(r"[,\s]+", rv) if item]


def _option(*decls: str, field: str, help: str, envvar: str | list[str] | None = None, **kwargs: Any) -> Callable[[Any], Any]:  # noqa: A002
    default = _DEFAULTS[field]
    return click.option(
        *decls, flag(field), field,
        envvar=envvar or env_var(field), show_envvar=True,
        default=None if default in ((), None) else default, show_default=default not in ((), None),
        help=help, **kwargs,
    )


def _check_listen(address: str) -> None:
    """Fail now, before any worker starts, when the supervisor could not listen there."""
    host, port = parse_address(address)
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
            probe.bind(sockaddr)
    except OSError as exc:
        raise click.BadParameter(f"cannot listen on {address}: {exc.strerror or exc}", param_hint=f"'{flag('listen')}'") from None


@click.command(context_settings={"max_content_width": 100})
@_option("-A", field="apps", multiple=True, type=Names(), help="Module that defines tasks and workflows (repeatable).")
@_option(field="workers", type=click.IntRange(min=1), help="Worker processes to run.")
@_option(field="concurrency", type=click.IntRange(min=1), help="Tasks one worker runs at once.")
@_option(field="workflow_capacity", type=click.IntRange(min=1), help="Workflows one worker hosts at once.")
@_option(field="listen", type=Address(), envvar=[env_var("listen"), "CODA_URL"],
         help="host:port for clients (loopback by default; port 0 picks one).")
@_option(field="token", help="Require clients to present this token.")
@_option(field="grace", type=click.FloatRange(min=0), help="Seconds to let in-flight work finish on SIGTERM/SIGINT.")
@_option(field="retention", type=click.FloatRange(min=0), help="Seconds a finished run is kept.")
@_option(field="max_runs", type=click.IntRange(min=1), help="Finished runs kept at most; succeeded ones are evicted first.")
@_option(field="max_worker_deaths", type=click.IntRange(min=1),
         help="Worker deaths under one task after which it fails with WorkerLost.")
@_option(field="max_frame", type=click.IntRange(min=MIN_FRAME), help="Largest message in bytes, on every connection.")
@_option(field="log_level", type=click.Choice(LOG_LEVELS, case_sensitive=False), help="Log level.")
@_option(field="celery_app", metavar="module:attribute", help="The Celery app, for the bridge and -Q.")
@_option("-Q", field="queues", type=Names(), help="Celery queues to take over, comma-separated (needs --celery-app).")
@_option(field="broker", metavar="URL", help="Broker URL for the bridge [default: the Celery app's].")
@_option(field="bridge_pickup_timeout", type=click.FloatRange(min=0, min_open=True),
         help="Seconds a bridged task may wait for a Celery worker to start it (with coda.bridge.install).")
@_option(field="bridge_result_timeout", type=click.FloatRange(min=0, min_open=True),
         help="Seconds a bridged task may take in all.")
def supervisor(**options: Any) -> None:
    """Run a supervisor: spawn workers that import the -A modules, relay all their
    communication, memoize task results and serve clients.

    \b
    coda supervisor -A app.tasks -A app.workflows --workers 4
    coda supervisor -A proj.tasks --celery-app proj.celery:app -Q events
    """
    options["apps"] = tuple(app for group in options["apps"] for app in group)  # -A a,b -A c
    values = {k: v for k, v in options.items() if v is not None and v != ()}
    try:
        config = SupervisorConfig(**values)
    except CodaError as exc:
        raise click.UsageError(str(exc)) from None
    if not config.apps:
        raise click.UsageError(f"give at least one -A module that defines your tasks and workflows (or {env_var('apps')})")
    if config.queues and not config.celery_app:
        raise click.UsageError(f"-Q needs {flag('celery_app')}: the Celery app whose queues to take over")
    _check_listen(config.listen)
    setup_logging(config.log_level, "coda-supervisor")
    from coda.supervisor.server import serve  # the server's imports are not needed for --help

    def listening(address: str) -> None:
        # Launchers, users and the bench wait for this line on stdout.
        click.echo(f"coda supervisor listening on {address} with {config.workers} workers")

    sys.exit(asyncio.run(serve(config, on_listening=listening)))
