"""``coda supervisor``: parse the flags, build the config, set up logging, run."""

from __future__ import annotations

import asyncio
import sys

import click

from coda.errors import CodaError
from coda.logs import setup_logging
from coda.supervisor.config import SupervisorConfig
from coda.supervisor.server import serve

__all__ = ["supervisor"]


@click.command()
@click.option("-A", "--app", "apps", multiple=True, help="Module that defines tasks and workflows (repeatable).")
@click.option("--workers", type=int, default=None, help="Worker processes to run [default: 2].")
@click.option("--concurrency", type=int, default=None, help="Tasks one worker runs at once [default: 1].")
@click.option("--listen", default=None, help="host:port for clients [default: 127.0.0.1:42069; port 0 picks one].")
@click.option("--token", default=None, help="Require clients to present this token [env: CODA_TOKEN].")
@click.option("--grace", type=float, default=None, help="Seconds to let in-flight work finish on SIGTERM [default: 30].")
@click.option("--retention", type=float, default=None, help="Seconds a finished run is kept [default: 600].")
@click.option("--max-runs", type=int, default=None, help="Finished runs kept at most; succeeded ones are evicted first [default: 2000].")
@click.option("--celery-app", default=None, help="module:attribute of the Celery app (bridge).")
@click.option("-Q", "--queues", default=None, help="Celery queues to take over, comma-separated.")
@click.option("--broker", default=None, help="Broker URL for the bridge [default: the Celery app's].")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING... [default: INFO].")
def supervisor(apps: tuple[str, ...], workers: int | None, concurrency: int | None, listen: str | None,
               token: str | None, grace: float | None, retention: float | None, max_runs: int | None,
               celery_app: str | None, queues: str | None, broker: str | None, log_level: str | None) -> None:
    """Run a supervisor: spawn workers that import the -A modules, relay all their
    communication, memoize task results and serve clients."""
    try:
        config = SupervisorConfig.from_env(
            apps=apps, workers=workers, concurrency=concurrency, listen=listen, token=token, grace=grace,
            retention=retention, max_runs=max_runs, celery_app=celery_app, broker=broker, log_level=log_level,
            queues=tuple(q.strip() for q in queues.split(",") if q.strip()) if queues else None,
        )
    except (CodaError, TypeError) as exc:
        raise click.UsageError(str(exc)) from None
    if not config.apps:
        raise click.UsageError("give at least one -A module that defines your tasks and workflows")
    setup_logging(config.log_level, "coda-supervisor")

    def listening(address: str) -> None:
        # Launchers, users and the bench wait for this line on stdout.
        click.echo(f"coda supervisor listening on {address} with {config.workers} workers")

    sys.exit(asyncio.run(serve(config, on_listening=listening)))
