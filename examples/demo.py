"""The main job: start a real supervisor with two workers, run the README's workflow over a
batch of events, and print what happened. (The Sentry-style pipeline demo replaces this.)"""

from __future__ import annotations

import asyncio
import sys
import time

import coda
from coda.supervisor.launcher import SupervisorProcess
from examples import readme


async def _run(address: str, count: int) -> None:
    events = [{"event_id": f"ev{i}", "message": f"  event number {i}  "} for i in range(count)]
    async with coda.Client(address) as client:
        started = time.perf_counter()
        handles = await asyncio.gather(
            *(client.start(readme.process_event, {"project_id": 1, "event_data": e}, run_id=f"demo-{e['event_id']}")
              for e in events)
        )
        results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
        wall = time.perf_counter() - started
        statuses = [await h.status() for h in handles]
    executed = sum(s.tasks["executed"] for s in statuses)
    print(f"first result: {results[0]}")
    print(f"{'runs':<24}{len(results):>8}")
    print(f"{'tasks executed':<24}{executed:>8}")
    print(f"{'all succeeded':<24}{str(all(s.state == 'succeeded' for s in statuses)):>8}")
    print(f"{'wall time':<24}{wall:>7.2f}s")


def main() -> int:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    print("starting coda supervisor with 2 workers ...", flush=True)
    try:
        with SupervisorProcess(["examples.readme"], workers=2) as supervisor:
            print(f"supervisor at {supervisor.address}; running {count} workflows", flush=True)
            asyncio.run(_run(supervisor.address, count))
            code = supervisor.terminate()
    except KeyboardInterrupt:
        print("interrupted; supervisor stopped", file=sys.stderr)
        return 130
    except (RuntimeError, coda.CodaError) as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
