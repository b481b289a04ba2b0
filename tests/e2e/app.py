"""Tasks and workflows the end-to-end tests run on real supervisors. Side effects go to files
under a directory the test passes in, so the test can count invocations across processes."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import coda
from coda.errors import TaskFailed, TaskTimeout, UnknownName


def _append(directory: str, name: str, line: str = "x") -> int:
    """Append a line to directory/name; how many lines it holds now."""
    path = os.path.join(directory, name)
    with open(path, "a") as f:
        f.write(line + "\n")
    with open(path) as f:
        return sum(1 for _ in f)


def count(directory: str, name: str) -> int:
    path = os.path.join(directory, name)
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for _ in f)


@coda.task
def noop() -> None:
    return None


@coda.task
async def add(a: int, b: int) -> int:
    return a + b


@coda.task
def record(dir: str, name: str, value: Any) -> Any:
    _append(dir, name)
    return value


@coda.task
def fail_while_flag(dir: str, name: str) -> str:
    _append(dir, name)
    if os.path.exists(os.path.join(dir, "flag-" + name)):
        raise ValueError(f"{name} is flagged to fail")
    return name


@coda.workflow(max_retries=1, retry_delay=0.05)
async def auto_rerun(dir: str, tag: str) -> list[Any]:
    a = await coda.context.spawn_task(record, args={"dir": dir, "name": "a", "value": 1}, cache_key=["a", tag])
    b = await coda.context.spawn_task(record, args={"dir": dir, "name": "b", "value": 2}, cache_key=["b", tag])
    # Fails on the first attempt of the run only.
    if coda.context.attempt == 1:
        await coda.context.spawn_task(fail_while_flag, args={"dir": dir, "name": "c"})
    c = await coda.context.spawn_task(record, args={"dir": dir, "name": "c-ok", "value": 3}, cache_key=["c", tag])
    return [a, b, c, coda.context.attempt, coda.context.run_id]


@coda.workflow
async def manual_rerun(dir: str, tag: str) -> list[Any]:
    a = await coda.context.spawn_task(record, args={"dir": dir, "name": "a", "value": 1}, cache_key=["a", tag])
    b = await coda.context.spawn_task(record, args={"dir": dir, "name": "b", "value": 2}, cache_key=["b", tag])
    c = await coda.context.spawn_task(fail_while_flag, args={"dir": dir, "name": "c"}, cache_key=["c", tag])
    return [a, b, c, coda.context.attempt]


@coda.workflow
async def fan_out(n: int) -> int:
    handles = [coda.context.spawn_task(add, args={"a": i, "b": i}) for i in range(n)]
    return sum(await asyncio.gather(*handles))


@coda.task
async def span(dir: str, i: int) -> int:
    """Record this invocation's start and end (pid, monotonic clock) to check for overlaps
    (async: on the worker's loop nothing but the slot count keeps two apart)."""
    started = time.monotonic()
    await asyncio.sleep(0.05)
    _append(dir, "spans", f"{os.getpid()} {started} {time.monotonic()}")
    return i


@coda.task
async def in_workflow() -> bool:
    try:
        coda.context.run_id  # noqa: B018 - the attribute access is the check
    except coda.errors.NotInWorkflow:
        return False
    return True


@coda.workflow
async def task_sees_no_workflow() -> bool:
    return await coda.context.spawn_task(in_workflow)  # type: ignore[no-any-return]


@coda.workflow
async def spans(dir: str, n: int) -> list[int]:
    first = await coda.context.spawn_task(span, args={"dir": dir, "i": 0})
    rest = await asyncio.gather(*(coda.context.spawn_task(span, args={"dir": dir, "i": i}) for i in range(1, n)))
    return [first, *rest]


@coda.workflow
async def three_tasks(i: int) -> int:
    a = await coda.context.spawn_task(add, args={"a": i, "b": 1})
    b = await coda.context.spawn_task(add, args={"a": a, "b": 1})
    return await coda.context.spawn_task(add, args={"a": b, "b": 1})  # type: ignore[no-any-return]


@coda.task
def slow_once(dir: str) -> str:
    """The first call writes its pid and hangs (the test SIGKILLs it); the next one finishes."""
    pid_file = os.path.join(dir, "pid")
    if not os.path.exists(pid_file):
        with open(pid_file + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(pid_file + ".tmp", pid_file)
        time.sleep(60)
    _append(dir, "slow_once-done")
    return "done"


@coda.workflow
async def survives_kill(dir: str) -> str:
    return await coda.context.spawn_task(slow_once, args={"dir": dir}, cache_key=["once"])  # type: ignore[no-any-return]


@coda.task(timeout=0.5)
def sleepy(dir: str, seconds: float) -> str:
    _append(dir, "sleepy")
    time.sleep(seconds)
    return "woke"


@coda.task(timeout=0.5, retry_on=(TaskTimeout,), max_retries=1)
def sleepy_retry(dir: str, seconds: float) -> str:
    _append(dir, "sleepy_retry")
    time.sleep(seconds)
    return "woke"


@coda.task(retry_on=(ConnectionError,), max_retries=2, retry_delay=0.05)
def flaky(dir: str, fail_times: int, exc: str = "ConnectionError") -> int:
    attempt = _append(dir, "flaky")
    if attempt <= fail_times:
        raise {"ConnectionError": ConnectionError, "ValueError": ValueError}[exc](f"attempt {attempt} failed")
    return attempt


def _failure(exc: TaskFailed) -> dict[str, Any]:
    return {"class": type(exc).__name__, "task": exc.task_name, "exc_type": exc.exc_type,
            "message": exc.message, "traceback": exc.traceback}


@coda.workflow
async def call_catching(task: str, args: dict[str, Any]) -> dict[str, Any]:
    """Spawn ``task`` by name and report its result or its failure as data."""
    try:
        return {"ok": await coda.context.spawn_task(task, args=args)}
    except TaskFailed as exc:
        return {"failed": _failure(exc)}
    except UnknownName as exc:
        return {"unknown": str(exc)}


@coda.workflow
async def bad_spawn(kind: str) -> str:
    try:
        if kind == "set":
            coda.context.spawn_task(add, args={"a": {1, 2}, "b": 1})
        elif kind == "nested":
            coda.context.spawn_task(add, args={"a": {"deep": [1, object()]}, "b": 1})
        elif kind == "key":
            coda.context.spawn_task(add, args={"a": 1, "b": 1}, cache_key=[("tuple",)])
        elif kind == "missing_arg":
            coda.context.spawn_task(add, args={"a": 1})
    except TypeError as exc:
        return f"{type(exc).__name__}: {exc}"
    return "no error"


@coda.workflow
async def slow_workflow(dir: str, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return await coda.context.spawn_task(record, args={"dir": dir, "name": "slow", "value": "finished"})  # type: ignore[no-any-return]


@coda.workflow
async def parent(dir: str, tag: str) -> list[Any]:
    child = await coda.context.spawn_workflow(manual_rerun, args={"dir": dir, "tag": tag})
    return [child, coda.context.run_id]
