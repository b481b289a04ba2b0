"""``python -m bench [--quick] [--only NAMES] [--out DIR]``: parse, run, print, write."""

from __future__ import annotations

import argparse
import datetime
import logging
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from bench.machine import describe
from bench.plot import plot_workload, plotting_unavailable
from bench.report import render
from bench.results import BenchResult
from bench.runner import run_workload
from bench.scale import FULL, QUICK
from bench.session import open_services
from bench.workloads import Workload, all_workloads

__all__ = ["main"]

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parent / "results"


def _parse(argv: Sequence[str]) -> argparse.Namespace:
    names = ", ".join(f"{w.number} {w.name}" for w in all_workloads())
    parser = argparse.ArgumentParser(prog="python -m bench", description="Coda against Celery, side by side.")
    parser.add_argument("--quick", action="store_true", help="small counts, few repetitions, no verdicts (CI)")
    parser.add_argument("--only", default="", help=f"comma-separated workload names or numbers: {names}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where latest.json and the plots go")
    parser.add_argument("-v", "--verbose", action="store_true", help="log each repetition as it is measured")
    return parser.parse_args(argv)


def _select(only: str) -> list[Workload]:
    workloads = all_workloads()
    wanted = {item.strip() for item in only.split(",") if item.strip()}
    if not wanted:
        return workloads
    known = {w.name for w in workloads} | {str(w.number) for w in workloads}
    unknown = wanted - known
    if unknown:
        raise SystemExit(f"python -m bench: unknown workload(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    return [w for w in workloads if w.name in wanted or str(w.number) in wanted]


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds through the `finally` blocks that stop every process the bench started.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    workloads = _select(args.only)
    scale = QUICK if args.quick else FULL
    started = time.perf_counter()
    result = BenchResult(
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        mode=scale.name,
        command=shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
        machine=describe(),
    )
    with open_services(scale) as services:
        for workload in workloads:
            print(f"== {workload.number}. {workload.name} ...", file=sys.stderr, flush=True)
            result.workloads.append(run_workload(workload, services))
    no_plots = plotting_unavailable()
    args.out.mkdir(parents=True, exist_ok=True)
    if no_plots is None:
        for w in result.workloads:
            path = plot_workload(w, args.out)
            w.plot = None if path is None else path.name
    else:
        result.notes.append(no_plots)
    result.seconds = time.perf_counter() - started
    result.write(args.out / "latest.json")
    print(render(result), end="")
    print(f"wrote {args.out / 'latest.json'}", flush=True)
    return 1 if any(w.status == "failed" for w in result.workloads) else 0
