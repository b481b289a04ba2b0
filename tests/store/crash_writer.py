"""A process that commits numbered batches through a StoreWriter for ever, printing the number
of each batch once its commit has returned; tests/store/test_crash.py kills it with SIGKILL.

Batch ``i``: the run ``crash`` (counts ``{"batch": i}``), its steps ``i*STEPS .. i*STEPS+STEPS-1``,
a memo entry for ``i`` and a run ``b-<i>`` of its own — so a partly applied batch shows.

    python tests/store/crash_writer.py URL PREFIX FIRST   (FIRST: the number of its first batch)
"""

from __future__ import annotations

import asyncio
import sys

from coda.store import Batch, StoreWriter, open_store
from tests.store.records import key, run, step

STEPS = 20
IN_FLIGHT = 8  # batches submitted ahead, so that group commit merges some


def make_batch(i: int) -> Batch:
    batch = Batch()
    batch.put_run(run("crash", counts={"batch": i}))
    for j in range(STEPS):
        batch.put_step(step("crash", i * STEPS + j, value={"batch": i, "pad": "x" * 200}))
    batch.put_memo("crash", key(str(i)), i)
    batch.put_run(run(f"b-{i}", state="pending"))
    return batch


async def main(url: str, prefix: str, first: int) -> None:
    writer = StoreWriter(open_store(url, prefix=prefix), asyncio.get_running_loop(), sweep_every=None)
    window: asyncio.Queue[tuple[int, asyncio.Future[object]]] = asyncio.Queue(IN_FLIGHT)

    async def acknowledge() -> None:
        while True:
            i, future = await window.get()
            await future
            sys.stdout.write(f"{i}\n")
            sys.stdout.flush()

    printer = asyncio.ensure_future(acknowledge())
    i = first
    while True:
        await window.put((i, writer.submit(make_batch(i))))  # type: ignore[arg-type]
        i += 1
        if printer.done():
            printer.result()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
