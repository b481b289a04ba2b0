"""``coda.context``: what a running workflow can do and know.

``spawn_task`` and ``spawn_workflow`` send the request at once and return an awaitable
handle, so several handles can be awaited together with ``asyncio.gather``. ``run_id`` and
``attempt`` are read as module attributes. Outside a running workflow every one of them
raises :class:`~coda.errors.NotInWorkflow`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from contextvars import ContextVar
from typing import Any, Generic, Protocol, TypeVar

from coda.data import check_data
from coda.errors import DataError, NotInWorkflow
from coda.registry import REGISTRY, Task, Workflow, task_name_of

__all__ = ["Handle", "WorkflowRuntime", "spawn_task", "spawn_workflow"]

T = TypeVar("T")


class WorkflowRuntime(Protocol):
    """The worker side of one workflow execution, as the context needs it."""

    run_id: str
    attempt: int

    def spawn(self, kind: str, name: str, args: dict[str, Any], cache_key: list[Any] | None) -> asyncio.Future[Any]: ...


CURRENT: ContextVar[WorkflowRuntime | None] = ContextVar("coda_workflow", default=None)


class Handle(Generic[T]):
    """A spawned task or child workflow; ``await`` it for the result (or its TaskFailed)."""

    __slots__ = ("_future", "name")

    def __init__(self, name: str, future: asyncio.Future[T]) -> None:
        self.name = name
        self._future = future

    def __await__(self) -> Generator[Any, None, T]:
        return self._future.__await__()

    def done(self) -> bool:
        return self._future.done()

    def __repr__(self) -> str:
        state = "done" if self._future.done() else "pending"
        return f"<coda.Handle {self.name} {state}>"


def _runtime(what: str) -> WorkflowRuntime:
    runtime = CURRENT.get()
    if runtime is None:
        raise NotInWorkflow(f"coda.context.{what} can only be used inside a running @coda.workflow")
    return runtime


def spawn_task(task: Any, args: dict[str, Any] | None = None, cache_key: list[Any] | None = None) -> Handle[Any]:
    """Run ``task`` with keyword ``args`` on a worker; with ``cache_key``, memoize its result
    within this run, so a rerun (or a concurrent spawn of the same key) does not run it again."""
    runtime = _runtime("spawn_task")
    name, definition = task_name_of(task)
    args = _checked_args("task", name, args, definition)
    if definition is not None and cache_key is None:
        cache_key = definition.default_cache_key(args)
    if cache_key is not None:
        if type(cache_key) is not list:
            raise DataError(f"task {name!r}: cache_key must be a list, got {type(cache_key).__name__}")
        check_data(cache_key, "cache_key")
    return Handle(name, runtime.spawn("task", name, args, cache_key))


def spawn_workflow(workflow: Any, args: dict[str, Any] | None = None) -> Handle[Any]:
    """Start ``workflow`` as a child run of this one; awaiting the handle gives its result.
    The child's run id derives from this run's id and the child's name and args, so a rerun
    of this workflow finds the same child (and its memo) again."""
    runtime = _runtime("spawn_workflow")
    definition: Workflow[Any, Any] | None
    if isinstance(workflow, Workflow):
        name, definition = workflow.name, workflow
    elif isinstance(workflow, str):
        name, definition = workflow, REGISTRY.workflows.get(workflow)
    else:
        raise DataError(f"spawn_workflow needs a @coda.workflow or its name, not {workflow!r}")
    args = _checked_args("workflow", name, args, definition)
    return Handle(name, runtime.spawn("workflow", name, args, None))


def _checked_args(kind: str, name: str, args: dict[str, Any] | None,
                  definition: Task[Any, Any] | Workflow[Any, Any] | None) -> dict[str, Any]:
    """``args`` (``{}`` for None) once they are a dict of data that fits the definition, when
    this process knows it; else DataError naming the task or workflow and the argument."""
    args = {} if args is None else args
    if type(args) is not dict:
        raise DataError(f"{kind} {name!r}: args must be a dict of keyword arguments, got {type(args).__name__}")
    check_data(args, "args")
    if definition is not None:
        definition.check_args(args)
    return args


def __getattr__(name: str) -> Any:
    # Module attributes that read the running workflow (PEP 562), not a proxy object.
    if name in ("run_id", "attempt"):
        return getattr(_runtime(name), name)
    raise AttributeError(f"module 'coda.context' has no attribute {name!r}")
