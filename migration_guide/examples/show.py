"""What the pipeline stored: ``python -m migration_guide.examples.show [--wait SECONDS]``.

Reads the events database (``PIPELINE_DB``, default ``pipeline-events.sqlite3`` in the current
folder), waiting up to ``--wait`` seconds (default 60) for the whole acceptance batch of
``events.py`` to be stored, since Celery stages go on after the consumer returns. Prints one
line per stored event and how often the symbolicator was called, then whether the output is
what every step of the guide must give. Exit code 0 when it is, 1 when it is not.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

from migration_guide.examples import domain, events


def _line(data: dict[str, Any]) -> str:
    symbolicated = "symbolicated" if data.get("symbolicated") else "-"
    return (f"  {data['event_id']:<10}  {data['platform']:<10}  {symbolicated:<12}  "
            f"grouping {data['grouping_hash']}  tags {', '.join(data['tags'])}")


def report(saved: dict[str, dict[str, Any]]) -> tuple[bool, str]:
    """Whether ``saved`` is the batch's expected output, and the text that says so."""
    expected = events.expected_output()
    lines = [f"events stored in {os.path.abspath(domain.db_path())}:"]
    lines += [_line(saved[event_id]) for event_id in sorted(saved)] or ["  (none)"]
    for event in events.EVENTS:
        if event.get("flaky_symbolicator"):
            calls = domain.count_calls("symbolicate", event["event_id"])
            lines.append(f"symbolicator calls for {event['event_id']}: {calls} "
                         f"(down for the first {event['flaky_symbolicator']}, retried)")
    dropped = domain.count_calls("dropped", events.MISSING_ID)
    lines.append(f"{events.MISSING_ID} (payload gone from the processing store): "
                 + ("dropped" if dropped else "not dropped yet"))
    missing = sorted(set(expected) - set(saved))
    wrong = sorted(k for k in expected if k in saved and saved[k] != expected[k])
    extra = sorted(set(saved) - set(expected))
    ok = not (missing or wrong or extra) and dropped > 0
    if ok:
        lines.append(f"{len(saved)} of {len(expected)} events stored, as the acceptance test expects")
    else:
        problems = [f"missing {', '.join(missing)}" if missing else "", f"different {', '.join(wrong)}" if wrong else "",
                    f"unexpected {', '.join(extra)}" if extra else "", "" if dropped else f"{events.MISSING_ID} not dropped"]
        lines.append("NOT as expected: " + "; ".join(p for p in problems if p))
    return ok, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m migration_guide.examples.show", description=__doc__.split("\n\n")[0])
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the whole batch [60]")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.wait
    while True:
        ok, text = report(domain.saved_events())
        if ok or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
