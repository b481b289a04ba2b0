"""The ``coda`` command: ``coda supervisor`` and ``coda status``."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

from coda.client import Client
from coda.errors import CodaError
from coda.supervisor.cli import supervisor

__all__ = ["main"]


@click.group()
def main() -> None:
    """Coda: workflows with memoized tasks, next to your Celery workers."""


main.add_command(supervisor)


@main.command()
@click.option("--url", default=None, help="Supervisor address [default: $CODA_URL or 127.0.0.1:42069].")
@click.option("--token", default=None, help="Token, if the supervisor requires one [env: CODA_TOKEN].")
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
def status(url: str | None, token: str | None, as_json: bool) -> None:
    """Print the workers, runs and queues of a running supervisor."""

    async def fetch() -> dict[str, Any]:
        async with Client(url, token=token, connect_timeout=5) as client:
            return await client.supervisor_status()

    try:
        info = asyncio.run(fetch())
    except CodaError as exc:
        click.echo(f"coda status: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    click.echo(f"workers ({len(info['workers'])}):")
    for w in info["workers"]:
        click.echo(
            f"  slot {w['slot']}  pid {w['pid']}  tasks {w['running_tasks']}/{w['capacity']}  "
            f"workflows {w['running_workflows']}  up {w['uptime']:.0f}s"
        )
    runs = info["runs"]
    click.echo("runs: " + (", ".join(f"{k} {v}" for k, v in sorted(runs.items())) or "none"))
    queues = info["queues"]
    click.echo("queues: " + ", ".join(f"{k} {v}" for k, v in queues.items()))
    if info.get("draining"):
        click.echo("draining: yes")
