"""The wire protocol: every message that crosses a Coda connection, as frozen dataclasses.

No I/O here; :mod:`coda.framing` turns these into bytes. Each message has a small integer
``TAG`` and travels as ``[TAG, field, field, ...]`` in declaration order. Nested structs
(:class:`~coda.errors.ErrorInfo`, :class:`TaskSpec`, :class:`WorkflowSpec`) travel as lists of
their fields. Messages that never leave the supervisor process are in :mod:`coda.inprocess`.

Worker ⇄ supervisor (over a socketpair the supervisor made)::

    worker → WorkerHello, SpawnTask, SpawnWorkflow, TaskReturned, TaskRaised,
             WorkflowReturned, WorkflowRaised                                  (WorkerMessage)
    supervisor → Welcome, ExecuteTask, ExecuteWorkflow, SpawnSucceeded, SpawnFailed,
                 CancelExecution                                               (ToWorker)

Client ⇄ supervisor (TCP, loopback by default)::

    client → ClientHello, StartRun, AwaitRun, GetRunStatus, RerunRun, CancelRun,
             GetSupervisorStatus                                               (ClientMessage)
    supervisor → Welcome, RunStarted, RunFinished, StatusReply, Ack, ErrorReply (ToClient)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeAlias, TypeVar

from coda.errors import ErrorInfo

__all__ = [
    "Ack",
    "AwaitRun",
    "CancelExecution",
    "CancelRun",
    "ClientHello",
    "ClientMessage",
    "ErrorInfo",
    "ErrorReply",
    "ExecuteTask",
    "ExecuteWorkflow",
    "GetRunStatus",
    "GetSupervisorStatus",
    "MESSAGES",
    "Message",
    "PROTOCOL_VERSION",
    "RerunRun",
    "RunFinished",
    "RunStarted",
    "SpawnFailed",
    "SpawnSucceeded",
    "SpawnTask",
    "SpawnWorkflow",
    "StartRun",
    "StatusReply",
    "TaskRaised",
    "TaskReturned",
    "TaskSpec",
    "ToClient",
    "ToWorker",
    "Welcome",
    "WorkerHello",
    "WorkerMessage",
    "WorkflowRaised",
    "WorkflowReturned",
    "WorkflowSpec",
]

# 2: error kinds of coda.errors.ErrorKind; TaskReturned/TaskRaised name a task the worker
# started itself by its spawn's request id.
PROTOCOL_VERSION = 2


class Message:
    """Base of every wire message; ``TAG`` identifies the type on the wire."""

    TAG: ClassVar[int]


MESSAGES: dict[int, type[Message]] = {}

_M = TypeVar("_M", bound=type[Message])


def _tag(tag: int) -> Callable[[_M], _M]:
    def register(cls: _M) -> _M:
        assert tag not in MESSAGES, f"duplicate tag {tag}"
        cls.TAG = tag
        MESSAGES[tag] = cls
        return cls

    return register


# -- nested structs ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """What the supervisor must know of a task to dispatch, time out and retry it."""

    name: str
    timeout: float | None = None
    max_retries: int = 0
    retry_delay: float = 0.0
    retry_on_timeout: bool = False


@dataclass(frozen=True, slots=True)
class WorkflowSpec:
    """What the supervisor must know of a workflow to rerun it after a failure."""

    name: str
    max_retries: int = 0
    retry_delay: float = 0.0


# -- worker → supervisor ----------------------------------------------------------------------


@_tag(1)
@dataclass(frozen=True, slots=True)
class WorkerHello(Message):
    """First frame from a worker: who it is and what it can run."""

    version: int
    pid: int
    tasks: tuple[TaskSpec, ...]
    workflows: tuple[WorkflowSpec, ...]


@_tag(2)
@dataclass(frozen=True, slots=True)
class SpawnTask(Message):
    """A workflow execution asks for a task's result; answered by SpawnSucceeded/SpawnFailed.
    ``seq`` numbers the spawns of one execution, so a workflow re-executed after its worker
    died finds what it spawned before (replay within one attempt). ``started``: the worker has
    already started the task itself, beside the workflow (no cache key, not replaying, a free
    slot); it reports the outcome under this ``request_id``."""

    request_id: int
    run_id: str
    task: str
    args: dict[str, Any]
    cache_key: list[Any] | None
    seq: int
    started: bool = False


@_tag(3)
@dataclass(frozen=True, slots=True)
class SpawnWorkflow(Message):
    """A workflow execution starts a child workflow and asks for its result."""

    request_id: int
    run_id: str
    workflow: str
    args: dict[str, Any]


@_tag(4)
@dataclass(frozen=True, slots=True)
class TaskReturned(Message):
    """A task execution returned ``value``. ``exec_id`` names an execution the supervisor placed;
    a task the worker started itself (``SpawnTask.started``) has none and is named by its
    spawn's ``request_id`` instead."""

    exec_id: int | None
    value: Any
    request_id: int | None = None


@_tag(5)
@dataclass(frozen=True, slots=True)
class TaskRaised(Message):
    """A task execution raised. ``retry_in`` is the delay before the next attempt, decided by
    the task's own policy in the worker, or ``None`` when the failure is final. ``exec_id`` and
    ``request_id`` as in :class:`TaskReturned`."""

    exec_id: int | None
    error: ErrorInfo
    retry_in: float | None
    request_id: int | None = None


@_tag(6)
@dataclass(frozen=True, slots=True)
class WorkflowReturned(Message):
    exec_id: int
    value: Any


@_tag(7)
@dataclass(frozen=True, slots=True)
class WorkflowRaised(Message):
    exec_id: int
    error: ErrorInfo


# -- supervisor → worker ----------------------------------------------------------------------


@_tag(20)
@dataclass(frozen=True, slots=True)
class Welcome(Message):
    """Handshake accepted (to a worker or a client)."""

    version: int


@_tag(21)
@dataclass(frozen=True, slots=True)
class ExecuteTask(Message):
    """Run a task. ``awaited_by`` is the request id of the spawn, by a workflow on this same
    worker, that awaits the result: the worker answers it itself as soon as the task succeeds
    or fails for good (the supervisor then does not), which saves two hops per step."""

    exec_id: int
    run_id: str
    task: str
    args: dict[str, Any]
    attempt: int
    awaited_by: int | None = None


@_tag(22)
@dataclass(frozen=True, slots=True)
class ExecuteWorkflow(Message):
    """Run a workflow. ``replaying``: this attempt spawned before (its worker died), so every
    spawn must go through the supervisor, which holds the earlier outcomes."""

    exec_id: int
    run_id: str
    workflow: str
    args: dict[str, Any]
    attempt: int
    replaying: bool = False


@_tag(23)
@dataclass(frozen=True, slots=True)
class SpawnSucceeded(Message):
    request_id: int
    value: Any


@_tag(24)
@dataclass(frozen=True, slots=True)
class SpawnFailed(Message):
    """The spawned task or child workflow failed; ``task`` names what was spawned (for a child
    workflow: its run id)."""

    request_id: int
    task: str
    error: ErrorInfo


@_tag(25)
@dataclass(frozen=True, slots=True)
class CancelExecution(Message):
    """Stop a running workflow execution (its run was cancelled)."""

    exec_id: int


# -- client → supervisor ----------------------------------------------------------------------


@_tag(40)
@dataclass(frozen=True, slots=True)
class ClientHello(Message):
    version: int
    token: str | None


@_tag(41)
@dataclass(frozen=True, slots=True)
class StartRun(Message):
    """Start a workflow run; with a ``run_id`` that exists already, return that run instead."""

    request_id: int
    workflow: str
    args: dict[str, Any]
    run_id: str | None


@_tag(42)
@dataclass(frozen=True, slots=True)
class AwaitRun(Message):
    """Answer with RunFinished once the run has ended (at once if it has)."""

    request_id: int
    run_id: str


@_tag(43)
@dataclass(frozen=True, slots=True)
class GetRunStatus(Message):
    request_id: int
    run_id: str


@_tag(44)
@dataclass(frozen=True, slots=True)
class RerunRun(Message):
    request_id: int
    run_id: str


@_tag(45)
@dataclass(frozen=True, slots=True)
class CancelRun(Message):
    request_id: int
    run_id: str


@_tag(46)
@dataclass(frozen=True, slots=True)
class GetSupervisorStatus(Message):
    request_id: int


# -- supervisor → client ----------------------------------------------------------------------


@_tag(60)
@dataclass(frozen=True, slots=True)
class RunStarted(Message):
    request_id: int
    run_id: str
    created: bool


@_tag(61)
@dataclass(frozen=True, slots=True)
class RunFinished(Message):
    """The run ended: ``state`` is succeeded, failed or cancelled."""

    request_id: int
    run_id: str
    state: str
    value: Any
    error: ErrorInfo | None


@_tag(62)
@dataclass(frozen=True, slots=True)
class StatusReply(Message):
    request_id: int
    status: dict[str, Any]


@_tag(63)
@dataclass(frozen=True, slots=True)
class Ack(Message):
    request_id: int


@_tag(64)
@dataclass(frozen=True, slots=True)
class ErrorReply(Message):
    request_id: int
    error: ErrorInfo


# -- by direction -----------------------------------------------------------------------------

WorkerMessage: TypeAlias = (
    WorkerHello | SpawnTask | SpawnWorkflow | TaskReturned | TaskRaised | WorkflowReturned | WorkflowRaised
)
ToWorker: TypeAlias = Welcome | ExecuteTask | ExecuteWorkflow | SpawnSucceeded | SpawnFailed | CancelExecution
ClientMessage: TypeAlias = ClientHello | StartRun | AwaitRun | GetRunStatus | RerunRun | CancelRun | GetSupervisorStatus
ToClient: TypeAlias = Welcome | RunStarted | RunFinished | StatusReply | Ack | ErrorReply
