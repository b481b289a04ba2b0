"""``@coda.task`` and ``@coda.workflow``: definitions, validated when they are declared.

Every definition lands in the process-wide :data:`REGISTRY`; a worker imports the ``-A``
modules and tells its supervisor what the registry holds. The decorated object stays callable
as the plain function, so unit tests can call it directly.

A name declared again replaces the earlier definition, as Celery's ``register_task`` does: a
test that declares its task per test, Django's autoreload, a module imported twice. Where the
earlier definition is still alive (something other than the registry holds it: a module, a
caller), two different live definitions would race for the name in one worker, whichever is
imported last winning; that is logged as a warning (``coda.registry.name_replaced``) naming
both. Replacing a definition of the same function, or one nothing holds any more, is silent.
(``coda.compat`` tasks additionally follow Celery's registry, which is per app: a compat
definition runs whatever task the Celery app registered under the name.)
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
import weakref
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar, overload

from coda.errors import RegistrationError, TaskTimeout
from coda.protocol import TaskSpec, WorkflowSpec

__all__ = [
    "ExecInfo",
    "REGISTRY",
    "Registry",
    "Task",
    "Workflow",
    "task",
    "task_name_of",
    "workflow",
]

P = ParamSpec("P")
R = TypeVar("R")

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ExecInfo:
    """What a worker knows about one execution of a task."""

    exec_id: int
    run_id: str
    attempt: int


def _qualified(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


def _check_name(name: Any, fn: Callable[..., Any]) -> str:
    if name is None:
        return _qualified(fn)
    if not isinstance(name, str) or not name.strip():
        raise RegistrationError(f"{_qualified(fn)}: name must be a non-empty str, got {name!r}")
    return name


def _check_retries(owner: str, max_retries: Any, retry_delay: Any) -> None:
    if type(max_retries) is not int or max_retries < 0:
        raise RegistrationError(f"{owner}: max_retries must be an int >= 0, got {max_retries!r}")
    if type(retry_delay) not in (int, float) or retry_delay < 0:
        raise RegistrationError(f"{owner}: retry_delay must be a number >= 0, got {retry_delay!r}")


def _check_unknown(kind: str, name: str, unknown: dict[str, Any], valid: Iterable[str]) -> None:
    if unknown:
        raise RegistrationError(
            f"@coda.{kind} {name!r}: unknown option(s) {', '.join(sorted(unknown))}; "
            f"valid options are {', '.join(sorted(valid))}"
        )


class Task(Generic[P, R]):
    """A Coda task. Call it to run the function in-process; spawn it from a workflow to run it
    on a worker under the supervisor (memoized, retried, timed out)."""

    # A plain-def task the worker may run on its main thread when nothing else is running there
    # (set by the queue takeover's message task; user tasks always get the thread pool).
    main_thread = False
    # Whether a worker may start it beside the workflow that spawns it before the supervisor
    # answers (compat tasks may not: their Celery request id is the supervisor's execution id).
    local_start = True

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str,
        retry_on: tuple[type[BaseException], ...] = (),
        max_retries: int = 0,
        retry_delay: float = 0.0,
        timeout: float | None = None,
    ) -> None:
        self.fn = fn
        self.name = name
        self.retry_on = retry_on
        self.max_retries = max_retries
        self.retry_delay = float(retry_delay)
        self.timeout = timeout
        self.is_async = inspect.iscoroutinefunction(fn)
        functools.update_wrapper(self, fn)

    @functools.cached_property
    def _signature(self) -> inspect.Signature:
        # On first use: reading a signature costs more than the rest of a declaration, and
        # test suites declare thousands of tasks that are never spawned.
        return inspect.signature(self.fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<coda.task {self.name}>"

    @property
    def qualified_function(self) -> str:
        return _qualified(self.fn)

    def spec(self) -> TaskSpec:
        return TaskSpec(
            name=self.name,
            timeout=self.timeout,
            max_retries=self.max_retries,
            retry_delay=self.retry_delay,
            retry_on_timeout=any(issubclass(TaskTimeout, e) for e in self.retry_on),
        )

    def check_args(self, args: dict[str, Any]) -> None:
        """Raise TypeError naming the task when ``args`` cannot be bound to its parameters."""
        try:
            self._signature.bind(**args)
        except TypeError as exc:
            raise TypeError(f"task {self.name!r}: {exc}") from None

    def default_cache_key(self, args: dict[str, Any]) -> list[Any] | None:
        """The memo key used when a spawn passes none (``coda.compat`` tasks may define one)."""
        return None

    def invoke(self, args: dict[str, Any], info: ExecInfo) -> Any:
        """Run the task body for one execution (a coroutine when the function is async)."""
        return self.fn(**args)  # type: ignore[call-arg]

    def retry_in(self, exc: BaseException, info: ExecInfo) -> float | None:
        """Seconds until the next attempt after ``exc``, or None when the failure is final."""
        if self.retry_on and isinstance(exc, self.retry_on) and info.attempt <= self.max_retries:
            return self.retry_delay
        return None


class Workflow(Generic[P, R]):
    """A Coda workflow: an ``async def`` that spawns tasks through ``coda.context``."""

    def __init__(
        self,
        fn: Callable[P, Awaitable[R]],
        *,
        name: str,
        max_retries: int = 0,
        retry_delay: float = 0.0,
    ) -> None:
        self.fn = fn
        self.name = name
        self.max_retries = max_retries
        self.retry_delay = float(retry_delay)
        self._signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<coda.workflow {self.name}>"

    @property
    def qualified_function(self) -> str:
        return _qualified(self.fn)

    def spec(self) -> WorkflowSpec:
        return WorkflowSpec(name=self.name, max_retries=self.max_retries, retry_delay=self.retry_delay)

    def check_args(self, args: dict[str, Any]) -> None:
        try:
            self._signature.bind(**args)
        except TypeError as exc:
            raise TypeError(f"workflow {self.name!r}: {exc}") from None


class Registry:
    """Name → definition, for tasks and for workflows. A name declared again is replaced; see
    the module docstring for when that is worth a warning."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.workflows: dict[str, Workflow[Any, Any]] = {}

    def add_task(self, definition: Task[Any, Any]) -> None:
        self._add(self.tasks, "task", definition)

    def add_workflow(self, definition: Workflow[Any, Any]) -> None:
        self._add(self.workflows, "workflow", definition)

    @staticmethod
    def _add(table: dict[str, Any], kind: str, definition: Any) -> None:
        old = table.get(definition.name)
        table[definition.name] = definition
        if old is None or old is definition or old.qualified_function == definition.qualified_function:
            return
        # The registry held one reference, and this frame the other: anything left is a holder
        # outside, i.e. a definition that is still live and no longer runs under its name.
        earlier, replaced = old.qualified_function, weakref.ref(old)
        del old
        if replaced() is not None:
            # Both still live: the name now runs the latter; one of them wants another name=.
            logger.warning(
                "coda.registry.name_replaced",
                extra={"kind": kind, "task_name": definition.name, "earlier": earlier, "now": definition.qualified_function},
            )


REGISTRY = Registry()

_TASK_OPTIONS = ("name", "retry_on", "max_retries", "retry_delay", "timeout")
_WORKFLOW_OPTIONS = ("name", "max_retries", "retry_delay")


def _normalize_retry_on(owner: str, retry_on: Any) -> tuple[type[BaseException], ...]:
    items = retry_on if isinstance(retry_on, (tuple, list)) else (retry_on,)
    for item in items:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise RegistrationError(f"{owner}: retry_on must hold exception classes, got {item!r}")
    return tuple(items)


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...
@overload
def task(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    retry_on: type[BaseException] | tuple[type[BaseException], ...] = (),
    max_retries: int = 0,
    retry_delay: float = 0.0,
    timeout: float | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(fn: Any = None, /, **options: Any) -> Any:
    """Declare a Coda task: ``@coda.task`` or ``@coda.task(name=, retry_on=, max_retries=,
    retry_delay=, timeout=)``. Plain ``def`` tasks run on a worker thread, off the event loop."""

    def decorate(func: Callable[P, R]) -> Task[P, R]:
        if not callable(func) or inspect.isclass(func):
            raise RegistrationError(f"@coda.task decorates a function, not {func!r}")
        unknown = dict(options)
        known = {k: unknown.pop(k) for k in _TASK_OPTIONS if k in unknown}
        name = _check_name(known.get("name"), func)
        _check_unknown("task", name, unknown, _TASK_OPTIONS)
        max_retries = known.get("max_retries", 0)
        retry_delay = known.get("retry_delay", 0.0)
        _check_retries(f"task {name!r}", max_retries, retry_delay)
        retry_on = _normalize_retry_on(f"task {name!r}", known.get("retry_on", ()))
        timeout = known.get("timeout")
        if timeout is not None and (type(timeout) not in (int, float) or timeout <= 0):
            raise RegistrationError(f"task {name!r}: timeout must be a number > 0 or None, got {timeout!r}")
        definition = Task(
            func, name=name, retry_on=retry_on, max_retries=max_retries,
            retry_delay=retry_delay, timeout=None if timeout is None else float(timeout),
        )
        REGISTRY.add_task(definition)
        return definition

    return decorate(fn) if fn is not None else decorate


@overload
def workflow(fn: Callable[P, Awaitable[R]], /) -> Workflow[P, R]: ...
@overload
def workflow(
    fn: None = None, /, *, name: str | None = None, max_retries: int = 0, retry_delay: float = 0.0
) -> Callable[[Callable[P, Awaitable[R]]], Workflow[P, R]]: ...


def workflow(fn: Any = None, /, **options: Any) -> Any:
    """Declare a Coda workflow (an ``async def``): ``@coda.workflow`` or
    ``@coda.workflow(name=, max_retries=, retry_delay=)``."""

    def decorate(func: Callable[P, Awaitable[R]]) -> Workflow[P, R]:
        if not asyncio.iscoroutinefunction(func):
            raise RegistrationError(
                f"@coda.workflow needs an async def; {getattr(func, '__qualname__', func)!r} is not one"
            )
        unknown = dict(options)
        known = {k: unknown.pop(k) for k in _WORKFLOW_OPTIONS if k in unknown}
        name = _check_name(known.get("name"), func)
        _check_unknown("workflow", name, unknown, _WORKFLOW_OPTIONS)
        max_retries = known.get("max_retries", 0)
        retry_delay = known.get("retry_delay", 0.0)
        _check_retries(f"workflow {name!r}", max_retries, retry_delay)
        definition = Workflow(func, name=name, max_retries=max_retries, retry_delay=retry_delay)
        REGISTRY.add_workflow(definition)
        return definition

    return decorate(fn) if fn is not None else decorate


def task_name_of(target: Any) -> tuple[str, Task[Any, Any] | None]:
    """The registered name of what a workflow spawns, and its local definition when known."""
    if isinstance(target, Task):
        return target.name, target
    if isinstance(target, str):
        return target, REGISTRY.tasks.get(target)
    local = getattr(target, "__coda_task__", None)
    if isinstance(local, Task):
        return local.name, local
    # A plain Celery task runs on Celery workers through the bridge. Celery is imported by
    # whoever made the object, so look it up rather than import it here.
    celery = sys.modules.get("celery")
    if celery is not None and isinstance(target, celery.Task) and isinstance(target.name, str):
        return target.name, REGISTRY.tasks.get(target.name)
    raise TypeError(f"spawn_task needs a @coda.task, a coda.compat task, a Celery task or a task name, not {target!r}")
