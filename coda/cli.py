"""The ``coda`` command: ``coda supervisor`` and ``coda status``."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click

import coda
from coda.address import DEFAULT_ADDRESS
from coda.errors import CodaError
from coda.supervisor.cli import supervisor

__all__ = ["main"]

_RUN_STATES = ("pending", "running", "succeeded", "failed", "cancelled")


@click.group(epilog=f"""\b
Environment of the processes that talk to a supervisor (each flag's own
variable is shown in the command's --help):
  CODA_URL                  supervisor address of clients, coda status and
                            routed calls [default: {DEFAULT_ADDRESS}]
  CODA_TOKEN                token they present
  CODA_COMPAT_ROLLOUT       share of each compat task's delay() calls that
                            run on Coda, e.g. "app.tasks.save=0.5,*=0"
  CODA_COMPAT_ROLLOUT_SEED  seed of those decisions (tests)
""")
@click.version_option(coda.__version__, "-V", "--version", prog_name="coda", message="%(prog)s %(version)s")
def main() -> None:
    """Coda: workflows with memoized tasks, next to your Celery workers."""


main.add_command(supervisor)


@main.command()
@click.option("--url", envvar="CODA_URL", show_envvar=True, default=DEFAULT_ADDRESS, show_default=True,
              help="Supervisor address (host:port).")
@click.option("--token", envvar="CODA_TOKEN", show_envvar=True, default=None,
              help="Token, if the supervisor requires one.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
def status(url: str, token: str | None, as_json: bool) -> None:
    """Print the workers, runs by state and queue depths of a running supervisor."""

    async def fetch() -> dict[str, Any]:
        async with coda.Client(url, token=token, connect_timeout=5) as client:
            return await client.supervisor_status()

    try:
        info = asyncio.run(fetch())
    except CodaError as exc:
        click.echo(f"coda status: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    click.echo(render_status(url, info))


def render_status(url: str, info: dict[str, Any]) -> str:
    """What ``coda status`` prints for a supervisor's status reply."""
    lines = [f"supervisor {url}" + ("  (draining: takes no new runs)" if info.get("draining") else "")]
    lines.append(f"workers ({len(info['workers'])}):")
    for w in info["workers"]:
        lines.append(f"  pid {w['pid']:<7}  tasks {w['running_tasks']}/{w['capacity']}  "
                     f"workflows {w['running_workflows']}  up {_duration(w['uptime'])}")
    runs = info["runs"]
    states = [s for s in _RUN_STATES if s in runs] + sorted(set(runs) - set(_RUN_STATES))
    lines.append("runs: " + (", ".join(f"{runs[s]} {s}" for s in states) or "none"))
    q = info["queues"]
    lines.append(f"queued: {q['tasks_waiting']} tasks waiting for a worker, {q['tasks_retrying']} waiting to retry, "
                 f"{q['workflows_waiting']} workflows waiting, {q['runs_rerunning']} runs waiting to rerun")
    if info.get("bridge") is not None:
        lines.append(f"celery bridge: {info['bridge']['running_tasks']} tasks on Celery workers")
    if info.get("celery_queues"):
        lines.append("taking over celery queues: " + ", ".join(info["celery_queues"]))
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
