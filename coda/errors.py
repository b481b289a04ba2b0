"""Every error Coda raises, under one root, and the one vocabulary errors cross the wire in.

::

    CodaError
    ├── RegistrationError (ValueError)   bad @task/@workflow: duplicate name, unknown option
    ├── DataError (TypeError)            a value that is not data (names the argument path), args
    │                                    that are not a dict or do not fit the task's parameters
    ├── NotInWorkflow (RuntimeError)     coda.context used outside a running workflow
    ├── UnknownName (LookupError)        no worker registered that task or workflow name
    ├── RunNotFound (LookupError)        no such run id (never started, or evicted)
    ├── InvalidState                     e.g. rerun of a run that has not failed
    │   └── RunCancelled                 what a cancelled (or finished) run spawned was dropped
    ├── ProtocolError                    oversized frame, undecodable bytes, version mismatch
    ├── AuthenticationFailed             the supervisor refused the client's token
    ├── SupervisorUnavailable            cannot reach the supervisor, or it went away
    ├── ShuttingDown                     the supervisor is draining and takes no new runs
    ├── BridgeError                      the Celery bridge cannot start or cannot publish a task
    ├── RunTimeout (TimeoutError)        Run.result(timeout=...) elapsed; the run goes on
    ├── CompatError                      coda.compat cannot map a Celery task onto Coda: its cache_key
    │                                    callable failed, a rollout setting is invalid, or the task used
    │                                    a Celery feature Coda cannot honour
    ├── TaskFailed                       a spawned task failed for good
    │   ├── TaskTimeout                  it ran past its timeout and its worker was replaced
    │   └── WorkerLost                   its worker died too many times while running it
    └── WorkflowFailed                   a run ended failed (or cancelled)

Control-flow signals that a user's ``except Exception`` must not swallow derive from
``BaseException`` and live where they are raised (none is public yet).

On the wire an error is an :class:`ErrorInfo`: the qualified type, message and traceback of what
was raised, and an :class:`ErrorKind` that names the exception the receiver raises. The kinds and
the classes are one table (:data:`KIND_CLASSES`); :func:`to_wire` and :func:`from_wire` are the one
pair that crosses it, and :func:`refusal` builds an error the supervisor decides rather than user
code raising it.
"""

from __future__ import annotations

import traceback as _traceback
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "AuthenticationFailed",
    "BridgeError",
    "CodaError",
    "CompatError",
    "DataError",
    "ErrorInfo",
    "ErrorKind",
    "InvalidState",
    "KIND_CLASSES",
    "NotInWorkflow",
    "ProtocolError",
    "RegistrationError",
    "RunCancelled",
    "RunNotFound",
    "RunTimeout",
    "ShuttingDown",
    "SupervisorUnavailable",
    "TaskFailed",
    "TaskTimeout",
    "UnknownName",
    "WorkerLost",
    "WorkflowFailed",
    "class_named",
    "from_wire",
    "refusal",
    "to_wire",
    "type_name",
]


class CodaError(Exception):
    """Root of every error Coda raises."""


class RegistrationError(CodaError, ValueError):
    """A task or workflow definition is invalid (raised at decoration time)."""


class DataError(CodaError, TypeError):
    """A value passed to Coda is not what it must be: not data (JSON-like, or bytes; the message
    names its path), args that are not a dict, or args that do not fit the task's parameters."""


class NotInWorkflow(CodaError, RuntimeError):
    """``coda.context`` was used outside a running workflow."""


class UnknownName(CodaError, LookupError):
    """No worker registered the named task or workflow."""


class RunNotFound(CodaError, LookupError):
    """The supervisor holds no run with that id."""


class InvalidState(CodaError):
    """The request does not fit the run's state (rerun of a running run, ...)."""


class RunCancelled(InvalidState):
    """The run was cancelled (or had already finished): what it spawned was dropped, not run."""


class ProtocolError(CodaError):
    """Bytes on a Coda connection could not be framed or decoded (or a message encoded)."""


class AuthenticationFailed(CodaError):
    """The supervisor rejected the client's token."""


class SupervisorUnavailable(CodaError):
    """The supervisor could not be reached, or the connection to it was lost."""


class ShuttingDown(CodaError):
    """The supervisor is draining and accepts no new runs."""


class BridgeError(CodaError):
    """The Celery bridge cannot start (bad ``--celery-app``, unsupported result backend,
    unreachable broker) or could not publish a task."""


class RunTimeout(CodaError, TimeoutError):
    """Waiting for a run's result took longer than the caller allowed; the run goes on."""


class CompatError(CodaError):
    """``coda.compat`` cannot map a Celery task onto Coda; the message names the task."""


class TaskFailed(CodaError):
    """A spawned task failed after its retries; carries the remote error."""

    def __init__(self, task_name: str, exc_type: str, message: str, traceback: str = "") -> None:
        super().__init__(task_name, exc_type, message, traceback)
        self.task_name = task_name
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        return f"task {self.task_name!r} failed: {self.exc_type}: {self.message}"


class TaskTimeout(TaskFailed):
    """The task ran past its ``timeout``; its worker process was killed and replaced."""


class WorkerLost(TaskFailed):
    """Every worker that ran the task died under it, more often than the supervisor allows."""


class WorkflowFailed(CodaError):
    """A workflow run ended failed or cancelled."""

    def __init__(self, run_id: str, exc_type: str, message: str, traceback: str = "") -> None:
        super().__init__(run_id, exc_type, message, traceback)
        self.run_id = run_id
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        return f"workflow run {self.run_id!r} failed: {self.exc_type}: {self.message}"


# -- the wire vocabulary ------------------------------------------------------------------------


class ErrorKind(StrEnum):
    """Which exception the receiver of an :class:`ErrorInfo` raises (see :data:`KIND_CLASSES`).
    ``ERROR`` is user code that raised: ``exc_type`` names its class, the receiver raises
    :class:`TaskFailed`. Every other kind is Coda's own reason."""

    ERROR = "error"
    TIMEOUT = "timeout"
    WORKER_LOST = "worker_lost"
    WORKFLOW_FAILED = "workflow_failed"
    CANCELLED = "cancelled"
    UNKNOWN_NAME = "unknown_name"
    DATA = "data"
    INVALID_STATE = "invalid_state"
    NOT_FOUND = "not_found"
    SHUTTING_DOWN = "shutting_down"
    AUTH = "auth"
    PROTOCOL = "protocol"


KIND_CLASSES: dict[ErrorKind, type[CodaError]] = {
    ErrorKind.ERROR: TaskFailed,
    ErrorKind.TIMEOUT: TaskTimeout,
    ErrorKind.WORKER_LOST: WorkerLost,
    ErrorKind.WORKFLOW_FAILED: WorkflowFailed,
    ErrorKind.CANCELLED: RunCancelled,
    ErrorKind.UNKNOWN_NAME: UnknownName,
    ErrorKind.DATA: DataError,
    ErrorKind.INVALID_STATE: InvalidState,
    ErrorKind.NOT_FOUND: RunNotFound,
    ErrorKind.SHUTTING_DOWN: ShuttingDown,
    ErrorKind.AUTH: AuthenticationFailed,
    ErrorKind.PROTOCOL: ProtocolError,
}
_CLASS_KINDS: dict[type[BaseException], ErrorKind] = {cls: kind for kind, cls in KIND_CLASSES.items()}


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A failure as it crosses the wire: the qualified type, message and formatted traceback of
    what was raised, and the kind of exception the receiver raises for it."""

    exc_type: str
    message: str
    traceback: str = ""
    kind: ErrorKind = ErrorKind.ERROR


def type_name(cls: type[BaseException]) -> str:
    """``module.Qualname`` of an exception class (builtins without their module)."""
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def to_wire(exc: BaseException, kind: ErrorKind | None = None) -> ErrorInfo:
    """``exc`` as it crosses the wire, with its traceback when it was raised. Its kind is
    ``kind`` when given, else the table's kind of its class (a Coda error the other side raises
    as such), else :attr:`ErrorKind.ERROR`."""
    if kind is None:
        kind = _CLASS_KINDS.get(type(exc), ErrorKind.ERROR)
    text = "".join(_traceback.format_exception(exc)) if exc.__traceback__ is not None else ""
    if isinstance(exc, TaskFailed) and exc.traceback:
        text += f"\nRemote traceback of task {exc.task_name!r}:\n{exc.traceback}"
    return ErrorInfo(type_name(type(exc)), str(exc), text, kind)


def refusal(kind: ErrorKind, message: str) -> ErrorInfo:
    """An error Coda decides (unknown name, timeout, bad request, ...): its type is the kind's
    class, and there is no traceback to carry."""
    return ErrorInfo(type_name(KIND_CLASSES[kind]), message, "", kind)


def from_wire(info: ErrorInfo, name: str = "") -> CodaError:
    """The exception to raise for ``info``. ``name`` is what failed, for the kinds that carry it:
    the task spawned (:class:`TaskFailed` and its subclasses) or the run (:class:`WorkflowFailed`)."""
    cls = KIND_CLASSES[info.kind]
    if issubclass(cls, TaskFailed):
        return cls(name, info.exc_type, info.message, info.traceback)
    if cls is WorkflowFailed:
        return WorkflowFailed(name, info.exc_type, info.message, info.traceback)
    return cls(info.message)


def class_named(exc_type: str) -> type[CodaError] | None:
    """The class of :data:`KIND_CLASSES` whose qualified name is ``exc_type`` (an ``exc_type``
    that came back as data, e.g. in a routed Celery call's result), if any."""
    return _BY_NAME.get(exc_type)


_BY_NAME = {type_name(cls): cls for cls in KIND_CLASSES.values()}
